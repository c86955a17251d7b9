"""The Slurm executor through submitit: the sbatch script, and a plan run by submitit's local
executor (the same job array code, with processes instead of Slurm jobs)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from scaling.cli import app
from scaling.launching.local import LaunchOptions
from scaling.launching.slurm import SlurmRun, launch_slurm

from .conftest import run_ids

runner = CliRunner()


@pytest.mark.slow
def test_submitit_local_executor_runs_a_plan_to_done(plan_dir):
    runs = plan_dir(params="[3e4, 6e4]")
    report = launch_slurm(runs, LaunchOptions(), overrides={"cluster": "local"}, wait=True)
    assert report.count(": done") == 2, report
    for run_id in run_ids(runs):
        run_dir = runs / "runs" / run_id
        assert json.loads((run_dir / "result.json").read_text())["status"] == "done"
        assert not (run_dir / "claim.json").exists()
    again = launch_slurm(runs, LaunchOptions(), overrides={"cluster": "local"}, wait=True)
    assert again.startswith("nothing to submit")


def test_dry_run_prints_the_sbatch_script(plan_dir, tmp_path):
    runs = plan_dir()
    sweep = (runs / "sweep.toml").read_text()
    (runs / "sweep.toml").write_text(
        sweep + '\n[launch.slurm]\npartition = "gpu"\n'
        'gpus_per_node = 8\n[launch.slurm.sbatch]\nqos = "high"\n'
    )
    result = runner.invoke(
        app,
        [
            "launch",
            str(runs),
            "--executor",
            "slurm",
            "--dry-run",
            "--slurm",
            "time_min=240",
            "--slurm",
            "nodes=2",
        ],
    )
    assert result.exit_code == 0, result.output
    for line in (
        "#SBATCH --array=0-2%3",
        "#SBATCH --partition=gpu",
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --time=240",
        "#SBATCH --qos=high",
    ):
        assert line in result.output, line
    bad = runner.invoke(
        app, ["launch", str(runs), "--executor", "slurm", "--dry-run", "--slurm", "queue=fast"]
    )
    assert bad.exit_code == 2 and "queue: unknown key" in bad.output


def _launch_slurm_without_slurm(runs, path: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scaling", "launch", str(runs), "--executor", "slurm", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": path},
    )


@pytest.mark.slow
def test_without_slurm_the_dry_run_prints_the_script_and_says_so(plan_dir, path_without_slurm):
    runs = plan_dir()
    before = sorted(str(p) for p in runs.rglob("*"))
    shown = _launch_slurm_without_slurm(runs, path_without_slurm, "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "# no Slurm found here (sbatch/srun not on PATH)" in shown.stdout
    assert "#SBATCH --array=0-2%3" in shown.stdout and "srun --unbuffered" in shown.stdout
    assert sorted(str(p) for p in runs.rglob("*")) == before  # nothing written


@pytest.mark.slow
def test_without_slurm_a_launch_is_refused_in_one_line(plan_dir, path_without_slurm):
    """submitit, given no cluster, falls back to its local executor and trains here in the
    background: --executor slurm means Slurm, so the launch is refused instead."""
    runs = plan_dir()
    before = sorted(str(p) for p in runs.rglob("*"))
    refused = _launch_slurm_without_slurm(runs, path_without_slurm)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: no Slurm here: sbatch/srun not on PATH; use --dry-run to see the script"
    ]
    assert refused.stdout == ""
    assert sorted(str(p) for p in runs.rglob("*")) == before  # nothing claimed or written


def _task_environment(monkeypatch, node: int, task: int) -> None:
    """What Slurm sets in the task of an array job on two nodes with four GPUs each."""
    for key, value in {
        "SUBMITIT_EXECUTOR": "slurm",  # as submitit's sbatch script exports it
        "SLURM_JOB_ID": str(812 + task),
        "SLURM_ARRAY_JOB_ID": "812",
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": str(node),
        "SLURM_JOB_NODELIST": "gpu[17-18]",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(node),
        "SLURM_LOCALID": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


def test_a_two_node_task_launches_accelerate_with_the_jobs_own_port(monkeypatch, tmp_path):
    """Each node's command: machine rank from SLURM_NODEID, the first node as main, a port
    from the job (the same on both nodes, another for the next task: a fixed 29500 made two
    tasks sharing a first node collide), and precision and compile that no accelerate config
    file or ACCELERATE_* variable can change."""
    commands = {}
    for node, task in [(0, 0), (1, 0), (0, 1)]:
        _task_environment(monkeypatch, node, task)
        commands[node, task] = SlurmRun(tmp_path, "abc123", 120.0)._command()

    def flag(command, name):
        return command[command.index(name) + 1]

    first, second, other_task = commands[0, 0], commands[1, 0], commands[0, 1]
    assert (flag(first, "--machine_rank"), flag(second, "--machine_rank")) == ("0", "1")
    assert flag(first, "--main_process_ip") == flag(second, "--main_process_ip") == "gpu17"
    assert (flag(first, "--num_machines"), flag(first, "--num_processes")) == ("2", "8")
    assert flag(first, "--main_process_port") == flag(second, "--main_process_port")
    assert flag(first, "--main_process_port") != flag(other_task, "--main_process_port")
    assert flag(first, "--mixed_precision") == flag(first, "--dynamo_backend") == "no"
