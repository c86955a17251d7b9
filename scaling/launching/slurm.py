"""The Slurm executor: the pending runs of a plan as one submitit job array.

Each array task claims its run like the local executor (so a run never trains twice, even
beside a local launcher), keeps the claim fresh, and trains under ``accelerate launch`` (one
process per GPU, across nodes when the run has several). On preemption or time-out submitit
calls ``checkpoint``: the training processes get SIGTERM, write their checkpoint, and the task
is requeued; the requeued task resumes from that checkpoint.

Resources come from ``[launch.slurm]`` in the spec (RUNS/sweep.toml) and ``--slurm KEY=VALUE``:
partition, account, time_min, nodes, gpus_per_node, cpus_per_task, mem_gb, array_parallelism,
and ``sbatch`` (a table of extra directives).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import submitit

from scaling.config import ConfigError
from scaling.launching import state
from scaling.launching.local import LaunchOptions, select_runs
from scaling.rundir import RunsDir


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

    def _command(self) -> list[str]:
        config = str(RunsDir(self.runs).run(self.run_id).config_path)
        env = submitit.JobEnvironment()
        nodes, gpus = env.num_nodes, _gpus_here()
        if nodes * max(gpus, 1) == 1:
            return [sys.executable, "-m", "scaling", "train", config, "--no-progress"]
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_machines",
            str(nodes),
            "--num_processes",
            str(nodes * gpus),
            "--machine_rank",
            str(env.node),
            "--main_process_ip",
            env.hostnames[0],
            "--main_process_port",
            "29500",
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
            with run.log_path.open("a") as log:
                self.process = subprocess.Popen(
                    self._command(), stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
                )
                code = self.process.wait()
        finally:
            heartbeat.stop()
            if leader:
                state.release(run)
        if code == 130:
            return "interrupted"
        return state.run_state(run, self.stale_after)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Preemption or time-out: let training checkpoint, then requeue this task."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait()
        return submitit.helpers.DelayedSubmission(
            SlurmRun(self.runs, self.run_id, self.stale_after)
        )


def _gpus_here() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def launch_slurm(
    runs: Path,
    options: LaunchOptions,
    dry_run: bool = False,
    overrides: dict[str, Any] | None = None,
    wait: bool = False,
) -> str:
    """Submit the pending runs as a job array (or, with ``dry_run``, return the sbatch
    script). ``cluster = "local"`` in the settings runs the tasks as local processes."""
    runs = runs.resolve()  # array tasks may start in another directory
    settings = slurm_settings(runs, overrides)
    directory = RunsDir(runs)
    pending = [
        r
        for r in select_runs(directory.read_plan(), options)
        if state.run_state(directory.run(r), options.stale_after) in ("pending", "stale")
    ]
    params = _executor_parameters(settings, len(pending))
    folder = directory.slurm_logs / "%j"
    if dry_run:
        from submitit.slurm.slurm import _make_sbatch_string

        flat = {k.removeprefix("slurm_"): v for k, v in params.items()}
        flat["time"] = flat.pop("timeout_min")
        flat["ntasks_per_node"] = flat.pop("tasks_per_node")
        flat["additional_parameters"] = flat.pop("additional_parameters", None)
        flat.pop("mem_gb", None)
        if "mem_gb" in params:
            flat["mem"] = f"{params['mem_gb']}GB"
        script = _make_sbatch_string(
            command=f"{sys.executable} -u -m submitit.core._submit {folder}",
            folder=folder,
            job_name=runs.name,
            map_count=len(pending),
            **flat,
        )
        return f"# {len(pending)} run(s) would be submitted as one array\n{script}"
    if not pending:
        return "nothing to submit: every selected run is done, running or failed"
    executor = submitit.AutoExecutor(folder=folder, cluster=settings.get("cluster"))
    executor.update_parameters(
        name=runs.name,
        **(params if executor.cluster == "slurm" else {"timeout_min": params["timeout_min"]}),
    )
    with executor.batch():
        jobs = [executor.submit(SlurmRun(runs, r, options.stale_after)) for r in pending]
    if wait:
        results = [job.result() for job in jobs]
        return "\n".join(f"{r}: {s}" for r, s in zip(pending, results, strict=True))
    ids = ", ".join(job.job_id for job in jobs[:5])
    return f"submitted {len(jobs)} run(s) as a job array ({ids}{', ...' if len(jobs) > 5 else ''})"
