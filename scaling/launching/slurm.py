"""The Slurm executor: the pending runs of a plan as one submitit job array.

Each array task claims its run like the local executor (so a run never trains twice, even
beside a local launcher), keeps the claim fresh, and trains under ``accelerate launch`` (one
process per GPU, across nodes when the run has several). On preemption or time-out submitit
calls ``checkpoint``: the training processes get SIGTERM, write their checkpoint, and the task
is requeued; the requeued task resumes from that checkpoint. An outside ``scontrol requeue``
works the same way (Slurm sends the SIGTERM itself); after a ``scancel`` the task records the
run as cancelled (``slurm_job.json``), which ``scaling status`` shows.

Every submitted run records its job id, so a launcher started again while jobs wait in the
queue submits nothing twice (``slurm_queue``).

Resources come from ``[launch.slurm]`` in the spec (RUNS/sweep.toml) and ``--slurm KEY=VALUE``:
partition, account, time_min, nodes, gpus_per_node, cpus_per_task, mem_gb, array_parallelism,
and ``sbatch`` (a table of extra directives).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import submitit

from scaling import devices
from scaling.config import ConfigError
from scaling.launching import state
from scaling.launching.local import (
    LaunchOptions,
    agent_environment,
    check_configs,
    select_runs,
)
from scaling.launching.slurm_queue import overlay_queue
from scaling.rundir import RunsDir

# Seconds the training processes get to write their checkpoint after a stop: Slurm's KillWait
# (60 s on the test cluster, 30 s by default) ends it sooner where it is shorter.
STOP_GRACE_S = 300


def slurm_settings(runs: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """[launch.slurm] of RUNS/sweep.toml with ``overrides`` (from --slurm KEY=VALUE), checked
    by the spec's own section model: an unknown key or a wrong type names file and key."""
    from pydantic import ValidationError

    from scaling.config import describe_validation_error
    from scaling.planning.spec import SlurmSection

    directory = RunsDir(runs)
    given = directory.read_sweep().get("launch", {}).get("slurm", {})
    try:
        SlurmSection.model_validate(given)
    except ValidationError as err:
        where = f"{directory.sweep_path}: [launch.slurm]"
        raise ConfigError(describe_validation_error(err, where)) from None
    try:
        settings = SlurmSection.model_validate({**given, **(overrides or {})})
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, "--slurm")) from None
    return settings.model_dump(exclude_none=True)


def _executor_parameters(settings: dict[str, Any], n_jobs: int) -> dict[str, Any]:
    gpus = settings["gpus_per_node"]
    params = {
        "timeout_min": settings["time_min"],
        "nodes": settings["nodes"],
        "tasks_per_node": 1,
        "cpus_per_task": settings.get("cpus_per_task", max(1, 8 * max(gpus, 1))),
        "slurm_array_parallelism": min(settings["array_parallelism"], max(n_jobs, 1)),
    }
    if gpus:
        params["gpus_per_node"] = gpus
    if "mem_gb" in settings:
        params["mem_gb"] = settings["mem_gb"]
    for key in ("partition", "account"):
        if key in settings:
            params[f"slurm_{key}"] = settings[key]
    if settings.get("sbatch"):
        params["slurm_additional_parameters"] = dict(settings["sbatch"])
    return params


