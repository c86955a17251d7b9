"""The Slurm executor through submitit: the sbatch script, and a plan run by submitit's local
executor (the same job array code, with processes instead of Slurm jobs)."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.launching.local import LaunchOptions
from scaling.launching.slurm import launch_slurm

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


def test_without_slurm_the_dry_run_prints_the_script_and_says_so(plan_dir, path_without_slurm):
    runs = plan_dir()
    before = sorted(str(p) for p in runs.rglob("*"))
    shown = _launch_slurm_without_slurm(runs, path_without_slurm, "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "# no Slurm found here (sbatch/srun not on PATH)" in shown.stdout
    assert "#SBATCH --array=0-2%3" in shown.stdout and "srun --unbuffered" in shown.stdout
    assert sorted(str(p) for p in runs.rglob("*")) == before  # nothing written


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
