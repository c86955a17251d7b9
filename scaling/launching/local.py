"""The local executor: train every pending run of a plan on this machine, K at a time.

Each run is claimed (``state.try_claim``), trained in a child process (``scaling train``, or
``torchrun`` for several GPUs per run) that dies with the launcher, and its claim kept fresh by
a heartbeat until the child exits. Ctrl-C passes to the children, which checkpoint and stop;
launching again resumes them. A run that fails is retried up to ``retries`` times.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scaling.config import ConfigError
from scaling.fileio import write_json_atomic
from scaling.launching import state

PR_SET_PDEATHSIG = 1


@dataclass
class LaunchOptions:
    max_parallel: int = 1
    gpus_per_run: int = 1
    order: str = "small-first"
    only: str | None = None
    skip: str | None = None
    retries: int = 0
    retry_diverged: bool = False
    stale_after: float = state.DEFAULT_STALE_AFTER
    poll_s: float = 0.5
    progress: bool = True
    attempts: dict[str, int] = field(default_factory=dict)


def read_plan(runs: Path) -> pd.DataFrame:
    path = runs / "plan.csv"
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such file (plan the sweep first: scaling plan SPEC --out {runs})"
        )
    return pd.read_csv(path, dtype={"run_id": str})


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
            f"--only/--skip {expression!r}: not run ids, a budget or a query "
            f"over plan.csv columns ({err})"
        ) from None


def select_runs(plan: pd.DataFrame, options: LaunchOptions) -> list[str]:
    chosen = plan
    if options.only:
        chosen = chosen[_matches(chosen, options.only)]
    if options.skip:
        chosen = chosen[~_matches(chosen, options.skip)]
    if options.order not in ("small-first", "large-first"):
        raise ConfigError(f"--order {options.order!r}: small-first or large-first")
    chosen = chosen.sort_values(
        ["flops", "params", "run_id"], ascending=options.order == "small-first"
    )
    return chosen["run_id"].tolist()


def _die_with_parent() -> None:
    """In the child: be killed when the launcher dies, so no orphan trains a claimed run."""
    # not Linux: no such call, but the heartbeat timeout still hands the run to another launcher
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _command(config: Path, gpus: int) -> list[str]:
    train = ["-m", "scaling", "train", str(config), "--no-progress"]
    if gpus > 1:
        port = str(29500 + os.getpid() % 5000)
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(gpus),
            "--master_port",
            port,
            *train,
        ]
    return [sys.executable, *train]


class LocalExecutor:
    def __init__(self, runs: Path, options: LaunchOptions):
        self.runs, self.options = runs, options
        self.plan = read_plan(runs)
        self.queue = select_runs(self.plan, options)
        self.active: dict[str, tuple[subprocess.Popen, list[int]]] = {}
        self.n_gpus = _visible_gpus()
        self.free_gpus = list(range(self.n_gpus))
        self.finished: dict[str, str] = {}

    def run_dir(self, run_id: str) -> Path:
        return self.runs / "runs" / run_id

    def _may_retry(self, run_id: str, status: str) -> bool:
        retryable = status == "failed" or (status == "diverged" and self.options.retry_diverged)
        return retryable and self.options.attempts.get(run_id, 0) < self.options.retries

    def _startable(self, run_id: str) -> bool:
        status = state.run_state(self.run_dir(run_id), self.options.stale_after)
        if self._may_retry(run_id, status):
            result = self.run_dir(run_id) / "result.json"
            attempt = self.options.attempts.get(run_id, 0) + 1
            result.rename(result.with_name(f"result.{status}-{attempt}.json"))
            self.options.attempts[run_id] = attempt
            return True
        return status in ("pending", "stale")

    def _start(self, run_id: str, heartbeat: state.Heartbeat) -> None:
        run_dir = self.run_dir(run_id)
        gpus: list[int] = []
        env = dict(os.environ)
        if self.n_gpus:
            want = max(1, self.options.gpus_per_run)
            gpus, self.free_gpus = self.free_gpus[:want], self.free_gpus[want:]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        else:  # CPU: split the cores between concurrent runs
            threads = max(1, (os.cpu_count() or 1) // self.options.max_parallel)
            env["OMP_NUM_THREADS"] = str(threads)
        with (run_dir / "train.log").open("a") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                _command(run_dir / "config.json", len(gpus)),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        heartbeat.runs.add(run_dir)
        self.active[run_id] = (process, gpus)

    def _reap(self, heartbeat: state.Heartbeat) -> None:
        for run_id, (process, gpus) in list(self.active.items()):
            code = process.poll()
            if code is None:
                continue
            run_dir = self.run_dir(run_id)
            heartbeat.runs.discard(run_dir)
            self.free_gpus += gpus
            del self.active[run_id]
            if code not in (0, 1, 3, 130) or (
                code != 130 and not (run_dir / "result.json").exists()
            ):
                tail = (run_dir / "train.log").read_text().strip().splitlines()[-1:] or [""]
                write_json_atomic(
                    run_dir / "result.json",
                    {
                        "run_id": run_id,
                        "status": "failed",
                        "error": f"the training process exited with code {code}: {tail[0]}",
                    },
                )
            state.release(run_dir)
            self.finished[run_id] = state.run_state(run_dir, self.options.stale_after)
            if code != 130 and self._may_retry(run_id, self.finished[run_id]):
                self.queue.insert(0, run_id)

    def run(self, on_tick=None) -> dict[str, str]:
        heartbeat = state.Heartbeat(self.options.stale_after / 4)
        try:
            while self.queue or self.active:
                while (
                    self.queue
                    and len(self.active) < self.options.max_parallel
                    and (
                        not self.n_gpus or len(self.free_gpus) >= max(1, self.options.gpus_per_run)
                    )
                ):
                    run_id = self.queue.pop(0)
                    if self._startable(run_id) and state.try_claim(
                        self.run_dir(run_id), self.options.stale_after
                    ):
                        self._start(run_id, heartbeat)
                self._reap(heartbeat)
                if on_tick is not None:
                    on_tick(self)
                if self.active:
                    time.sleep(self.options.poll_s)
        except KeyboardInterrupt:
            self.stop()
            raise
        finally:
            heartbeat.stop()
        return self.finished

    def stop(self) -> None:
        """Ctrl-C: every child checkpoints and exits (SIGINT), then the claims are released."""
        for process, _ in self.active.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for run_id, (process, _) in self.active.items():
            try:
                process.wait(timeout=300)
            except subprocess.TimeoutExpired:
                process.kill()
            state.release(self.run_dir(run_id))


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def last_metrics(run_dir: Path) -> dict:
    """The last line of a run's metrics.jsonl (cheaply: only the file's tail is read)."""
    path = run_dir / "metrics.jsonl"
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            lines = handle.read().decode(errors="replace").strip().splitlines()
        return json.loads(lines[-1]) if lines else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
