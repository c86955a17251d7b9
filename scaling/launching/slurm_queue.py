"""What the Slurm queue says about a plan's runs: the one place that runs ``squeue``.

Run state comes from files (``state.run_state``), but a run whose job waits in the queue has
no files yet that say so: it looks ``pending``, and a launcher started again would submit it
a second time. Each submitted run records its job id (``slurm_job.json``); here those ids are
looked up in the queue.
"""

from __future__ import annotations

import shutil
import subprocess

from scaling.config import ConfigError
from scaling.rundir import RunsDir

# squeue's states for a job that has not ended: it will run (again) without anyone's help
ALIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
}


def queue_states() -> dict[str, str]:
    """Every job Slurm still lists, one entry per array task: ``{"12_0": "PENDING", ...}``.
    ConfigError when squeue is missing or fails: without it nothing can be said."""
    if shutil.which("squeue") is None:
        raise ConfigError("squeue not found: the Slurm executor needs Slurm's commands on PATH")
    try:
        listing = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i %T"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except subprocess.CalledProcessError as err:
        raise ConfigError(f"squeue failed: {err.stderr.strip() or err}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError("squeue did not answer in 60 s: is slurmctld up?") from None
    states = {}
    for line in listing.splitlines():
        job_id, _, job_state = line.strip().partition(" ")
        states[job_id] = job_state.strip()
    return states


def overlay_queue(directory: RunsDir, states: dict[str, str]) -> dict[str, str]:
    """``states`` (run id → state from files) with Slurm's view added: a pending run whose
    job is still in the queue is ``queued``; one whose job was cancelled before it started is
    ``cancelled``. Runs Slurm never had are left as they are, and squeue is asked only when
    some run has a job."""
    submitted = {}
    for run_id, status in states.items():
        if status == "pending":
            job = directory.run(run_id).read_slurm_job()
            if job is not None and job.get("state") == "submitted":
                submitted[run_id] = job["job_id"]
    if not submitted:
        return states
    queue = queue_states()
    overlaid = dict(states)
    for run_id, job_id in submitted.items():
        job_state = queue.get(job_id, "")
        if job_state in ALIVE:
            overlaid[run_id] = "queued"
        elif job_state == "CANCELLED":
            overlaid[run_id] = "cancelled"
    return overlaid
