"""Run state from files, and the exclusive claim that makes every run train exactly once.

A run is ``done``, ``pruned`` (stopped by ``launch --prune`` at a rung, its checkpoint kept),
``failed`` or ``diverged`` when its result.json says so; ``running`` while a
claim file exists whose heartbeat (the file's modification time, refreshed by its owner) is
fresh; ``stale`` when that heartbeat is older than the timeout (its owner died: the claim may
be taken over and the run resumes from its checkpoint); ``cancelled`` when its Slurm job was
cancelled (scancel) before it finished; ``pending`` otherwise. A pending run whose Slurm job
still waits in the queue is ``queued`` (`slurm_queue.overlay_queue` asks Slurm; files cannot
tell). Launching again takes pending, stale and cancelled runs; each resumes from its
checkpoint.

Claims are created with O_CREAT | O_EXCL, atomic on local file systems and on NFS v3+, so two
launchers on one directory, on one machine or on two sharing a file system, never both win.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from scaling.rundir import RunDir

STATES = (
    "pending",
    "queued",
    "running",
    "stale",
    "cancelled",
    "done",
    "pruned",
    "failed",
    "diverged",
)
LAUNCHABLE = ("pending", "stale", "cancelled")
DEFAULT_STALE_AFTER = 120.0


def run_state(run: RunDir, stale_after: float = DEFAULT_STALE_AFTER) -> str:
    """The run's state from its files; a corrupt result.json raises ConfigError naming it."""
    result = run.read_result()
    if result is not None:
        return result["status"]
    claim = run.claim_path
    try:
        age = time.time() - claim.stat().st_mtime
    except FileNotFoundError:
        return _without_claim(run)
    if age >= stale_after or _owner_gone(read_claim(run)):
        return "stale"
    return "running"


def _without_claim(run: RunDir) -> str:
    job = run.read_slurm_job()
    return "cancelled" if job is not None and job.get("state") == "cancelled" else "pending"


def _owner_gone(claim: dict) -> bool:
    """True when the claim's owner was a process on this host that no longer exists: its run
    is stale at once, without waiting for the heartbeat to age."""
    if claim.get("host") != socket.gethostname() or not isinstance(claim.get("pid"), int):
        return False
    try:
        os.kill(claim["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def read_claim(run: RunDir) -> dict:
    return _read_json(run.claim_path)


def _read_json(path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def try_claim(run: RunDir, stale_after: float = DEFAULT_STALE_AFTER) -> bool:
    """Claim the run for this process; True when it is ours. A stale claim is moved aside
    (one rename wins) and claimed afresh."""
    claim = run.claim_path
    if run_state(run, stale_after) == "stale":
        aside = claim.with_name(f"{claim.name}.stale.{os.getpid()}.{time.time_ns()}")
        try:
            claim.rename(aside)
            fresh = time.time() - aside.stat().st_mtime < stale_after
            if fresh and not _owner_gone(_read_json(aside)):
                # between our look and our rename another launcher took the stale claim over
                # and wrote a fresh one: put it back (link never overwrites) and stand aside
                try:
                    os.link(aside, claim)
                finally:
                    aside.unlink()
                return False
        except FileNotFoundError:
            pass  # another launcher moved it first
        except FileExistsError:
            return False
    if run.result_path.is_file():
        return False
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}, handle
        )
    return True


def release(run: RunDir) -> None:
    run.claim_path.unlink(missing_ok=True)


class Heartbeat:
    """Refreshes the claims of the runs this process owns until stopped."""

    def __init__(self, interval: float):
        self.interval = interval
        self.runs: set[RunDir] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for run in list(self.runs):
                try:
                    os.utime(run.claim_path)
                except FileNotFoundError:
                    self.runs.discard(run)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
