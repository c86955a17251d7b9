"""`scaling launch --dry-run`: what would run, and nothing started; flags an executor does not
use are refused."""

import json
import os
import subprocess
import sys

import pytest

from scaling.launching.dry_run import local_dry_run
from scaling.launching.local import LaunchOptions

from .conftest import run_ids


def scaling(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scaling", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_the_local_dry_run_lists_what_would_run_and_starts_nothing(plan_dir):
    runs = plan_dir()
    before = sorted(str(p) for p in runs.rglob("*"))
    shown = scaling(
        "launch", str(runs), "--dry-run", "--max-parallel", "2", "--order", "large-first"
    )
    assert shown.returncode == 0, shown.stderr
    assert "3 of 3 selected run(s) would train here, 2 at a time" in shown.stdout
    assert "nothing was started or claimed" in shown.stdout
    as_json = json.loads(
        scaling("launch", str(runs), "--dry-run", "--json", "--order", "large-first").stdout
    )
    params = [row["params"] for row in as_json["runs"]]
    assert params == sorted(params, reverse=True) and len(params) == 3
    assert {row["action"] for row in as_json["runs"]} == {"train"}
    assert as_json["estimated_wall_s"] == pytest.approx(sum(r["wall_s"] for r in as_json["runs"]))
    assert sorted(str(p) for p in runs.rglob("*")) == before  # no claim, no log, no result


def test_the_dry_run_skips_what_is_done_and_slots_runs_as_the_executor_would(plan_dir):
    runs = plan_dir()
    ids = run_ids(runs)
    (runs / "runs" / ids[0] / "result.json").write_text(
        json.dumps({"run_id": ids[0], "status": "done"})
    )
    frame = local_dry_run(runs, LaunchOptions(max_parallel=2)).set_index("run_id")
    assert frame.loc[ids[0], "action"] == "skip"
    to_train = frame[frame["action"] == "train"]
    assert len(to_train) == 2 and (to_train["start_s"] == 0).all()  # two slots, both free


@pytest.mark.parametrize(
    "args, message",
    [
        (["--slurm", "partition=gpu"], "--slurm: not used by --executor local"),
        (["--executor", "slurm", "--max-parallel", "2"], "--max-parallel: not used by --executor"),
        (["--executor", "slurm", "--retries", "1"], "--retries: not used by --executor slurm"),
        (["--executor", "slurm", "--gpus-per-run", "2"], "--gpus-per-run: not used"),
        (["--json"], "--json: with --dry-run only"),
    ],
)
@pytest.mark.slow
def test_a_flag_the_executor_does_not_use_is_refused(plan_dir, args, message):
    runs = plan_dir()
    before = sorted(str(p) for p in runs.rglob("*"))
    refused = (
        scaling("launch", str(runs), "--dry-run", *args)
        if args != ["--json"]
        else scaling("launch", str(runs), *args)
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert sorted(str(p) for p in runs.rglob("*")) == before
