"""The runs directory checked where it is read: plan.csv, result.json, summary.json and
config.json edited by hand or damaged are one line naming file, row and field (exit 2)
wherever a user meets them, and a resume never drops logged lines."""

import json
import subprocess
import sys

import pytest

from scaling.config import RunConfig, run_id_of
from scaling.rundir import RunsDir

from .launching.conftest import plan_dir  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow  # every test runs the CLI in a process of its own


def scaling(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scaling", *args], capture_output=True, text=True, timeout=300
    )


def one_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def finished(plan_dir):  # noqa: F811
    """A planned grid of three runs whose results are written as the trainer writes them."""
    runs = plan_dir()
    directory = RunsDir(runs)
    for number, row in enumerate(directory.read_plan().itertuples()):
        directory.run(row.run_id).write_result(
            {
                "run_id": row.run_id,
                "status": "done",
                "final_eval_loss": 4.0 - 0.3 * number,
                "tokens": int(row.tokens),
                "flops": float(row.flops),
                "branches": [],
            }
        )
    return runs


def edit_plan(runs, edit) -> None:
    lines = (runs / "plan.csv").read_text().splitlines()
    (runs / "plan.csv").write_text("\n".join(edit(lines)) + "\n")


def test_a_run_listed_twice_in_plan_csv_is_refused(finished):
    edit_plan(finished, lambda lines: [*lines, lines[1]])  # status said "4/4 runs done" of 3
    for command in (["status"], ["fit"], ["launch", "--dry-run"]):
        one_line(scaling(command[0], str(finished), *command[1:]), "is listed 2 times (rows 2, 5)")


def test_an_empty_run_id_is_refused(finished):
    edit_plan(finished, lambda lines: [lines[0], "," + lines[1].split(",", 1)[1], *lines[2:]])
    for command in ("status", "launch", "fit"):
        one_line(scaling(command, str(finished)), "row 2: run_id is empty")


def test_a_non_numeric_cell_is_refused(finished):
    header = (finished / "plan.csv").read_text().splitlines()[0].split(",")
    column = header.index("params")

    def edit(lines):
        cells = lines[2].split(",")
        cells[column] = "many"
        return [*lines[:2], ",".join(cells), *lines[3:]]

    edit_plan(finished, edit)
    one_line(scaling("status", str(finished)), "row 3", "params 'many' is not a number")


def test_results_edited_by_hand_are_one_line(finished):
    first = sorted((finished / "runs").iterdir())[0]
    result = json.loads((first / "result.json").read_text())
    (first / "result.json").write_text(json.dumps({**result, "final_eval_loss": "low"}))
    one_line(scaling("status", str(finished)), "result.json: final_eval_loss")
    branch = {"tokens": 1000, "eval_loss": 3.0}  # no flops: fit crashed on KeyError 'flops'
    (first / "result.json").write_text(json.dumps({**result, "branches": [branch]}))
    one_line(scaling("fit", str(finished)), "result.json: branches[0].flops: Field required")


def test_a_malformed_summary_is_one_line_for_plot(finished, tmp_path):
    (finished / "summary.json").write_text(json.dumps({"budget": "big", "predicted_loss": 3}))
    one_line(
        scaling("plot", str(finished), "--out", str(tmp_path / "figures")),
        "summary.json: budget",
    )


def test_an_edited_config_is_not_launched_or_fitted(plan_dir, finished):  # noqa: F811
    """145,856 parameters trained where plan.csv said 10,320: the run id hashes the config,
    so the edit is found and the launcher refuses before it claims anything."""
    runs = finished
    run_dir = sorted((runs / "runs").iterdir())[0]
    config = json.loads((run_dir / "config.json").read_text())
    config["model"]["d_model"] *= 2
    (run_dir / "config.json").write_text(json.dumps(config))
    one_line(scaling("fit", str(runs)), "changed since it was planned", "plan again")
    (run_dir / "result.json").unlink()  # to be trained now
    before = sorted(str(p) for p in runs.rglob("*"))
    one_line(scaling("launch", str(runs)), f"changed since it was planned as run {run_dir.name}")
    assert sorted(str(p) for p in runs.rglob("*")) == before  # nothing claimed or started
    assert run_id_of(RunConfig.model_validate(config)) != run_dir.name
