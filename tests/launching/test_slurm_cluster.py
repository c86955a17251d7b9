"""The Slurm executor against a real one-node Slurm cluster (scripts/slurm_cluster.sh):
one job array, exactly-once runs, a launcher started again while jobs wait, `scontrol
requeue` resuming from the checkpoint, `scancel` in `scaling status`.

CI installs Slurm and sets SCALING_SLURM_TESTS=1, which turns a cluster that cannot start into
a failure; elsewhere these tests skip when Slurm is not installed or we are not root."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaling.cli import app
from scaling.config import load_run_config
from scaling.training.trainer import train

from .conftest import SPEC, run_ids, runner

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("SCALING_SLURM_TESTS") == "1"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    missing = shutil.which("slurmctld") is None or shutil.which("munged") is None
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


def wait_for(condition, timeout: float = 300.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


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


LONG_TOKENS = 64 * 1024


def long_run(plan_dir) -> Path:
    runs = plan_dir(params="[6e4]", tokens=LONG_TOKENS)
    with_slurm_settings(runs)
    return runs


@pytest.fixture(scope="module")
def uninterrupted_loss(tmp_path_factory):
    """The final loss of long_run trained in one go, in this process."""
    folder = tmp_path_factory.mktemp("reference")
    spec = folder / "spec.toml"
    spec.write_text(SPEC.format(params="[6e4]", tokens=LONG_TOKENS, source="builtin:python-stdlib"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SCALING_CACHE", str(folder / "cache"))
        planned = runner.invoke(app, ["plan", str(spec), "--out", str(folder / "RUNS")])
        assert planned.exit_code == 0, planned.output
        (run_id,) = run_ids(folder / "RUNS")
        config = load_run_config(folder / "RUNS" / "runs" / run_id / "config.json")
        return train(config, folder / "reference", progress=False)["final_eval_loss"]


@pytest.mark.parametrize(
    "stop",
    [
        ["scontrol", "requeue"],  # what preemption with PreemptMode=REQUEUE does too
        ["scancel", "--signal=USR2"],  # the warning before a time limit: submitit requeues
    ],
    ids=["scontrol-requeue", "usr2-before-time-limit"],
)
def test_a_requeued_job_resumes_from_its_checkpoint_with_the_uninterrupted_loss(
    slurm_cluster, plan_dir, uninterrupted_loss, stop
):
    runs = long_run(plan_dir)
    (run_id,) = run_ids(runs)
    run = runs / "runs" / run_id
    submitted = scaling("launch", str(runs), "--executor", "slurm")
    assert submitted.returncode == 0, submitted.stderr
    job_id = slurm_job(runs, run_id)["job_id"]
    state_file = run / "checkpoint" / "state.json"
    wait_for(
        lambda: state_file.is_file() and json.loads(state_file.read_text())["step"] >= 10,
        what="a checkpoint at step 10",
    )
    subprocess.run([*stop, job_id], check=True)
    wait_for(lambda: job_id not in queue(), what="the requeued job to finish")
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "done"
    assert result["resumed_from_step"] >= 10
    assert result["final_eval_loss"] == pytest.approx(uninterrupted_loss, rel=1e-5)
    assert states(runs)[run_id] == "done"
    assert slurm_job(runs, run_id)["state"] == "submitted"  # requeued, never cancelled


def test_scancel_shows_in_status_and_launching_again_resumes(slurm_cluster, plan_dir):
    runs = long_run(plan_dir)
    (run_id,) = run_ids(runs)
    run = runs / "runs" / run_id
    assert scaling("launch", str(runs), "--executor", "slurm").returncode == 0
    job_id = slurm_job(runs, run_id)["job_id"]
    wait_for(lambda: (run / "metrics.jsonl").is_file(), what="training to start")
    subprocess.run(["scancel", job_id], check=True)
    wait_for(lambda: slurm_job(runs, run_id)["state"] == "cancelled", what="the cancel recorded")
    wait_for(lambda: job_id not in queue() or queue()[job_id] not in ("RUNNING", "COMPLETING"))
    assert states(runs)[run_id] == "cancelled"
    table = scaling("status", str(runs))
    assert "cancelled" in table.stdout

    again = scaling("launch", str(runs), "--executor", "slurm")
    assert "submitted 1 run(s)" in again.stdout, again.stdout + again.stderr
    wait_for(lambda: (run / "result.json").exists(), what="the resumed run's result")
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "done" and result["resumed_from_step"] > 0
    assert states(runs)[run_id] == "done"
