"""The Slurm executor through submitit: the sbatch script, and a plan run by submitit's local
executor (the same job array code, with processes instead of Slurm jobs)."""

import json

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
