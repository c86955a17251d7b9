"""The Slurm executor against a real one-node Slurm cluster (scripts/slurm_cluster.sh):
one job array, exactly-once runs, a launcher started again while jobs wait, `scontrol
requeue` resuming from the checkpoint with the losses of a run never stopped, `scancel` in
`scaling status` and a relaunch resuming.

CI installs Slurm and sets SCALING_SLURM_TESTS=1, which turns a cluster that cannot start into
a failure; elsewhere these tests skip when Slurm is not installed or we are not root."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import checkpoint_step, logged, train_until_step, wait_for
from .conftest import run_ids

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("SCALING_SLURM_TESTS") == "1"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    missing = any(shutil.which(c) is None for c in ("slurmctld", "munged", "sbatch", "srun"))
    reason = "Slurm is not installed (scripts/slurm_cluster.sh install)" if missing else None
    if reason is None and os.geteuid() != 0:
        reason = "the one-node cluster runs its daemons as root"
    if reason:
        if REQUIRED:
            pytest.fail(f"SCALING_SLURM_TESTS=1 but {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    script = REPO / "scripts" / "slurm_cluster.sh"
    started = subprocess.run(
        ["bash", str(script), "start", str(folder)], capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    yield folder
    subprocess.run(["bash", str(script), "stop", str(folder)], check=False)
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


def scaling(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scaling", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},  # the status table's columns uncut
    )


def queue() -> dict[str, str]:
    listing = subprocess.run(
        ["squeue", "--noheader", "--array", "--format=%i %T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in listing.splitlines())


def slurm_job(runs: Path, run_id: str) -> dict:
    return json.loads((runs / "runs" / run_id / "slurm_job.json").read_text())


def states(runs: Path) -> dict[str, str]:
    shown = scaling("status", str(runs), "--json")
    assert shown.returncode == 0, shown.stderr
    return {row["run_id"]: row["state"] for row in json.loads(shown.stdout)}


def with_slurm_settings(runs: Path, extra: str = "") -> None:
    sweep = runs / "sweep.toml"
    sweep.write_text(
        sweep.read_text() + f"\n[launch.slurm]\ncpus_per_task = 1\ntime_min = 30\n{extra}"
    )


def test_a_grid_is_one_array_each_run_done_once_and_a_second_launcher_adds_nothing(
    slurm_cluster, plan_dir
):
    runs = plan_dir(params="[3e4, 6e4]")
    # held jobs stay in the queue until released: the second launcher meets them there
    with_slurm_settings(runs, "[launch.slurm.sbatch]\nhold = true\n")
    first = scaling("launch", str(runs), "--executor", "slurm")
    assert first.returncode == 0, first.stderr
    assert "submitted 2 run(s) as a job array" in first.stdout
    ids = {r: slurm_job(runs, r)["job_id"] for r in run_ids(runs)}
    (array_id,) = {job_id.split("_")[0] for job_id in ids.values()}  # one array
    assert sorted(ids.values()) == [f"{array_id}_{i}" for i in range(2)]
    assert all(queue()[job_id] == "PENDING" for job_id in ids.values())
    assert set(states(runs).values()) == {"queued"}

    again = scaling("launch", str(runs), "--executor", "slurm")
    assert again.returncode == 0, again.stderr
    assert "nothing to submit" in again.stdout and "2 queued" in again.stdout
    assert sorted(j for j in queue() if j.startswith(f"{array_id}_")) == sorted(ids.values())
    assert len(queue()) == 2  # nothing else was submitted

    subprocess.run(["scontrol", "release", array_id], check=True)
    wait_for(lambda: not set(ids.values()) & set(queue()), what="the array to finish")
    assert set(states(runs).values()) == {"done"}
    for run_id in ids:
        run = runs / "runs" / run_id
        result = json.loads((run / "result.json").read_text())
        assert result["status"] == "done" and result["resumed_from_step"] is None
        steps = [
            json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == sorted(set(steps))  # one pass: no step logged twice
        assert not (run / "claim.json").exists()
    last = scaling("launch", str(runs), "--executor", "slurm")
    assert "nothing to submit" in last.stdout


# The runs below are 100,000 steps long and never end here: each is stopped (requeued,
# cancelled) once it has checkpointed, and cancelled at the end of its test, so no stop races
# a run's end however slow the machine.
NEVER_ENDING = 100_000 * 1024


def never_ending_run(plan_dir) -> tuple[Path, Path]:
    """A planned single-run grid with Slurm settings: (runs directory, the run's folder)."""
    runs = plan_dir(params="[6e4]", tokens=NEVER_ENDING)
    with_slurm_settings(runs)
    (run_id,) = run_ids(runs)
    return runs, runs / "runs" / run_id


@pytest.fixture
def cancel_jobs_at_the_end(slurm_cluster):
    """Whatever a test leaves in the queue is cancelled when it ends (its runs never end)."""
    yield
    subprocess.run(["scancel", "--user", str(os.getuid())], check=False)
    wait_for(lambda: not queue(), timeout=120, what="the queue to empty")


def resumed_at(run: Path) -> list[int]:
    """The steps each resume of the run started from, from its train.log."""
    try:
        text = (run / "train.log").read_text()
    except FileNotFoundError:
        return []
    return [int(step) for step in re.findall(r"resumed from the checkpoint at step (\d+)", text)]


def cancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], check=True)
    wait_for(lambda: job_id not in queue(), what=f"job {job_id} to leave the queue")


