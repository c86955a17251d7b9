"""The local executor: train every pending run of a plan on this machine, K at a time.

Each run is claimed (``state.try_claim``), trained in a child process (``scaling train``, or
``torchrun`` for several GPUs per run) that dies with the launcher, and its claim kept fresh by
a heartbeat until the child exits. Ctrl-C passes to the children, which checkpoint and stop;
launching again resumes them. A run that fails is retried up to ``retries`` times.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scaling import devices
from scaling.config import ConfigError
from scaling.launching import state
from scaling.rundir import RunDir, RunsDir
from scaling.training import STOP_SIGNALS, die_with_parent, stop_signals


@dataclass
class LaunchOptions:
    max_parallel: int = 1
    gpus_per_run: int = 1
    order: str = "small-first"
    only: str | None = None
    skip: str | None = None
    retries: int = 0
    retry_diverged: bool = False
    resume_pruned: bool = False
    stale_after: float = state.DEFAULT_STALE_AFTER
    poll_s: float = 0.5
    grace_s: float = 300.0  # how long a stopped run may take to write its checkpoint
    progress: bool = True
    attempts: dict[str, int] = field(default_factory=dict)


class Stopped(Exception):
    """The launcher was sent SIGTERM: its runs checkpointed and stopped, claims released."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def _raise_stopped(signum: int) -> None:
    raise Stopped(signum)


def _matches(plan: pd.DataFrame, expression: str) -> pd.Series:
    """run ids (comma-separated, prefixes allowed), a budget, or a pandas query."""
    parts = [p.strip() for p in expression.split(",")]
    if all(p and p.replace("_", "").isalnum() for p in parts):
        by_id = plan["run_id"].apply(lambda r: any(r.startswith(p) for p in parts))
        if by_id.any():
            return by_id
    try:
        return plan["budget"].apply(lambda b: any(abs(b / float(p) - 1) < 1e-6 for p in parts))
    except ValueError:
        pass
    try:
        return plan.eval(expression).astype(bool)
    except Exception as err:
        raise ConfigError(
            f"not run ids, a budget or a query over plan.csv columns ({err})",
            param="selection",
            value=expression,
        ) from None


def select_runs(plan: pd.DataFrame, options: LaunchOptions) -> list[str]:
    chosen = plan
    if options.only:
        chosen = chosen[_matches(chosen, options.only)]
    if options.skip:
        chosen = chosen[~_matches(chosen, options.skip)]
    if options.order not in ("small-first", "large-first"):
        raise ConfigError("small-first or large-first", param="order", value=options.order)
    chosen = chosen.sort_values(
        ["flops", "params", "run_id"], ascending=options.order == "small-first"
    )
    return chosen["run_id"].tolist()


def check_configs(runs: RunsDir, run_ids: list[str], stale_after: float) -> None:
    """Every run about to be trained has the config it was planned with (ConfigError naming
    the first that does not): nothing is claimed or started when one was edited."""
    for run_id in run_ids:
        run = runs.run(run_id)
        if state.run_state(run, stale_after) in state.LAUNCHABLE:
            run.read_planned_config(run_id)


def _command(config: Path, gpus: int, pause_at: int | None = None) -> list[str]:
    """``scaling train`` of one config, under torchrun for several GPUs. ``--standalone``
    lets each torchrun pick a free port: a fixed one made every run after the first that a
    launcher started at once fail to bind it."""
    train = ["-m", "scaling", "train", str(config), "--no-progress"]
    if pause_at is not None:
        train += ["--pause-at", str(pause_at)]
    if gpus > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(gpus),
            *train,
        ]
    return [sys.executable, *train]


def agent_environment(grace_s: float) -> dict[str, str]:
    """For torchrun's agent (``accelerate launch`` runs the same one): forward SIGUSR2 too
    (Slurm's warning before a time limit; by default it kills the agent at once, the workers
    orphaned) and wait ``grace_s`` for the workers' checkpoints before SIGKILL, not 30 s."""
    return {
        "PET_SIGNALS_TO_HANDLE": "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR2",
        "PET_SHUTDOWN_TIMEOUT": str(int(grace_s)),
    }