class SlurmRun(submitit.helpers.Checkpointable):
    """One array task: claim the run, train it, release it; requeue on preemption."""

    def __init__(self, runs: Path, run_id: str, stale_after: float):
        self.runs, self.run_id, self.stale_after = runs, run_id, stale_after
        self.process: subprocess.Popen | None = None
        self.exited: threading.Event | None = None

    def _command(self) -> list[str]:
        config = str(RunsDir(self.runs).run(self.run_id).config_path)
        env = submitit.JobEnvironment()
        nodes, per_node = env.num_nodes, max(len(devices.visible_gpus()), 1)  # CPU nodes: one
        if nodes * per_node == 1:
            return [sys.executable, "-m", "scaling", "train", config, "--no-progress"]
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_machines",
            str(nodes),
            "--num_processes",
            str(nodes * per_node),
            "--machine_rank",
            str(env.node),
            "--main_process_ip",
            env.hostnames[0],
            "--main_process_port",
            str(rendezvous_port()),
            # precision and compilation are the run's own: never what the environment or a
            # user's `accelerate config` file says
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "scaling",
            "train",
            config,
            "--no-progress",
        ]

    def __call__(self) -> str:
        run = RunsDir(self.runs).run(self.run_id)
        leader = submitit.JobEnvironment().node == 0
        if leader and not state.try_claim(run, self.stale_after):
            return state.run_state(run, self.stale_after)  # done, or someone else has it
        heartbeat = state.Heartbeat(self.stale_after / 4)
        if leader:
            heartbeat.runs.add(run)
        try:
            if leader:
                run.clear_stopped()
            env = {**os.environ, **agent_environment(STOP_GRACE_S)}
            with run.log_path.open("a") as log:
                self.process = subprocess.Popen(
                    self._command(), stdout=log, stderr=subprocess.STDOUT, env=env
                )
                code = self._wait()
        finally:
            heartbeat.stop()
            if leader:
                state.release(run)
        # stopped by a signal, its checkpoint written (accelerate launch says 1 for the 130)
        if code == 130 or (code != 0 and run.was_stopped()):
            stopped_by = _stopped_by()
            if leader and stopped_by == "cancelled":
                run.write_slurm_job(submitit.JobEnvironment().job_id, "cancelled")
            return stopped_by or "interrupted"
        return state.run_state(run, self.stale_after)

    def _wait(self) -> int:
        """The trainer's exit code. A thread waits on it: ``checkpoint`` runs as a signal
        handler inside this wait, and Popen's own wait, re-entered there, deadlocks on its
        lock."""
        process = self.process
        self.exited = exited = threading.Event()
        threading.Thread(target=lambda: (process.wait(), exited.set()), daemon=True).start()
        while not exited.wait(1.0):
            pass
        return process.returncode

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Preemption or time-out (submitit's USR2): let training checkpoint (it got USR2
        too, and stops on it; SIGTERM makes sure), then requeue this task."""
        if self.process is not None and self.exited is not None and not self.exited.is_set():
            os.kill(self.process.pid, signal.SIGTERM)
            while not self.exited.wait(0.2):
                pass
        return submitit.helpers.DelayedSubmission(
            SlurmRun(self.runs, self.run_id, self.stale_after)
        )


def _stopped_by() -> str | None:
    """Why Slurm sent this job SIGTERM: "requeued" when its restart count went up while it ran
    (scontrol requeue, preemption with requeue), else "cancelled" (scancel, or a time limit
    reached without requeue). None outside Slurm or when scontrol cannot say."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    try:
        shown = subprocess.run(
            ["scontrol", "show", "job", job_id],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    restarts = re.search(r"\bRestarts=(\d+)", shown)
    if restarts is None:
        return None
    started_as = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    return "requeued" if int(restarts.group(1)) > started_as else "cancelled"


def rendezvous_port() -> int:
    """The main process's port for a multi-GPU task, from its job: the same on every node of
    the task, different between tasks that share a first node (a fixed 29500 made the second
    fail)."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID") or "0"
    task = os.environ.get("SLURM_ARRAY_TASK_ID") or "0"
    return 20000 + (int(job) * 1009 + int(task)) % 20000


def launch_slurm(
    runs: Path,
    options: LaunchOptions,
    dry_run: bool = False,
    overrides: dict[str, Any] | None = None,
    wait: bool = False,
) -> str:
    """Submit the runs still to train (pending, stale, cancelled; not those whose job waits in
    the queue) as one job array, or, with ``dry_run``, return the sbatch script it would
    submit. ``cluster = "local"`` in the settings runs the tasks as local processes."""
    runs = runs.resolve()  # array tasks may start in another directory
    settings = slurm_settings(runs, overrides)
    cluster = settings.get("cluster", "slurm")
    on_slurm = cluster == "slurm"
    missing = slurm_commands_missing()
    if on_slurm and missing and not dry_run:
        # submitit's AutoExecutor would fall back to training here, in the background.
        raise ConfigError(
            f"no Slurm here: {'/'.join(missing)} not on PATH; use --dry-run to see the script"
        )
    directory = RunsDir(runs)
    selected = select_runs(directory.read_plan(), options)
    states = {r: state.run_state(directory.run(r), options.stale_after) for r in selected}
    if on_slurm and not dry_run:
        states = overlay_queue(directory, states)
    to_submit = [r for r in selected if states[r] in state.LAUNCHABLE]
    check_configs(directory, to_submit, options.stale_after)
    params = _executor_parameters(settings, len(to_submit))
    tasks = [SlurmRun(runs, r, options.stale_after) for r in to_submit]
    if dry_run:
        if not tasks:
            return "# nothing would be submitted: every selected run is done, queued or running"
        script = _sbatch_script(directory.slurm_logs, runs.name, params, tasks)
        header = f"# {len(tasks)} run(s) would be submitted as one array"
        if missing:
            header += (
                f"\n# no Slurm found here ({'/'.join(missing)} not on PATH): this is the script "
                "a cluster's login node would submit"
            )
        return f"{header}\n{script}"
    queued = sum(s == "queued" for s in states.values())
    if not tasks:
        waiting = f" ({queued} queued in Slurm)" if queued else ""
        return f"nothing to submit: every selected run is done, queued, running or failed{waiting}"
    # The cluster is always named: given none, submitit picks whatever it finds, and that is
    # its local executor on a machine without Slurm.
    executor = submitit.AutoExecutor(folder=directory.slurm_logs / "%j", cluster=cluster)
    executor.update_parameters(
        name=runs.name,
        **(params if executor.cluster == "slurm" else {"timeout_min": params["timeout_min"]}),
    )
    with executor.batch():
        jobs = [executor.submit(task) for task in tasks]
    if executor.cluster == "slurm":
        for run_id, job in zip(to_submit, jobs, strict=True):
            directory.run(run_id).write_slurm_job(job.job_id, "submitted")
    if wait:
        results = [job.result() for job in jobs]
        return "\n".join(f"{r}: {s}" for r, s in zip(to_submit, results, strict=True))
    ids = ", ".join(job.job_id for job in jobs[:5])
    more = ", ..." if len(jobs) > 5 else ""
    also = f"; {queued} already queued" if queued else ""
    return f"submitted {len(jobs)} run(s) as a job array ({ids}{more}){also}"


def slurm_commands_missing() -> list[str]:
    """The Slurm client commands a submission needs that are not on PATH (none on a login
    node)."""
    return [command for command in ("sbatch", "srun") if shutil.which(command) is None]


def _sbatch_script(folder: Path, name: str, params: dict[str, Any], tasks: list) -> str:
    """The sbatch script submitit would submit, made by submitit itself: the submission goes
    through its public API to a stand-in ``sbatch`` that keeps the script and submits nothing
    (and a stand-in ``srun``, which submitit looks for before it writes anything, so the script
    comes out on a machine without Slurm too). The tasks are pickled into a scratch folder,
    whose path is swapped for ``folder``."""
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        bin_dir = scratch / "bin"
        bin_dir.mkdir()
        stand_ins = {
            "sbatch": f'#!/bin/sh\ncp "$1" "{scratch}/script.sh"\necho "Submitted batch job 0"\n',
            "srun": "#!/bin/sh\nexit 1\n",
        }
        for command, text in stand_ins.items():
            (bin_dir / command).write_text(text)
            (bin_dir / command).chmod(0o755)
        path = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"
        try:
            executor = submitit.AutoExecutor(folder=scratch / "jobs" / "%j", cluster="slurm")
            executor.update_parameters(name=name, **params)
            with executor.batch():
                for task in tasks:
                    executor.submit(task)
        finally:
            os.environ["PATH"] = path
        script = (scratch / "script.sh").read_text()
    return script.replace(str(scratch / "jobs"), str(folder))
