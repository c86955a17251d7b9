"""A run across two nodes, launched the way a cluster launches it, on this machine.

Without Slurm: the Slurm executor's own task (``SlurmRun``) in two processes, each with the
environment Slurm gives a task of a two-node job (node ranks 0 and 1, the first node's address
as main, here localhost), so each runs the `accelerate launch` command the executor generates:
one FSDP2 run on gloo across the two, a node lost (its processes killed) ending the run cleanly,
and the next launch resuming it. With Slurm: two slurmd on this host
(``NODES=2 scripts/slurm_cluster.sh start``), a ``nodes = 2`` run submitted by
``scaling launch --executor slurm``, requeued, and resumed. Every run compares its losses with
the same config trained in one process. Only loopback addresses; every wait is bounded.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import checkpoint_step, logged, spawn, train_until_step, wait_for
from .conftest import SPEC, run_ids, runner

REPO = Path(__file__).resolve().parents[2]
REQUIRED = os.environ.get("SCALING_SLURM_TESTS") == "1"

pytestmark = pytest.mark.slow

# A run that never ends here (stopped by the tests), sharded over the nodes, checkpointed every
# 10 steps; a node that stops answering is given up on after 60 s at the latest.
TWO_NODE_SPEC = SPEC.replace(
    "[train]\n", '[train]\nparallelism = "fsdp"\ncollective_timeout_s = 60\n'
).replace("log_interval = 5", "log_interval = 1")

DRIVER = """
import sys
from pathlib import Path
from scaling.launching.slurm import SlurmRun
print("TASK", SlurmRun(Path(sys.argv[1]), sys.argv[2], 120.0)(), flush=True)
"""


@pytest.fixture
def two_node_run(tmp_path, monkeypatch):
    """A planned single-run grid for two nodes: (runs directory, the run's folder)."""
    from scaling.cli import app

    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "spec.toml"
    spec.write_text(
        TWO_NODE_SPEC.format(params="[6e4]", tokens=100_000 * 1024, source="builtin:python-stdlib")
    )
    runs = tmp_path / "RUNS"
    planned = runner.invoke(app, ["plan", str(spec), "--out", str(runs)])
    assert planned.exit_code == 0, planned.output
    (run_id,) = run_ids(runs)
    return runs, runs / "runs" / run_id


def node_task(runs: Path, run_id: str, node: int) -> subprocess.Popen:
    """Node ``node``'s task of a two-node Slurm job, as srun starts it (the job's first node
    is localhost), in a process group of its own: killing the group is losing the node (its
    training process, started by the agent in a session of its own, dies with the agent)."""
    env = {
        **os.environ,
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "localhost,localhost",
        "SLURM_NODEID": str(node),
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(node),
        "SLURM_LOCALID": "0",
        "SLURM_CONF": "/nonexistent",  # scontrol, asked why the job stopped, answers at once
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    return spawn(
        [sys.executable, "-c", DRIVER, str(runs), run_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def resumed_at(run: Path) -> list[int]:
    """The steps each resume of the run started from, from its train.log."""
    try:
        text = (run / "train.log").read_text()
    except FileNotFoundError:
        return []
    return [int(step) for step in re.findall(r"resumed from the checkpoint at step (\d+)", text)]


def last_step(run: Path) -> int:
    return max((line["step"] for line in logged(run)), default=0)


def assert_losses_of_one_process(run: Path, tmp_path: Path) -> None:
    """Every logged step's loss equals that of the config trained in one process, never
    stopped (FSDP's sums in another order: to 1e-4)."""
    got = {line["step"]: line["train_loss"] for line in logged(run)}
    train_until_step(run / "config.json", tmp_path / "reference", max(got))
    expected = {line["step"]: line["train_loss"] for line in logged(tmp_path / "reference")}
    assert sorted(got) == list(range(1, max(got) + 1))
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], rel=1e-4), step


def test_two_node_agents_train_one_run_and_a_lost_node_ends_it_cleanly(two_node_run, tmp_path):
    runs, run = two_node_run
    nodes = [node_task(runs, run.name, node) for node in (0, 1)]
    wait_for(lambda: checkpoint_step(run) >= 10, what="a checkpoint written by both nodes")
    shards = sorted(p.name for p in (run / "checkpoint").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    os.killpg(nodes[1].pid, signal.SIGKILL)  # node 1 is lost

    # node 0 notices (a reset connection at once; the collective timeout, 60 s, at the latest)
    printed = nodes[0].communicate(timeout=240)[0]
    assert "TASK interrupted" in printed, printed[-3000:]
    assert not (run / "claim.json").exists()  # released
    assert not (run / "result.json").exists()  # not failed: resumable
    stopped = json.loads((run / "stopped.json").read_text())
    assert "a process of the run was lost" in stopped["reason"], stopped
    shown = subprocess.run(
        [sys.executable, "-m", "scaling", "status", str(runs), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    (row,) = json.loads(shown.stdout)
    assert row["state"] == "pending" and "lost" in row["error"], row

    # launching again resumes it from the checkpoint both nodes wrote
    at = checkpoint_step(run)
    nodes = [node_task(runs, run.name, node) for node in (0, 1)]
    wait_for(lambda: resumed_at(run) == [at], what="the relaunched run to resume")
    wait_for(lambda: last_step(run) >= at + 10, what="ten steps after the resume")
    for node in nodes:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=60)
    assert_losses_of_one_process(run, tmp_path)


# -- the same through Slurm, two slurmd on this machine ------------------------------------------


@pytest.fixture(scope="module")
def two_node_cluster(tmp_path_factory):
    missing = any(shutil.which(c) is None for c in ("slurmctld", "munged", "sbatch", "srun"))
    reason = "Slurm is not installed (scripts/slurm_cluster.sh install)" if missing else None
    if reason is None and os.geteuid() != 0:
        reason = "the cluster runs its daemons as root"
    if reason:
        if REQUIRED:
            pytest.fail(f"SCALING_SLURM_TESTS=1 but {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm2")
    script = REPO / "scripts" / "slurm_cluster.sh"
    started = subprocess.run(
        ["bash", str(script), "start", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "NODES": "2", "CPUS": "2"},
    )
    assert started.returncode == 0, started.stderr
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    yield folder
    subprocess.run(["scancel", "--user", str(os.getuid())], check=False)
    subprocess.run(
        ["bash", str(script), "stop", str(folder)], check=False, env={**os.environ, "NODES": "2"}
    )
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


def queue() -> dict[str, str]:
    listing = subprocess.run(
        ["squeue", "--noheader", "--array", "--format=%i %T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in listing.splitlines())


def test_a_two_node_slurm_job_is_requeued_and_resumes(two_node_cluster, two_node_run, tmp_path):
    runs, run = two_node_run
    sweep = runs / "sweep.toml"
    sweep.write_text(
        sweep.read_text() + "\n[launch.slurm]\nnodes = 2\ncpus_per_task = 1\ntime_min = 30\n"
    )
    submitted = subprocess.run(
        [sys.executable, "-m", "scaling", "launch", str(runs), "--executor", "slurm"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads((run / "slurm_job.json").read_text())["job_id"]
    try:
        wait_for(lambda: checkpoint_step(run) >= 10, what="a checkpoint at step 10")
        shards = sorted(p.name for p in (run / "checkpoint").glob("*.distcp"))
        assert shards == ["__0_0.distcp", "__1_0.distcp"]  # one process on each node
        subprocess.run(["scontrol", "requeue", job_id], check=True)
        wait_for(lambda: resumed_at(run), what="the requeued two-node job to resume")
        (start,) = resumed_at(run)
        assert start >= 10
        wait_for(lambda: last_step(run) >= start + 10, what="ten steps after the resume")
    finally:
        subprocess.run(["scancel", job_id], check=False)
        wait_for(lambda: job_id not in queue(), timeout=180, what="the job to leave the queue")
    assert_losses_of_one_process(run, tmp_path)