def slot_devices(gpus: list[str], options: LaunchOptions) -> list[list[str]]:
    """The devices of each of the runs that can train at once: ``gpus_per_run`` of the visible
    GPUs each, or, on CPU, ``max_parallel`` slots without devices."""
    if not gpus:
        return [[] for _ in range(options.max_parallel)]
    per_run = options.gpus_per_run
    if per_run > len(gpus):
        raise ConfigError(
            f"{per_run} GPUs per run, but {len(gpus)} visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})",
            param="gpus_per_run",
            value=per_run,
        )
    count = min(options.max_parallel, len(gpus) // per_run)
    return [gpus[i * per_run : (i + 1) * per_run] for i in range(count)]


class LocalExecutor:
    """K runs at once, each in a child process; ``run`` returns {run_id: final state}."""

    def __init__(self, runs: Path, options: LaunchOptions):
        self.runs, self.options = RunsDir(runs), options
        self.plan = self.runs.read_plan()
        self.queue = select_runs(self.plan, options)
        self.selected = list(self.queue)
        check_configs(self.runs, self.queue, options.stale_after)
        self.active: dict[str, tuple[subprocess.Popen, list[str]]] = {}
        self.gpus = devices.visible_gpus()
        slot_devices(self.gpus, options)  # gpus_per_run more than there are: one line now
        self.free_gpus = list(self.gpus)
        self.finished: dict[str, str] = {}
        self.pause_at: dict[str, int] = {}  # run -> the step to pause it at (the pruner's rung)

    def run_dir(self, run_id: str) -> RunDir:
        return self.runs.run(run_id)

    def _may_retry(self, run_id: str, status: str) -> bool:
        retryable = status == "failed" or (status == "diverged" and self.options.retry_diverged)
        return retryable and self.options.attempts.get(run_id, 0) < self.options.retries

    def _claim(self, run_id: str) -> bool:
        """True when this launcher now owns the run: pending, stale, to be retried (the
        earlier attempt's result kept as result.<status>-<attempt>.json), or pruned when
        ``resume_pruned`` (its pruned result kept as result.pruned.json)."""
        run = self.run_dir(run_id)
        status = state.run_state(run, self.options.stale_after)
        if self._may_retry(run_id, status):
            attempt = self.options.attempts.get(run_id, 0) + 1
            run.set_result_aside(f"{status}-{attempt}")
            self.options.attempts[run_id] = attempt
        elif status == "pruned" and self.options.resume_pruned:
            run.set_result_aside("pruned")  # resumed from the checkpoint it was pruned at
        elif status not in state.LAUNCHABLE:
            return False
        if not state.try_claim(run, self.options.stale_after):
            return False
        run.forget_slurm_job()  # trained here now: an old Slurm record would mislabel it
        return True

    def _finish(self, run_id: str) -> None:
        """Record the run's final state; queue it again when it may be retried."""
        self.finished[run_id] = state.run_state(self.run_dir(run_id), self.options.stale_after)
        if self._may_retry(run_id, self.finished[run_id]):
            self.queue.insert(0, run_id)

    def _start(self, run_id: str, heartbeat: state.Heartbeat) -> None:
        run = self.run_dir(run_id)
        gpus: list[str] = []
        env = {**os.environ, **agent_environment(self.options.grace_s)}
        if self.gpus:
            want = self.options.gpus_per_run
            gpus, self.free_gpus = self.free_gpus[:want], self.free_gpus[want:]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)  # the launcher's own names for them
        else:  # CPU: split the cores between concurrent runs
            threads = max(1, (os.cpu_count() or 1) // self.options.max_parallel)
            env["OMP_NUM_THREADS"] = str(threads)
        run.clear_stopped()
        with run.log_path.open("a") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                _command(run.config_path, len(gpus), self.pause_at.get(run_id)),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        heartbeat.runs.add(run)
        self.active[run_id] = (process, gpus)

    def _reap(self, heartbeat: state.Heartbeat) -> None:
        for run_id, (process, gpus) in list(self.active.items()):
            code = process.poll()
            if code is None:
                continue
            run = self.run_dir(run_id)
            heartbeat.runs.discard(run)
            self.free_gpus += gpus
            del self.active[run_id]
            # torchrun reports a worker's 130 as 1: the trainer's stopped.json says it
            stopped = code == 130 or (code != 0 and run.was_stopped())
            if not stopped and (code not in (0, 1, 3) or not run.result_path.exists()):
                tail = run.log_path.read_text().strip().splitlines()[-1:] or [""]
                run.write_result(
                    {
                        "run_id": run_id,
                        "status": "failed",
                        "error": f"the training process exited with code {code}: {tail[0]}",
                    }
                )
            state.release(run)
            if stopped:
                self.finished[run_id] = state.run_state(run, self.options.stale_after)
            else:
                self._finish(run_id)

    def outcome(self) -> dict[str, list[str]]:
        """Every selected run by its state now (done, running elsewhere, stale, pending,
        failed, diverged, or unreadable: a result.json that cannot be read)."""
        by_state: dict[str, list[str]] = {}
        for run_id in self.selected:
            try:
                status = state.run_state(self.run_dir(run_id), self.options.stale_after)
            except ConfigError:
                status = "unreadable"
            by_state.setdefault(status, []).append(run_id)
        return by_state

    def run(self, on_tick=None) -> dict[str, str]:
        """Train the selected runs; a stop signal (Ctrl-C, SIGTERM, SIGUSR2: ``Stopped``)
        stops them with their checkpoints, releases their claims, and reaches the caller."""
        heartbeat = state.Heartbeat(self.options.stale_after / 4)
        main = threading.current_thread() is threading.main_thread()
        taken = stop_signals(_raise_stopped) if main else contextlib.nullcontext()
        try:
            with taken:
                try:
                    self._loop(heartbeat, on_tick)
                except (KeyboardInterrupt, Stopped):
                    if main:  # a second signal must not cut the wait for the checkpoints short
                        for sig in STOP_SIGNALS:
                            signal.signal(sig, signal.SIG_IGN)
                    self.stop()
                    raise
        finally:
            heartbeat.stop()
        return self.finished

    def _loop(self, heartbeat: state.Heartbeat, on_tick) -> None:
        while self.queue or self.active:
            while (
                self.queue
                and len(self.active) < self.options.max_parallel
                and (not self.gpus or len(self.free_gpus) >= self.options.gpus_per_run)
            ):
                run_id = self.queue.pop(0)
                if self._claim(run_id):
                    self._start(run_id, heartbeat)
            self._reap(heartbeat)
            if on_tick is not None:
                on_tick(self)
            if self.active:
                time.sleep(self.options.poll_s)

    def stop(self) -> None:
        """Every child checkpoints and exits (SIGINT; the trainer treats SIGTERM the same),
        within ``grace_s`` or it is killed; then the claims are released."""
        for process, _ in self.active.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + self.options.grace_s
        for run_id, (process, _) in self.active.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            state.release(self.run_dir(run_id))


class InProcessExecutor(LocalExecutor):
    """The same selection, claims, heartbeats and retries, but every run trained one after the
    other in this process (the demo, notebooks, tests): no child processes, and a run's
    exception reaches the caller. ``on_start(run_id, number, total)`` is called before each."""

    def run(self, on_tick=None, on_start=None) -> dict[str, str]:
        from scaling.training.lifecycle import train
        from scaling.training.trainer import Paused

        heartbeat = state.Heartbeat(self.options.stale_after / 4)
        total, number = len(self.queue), 0
        try:
            while self.queue:
                run_id = self.queue.pop(0)
                number += 1
                if not self._claim(run_id):
                    continue
                run = self.run_dir(run_id)
                heartbeat.runs.add(run)
                try:
                    if on_start is not None:
                        on_start(run_id, number, total)
                    train(
                        run.read_planned_config(run_id),
                        run.path,
                        progress=False,
                        pause_at=self.pause_at.get(run_id),
                    )
                except Paused:
                    pass  # checkpointed at its rung: pending again, for the pruner to go on
                finally:
                    heartbeat.runs.discard(run)
                    state.release(run)
                self._finish(run_id)
                if on_tick is not None:
                    on_tick(self)
        finally:
            heartbeat.stop()
        return self.finished
