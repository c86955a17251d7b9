"""Slurm's queue over the run files, with a stand-in squeue (the real one: test_slurm_cluster)."""

import os

import pytest

from scaling.config import ConfigError
from scaling.launching import state
from scaling.launching.slurm_queue import overlay_queue
from scaling.rundir import RunsDir

from .conftest import run_ids


@pytest.fixture
def fake_squeue(tmp_path, monkeypatch):
    """Put an squeue on PATH that prints ``listing`` and counts its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"

    def install(listing: str, code: int = 0) -> None:
        script = bin_dir / "squeue"
        script.write_text(
            f"#!/bin/sh\necho x >> {calls}\nprintf '%s' '{listing}'\n"
            + (f"echo 'slurm_load_jobs error: down' >&2\nexit {code}\n" if code else "")
        )
        script.chmod(0o755)

    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    install.calls = lambda: len(calls.read_text().splitlines()) if calls.exists() else 0
    return install


def runs_with_jobs(tmp_path, jobs: dict[str, tuple[str, str] | None]) -> RunsDir:
    directory = RunsDir(tmp_path / "RUNS")
    for run_id, job in jobs.items():
        run = directory.run(run_id)
        run.path.mkdir(parents=True)
        if job is not None:
            run.write_slurm_job(*job)
    return directory


def test_a_waiting_job_is_queued_a_cancelled_one_cancelled_a_gone_one_pending(
    tmp_path, fake_squeue
):
    fake_squeue("7_0 PENDING\n7_1 CANCELLED\n8 RUNNING\n")
    directory = runs_with_jobs(
        tmp_path,
        {"a": ("7_0", "submitted"), "b": ("7_1", "submitted"), "c": ("6", "submitted"), "d": None},
    )
    states = {r: state.run_state(directory.run(r)) for r in "abcd"}
    assert states == dict.fromkeys("abcd", "pending")
    assert overlay_queue(directory, states) == {
        "a": "queued",
        "b": "cancelled",
        "c": "pending",  # the job left the queue without the run finishing: launch again
        "d": "pending",
    }


def test_a_cancel_recorded_by_the_job_is_a_state_of_its_own(tmp_path, fake_squeue):
    directory = runs_with_jobs(tmp_path, {"a": ("7_0", "cancelled")})
    assert state.run_state(directory.run("a")) == "cancelled"
    assert "cancelled" in state.LAUNCHABLE
    assert overlay_queue(directory, {"a": "cancelled"}) == {"a": "cancelled"}
    assert fake_squeue.calls() == 0  # squeue is asked only about submitted, pending runs


def test_runs_slurm_never_had_never_ask_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue anywhere
    directory = runs_with_jobs(tmp_path, {"a": None})
    assert overlay_queue(directory, {"a": "pending"}) == {"a": "pending"}


def test_squeue_failing_or_missing_is_one_line(tmp_path, fake_squeue, monkeypatch):
    directory = runs_with_jobs(tmp_path, {"a": ("7_0", "submitted")})
    fake_squeue("", code=1)
    with pytest.raises(ConfigError, match="squeue failed: slurm_load_jobs error: down"):
        overlay_queue(directory, {"a": "pending"})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="squeue not found"):
        overlay_queue(directory, {"a": "pending"})


def test_a_corrupt_job_record_names_its_file(tmp_path):
    directory = runs_with_jobs(tmp_path, {"a": None})
    directory.run("a").slurm_job_path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"slurm_job.json: cannot read .*delete it"):
        state.run_state(directory.run("a"))


@pytest.mark.slow
def test_status_names_a_corrupt_job_record_in_one_line_and_changes_nothing(plan_dir):
    """Through the CLI in a fresh process, as a user meets it."""
    import subprocess
    import sys

    runs = plan_dir(params="[3e4]")
    (run_id,) = run_ids(runs)
    record = runs / "runs" / run_id / "slurm_job.json"
    record.write_text("[1, 2")
    shown = subprocess.run(
        [sys.executable, "-m", "scaling", "status", str(runs)], capture_output=True, text=True
    )
    assert shown.returncode == 2
    assert f"{record}: cannot read" in shown.stderr + shown.stdout
    assert len((shown.stderr + shown.stdout).strip().splitlines()) == 1
    assert record.read_text() == "[1, 2"