def reference_losses(run: Path, tmp_path: Path, step: int) -> dict[int, dict]:
    """The run's config trained in one go (no Slurm, never stopped) until ``step`` is logged,
    then stopped: its metrics lines by step."""
    out = tmp_path / "reference"
    train_until_step(run / "config.json", out, step)
    return {line["step"]: line for line in logged(out)}


@pytest.mark.parametrize(
    "stop",
    [
        ["scontrol", "requeue"],  # what preemption with PreemptMode=REQUEUE does too
        ["scancel", "--signal=USR2"],  # the warning before a time limit: submitit requeues
    ],
    ids=["scontrol-requeue", "usr2-before-time-limit"],
)
def test_a_requeued_job_resumes_from_its_checkpoint_with_the_uninterrupted_losses(
    slurm_cluster, cancel_jobs_at_the_end, plan_dir, tmp_path, stop
):
    runs, run = never_ending_run(plan_dir)
    submitted = scaling("launch", str(runs), "--executor", "slurm")
    assert submitted.returncode == 0, submitted.stderr
    job_id = slurm_job(runs, run.name)["job_id"]
    wait_for(lambda: checkpoint_step(run) >= 10, what="a checkpoint at step 10")
    subprocess.run([*stop, job_id], check=True)
    wait_for(lambda: resumed_at(run), what="the requeued job to resume")
    (start,) = resumed_at(run)
    assert start >= 10  # from the checkpoint, not from the start
    wait_for(
        lambda: max((x["step"] for x in logged(run)), default=0) >= start + 20,
        what="20 steps after the resume",
    )
    assert states(runs)[run.name] == "running"
    assert slurm_job(runs, run.name)["state"] == "submitted"  # requeued, never cancelled
    cancel(job_id)
    # every step, before the requeue and after it, as in a run that was never stopped
    got = {line["step"]: line for line in logged(run)}
    expected = reference_losses(run, tmp_path, max(got))
    assert sorted(got) == sorted(step for step in expected if step <= max(got))
    for step, line in got.items():
        for key in ("train_loss", "eval_loss"):
            if key in line:
                assert line[key] == pytest.approx(expected[step][key], rel=1e-5), (key, step)


def test_scancel_shows_in_status_and_launching_again_resumes(
    slurm_cluster, cancel_jobs_at_the_end, plan_dir
):
    runs, run = never_ending_run(plan_dir)
    assert scaling("launch", str(runs), "--executor", "slurm").returncode == 0
    job_id = slurm_job(runs, run.name)["job_id"]
    wait_for(lambda: checkpoint_step(run) >= 10, what="a checkpoint at step 10")
    subprocess.run(["scancel", job_id], check=True)
    wait_for(lambda: slurm_job(runs, run.name)["state"] == "cancelled", what="the cancel recorded")
    # one look at the queue per poll: the job may leave it between two looks
    wait_for(lambda: queue().get(job_id) not in ("RUNNING", "COMPLETING"))
    assert states(runs)[run.name] == "cancelled"
    table = scaling("status", str(runs))
    assert "cancelled" in table.stdout
    stopped_at = checkpoint_step(run)

    again = scaling("launch", str(runs), "--executor", "slurm")
    assert "submitted 1 run(s)" in again.stdout, again.stdout + again.stderr
    wait_for(lambda: resumed_at(run), what="the relaunched run to resume")
    assert resumed_at(run) == [stopped_at]
    wait_for(lambda: states(runs)[run.name] == "running", what="the run shown running again")
