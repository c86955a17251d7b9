"""The files between stages are typed (scaling.records) and checked where they are written as
well as where they are read: a writer's slip is one ConfigError naming the file, row or line
and the field, and leaves what was on disk as it was."""

import json

import pandas as pd
import pytest

from scaling.config import ConfigError
from scaling.records import PlanRow, plan_numbers
from scaling.rundir import RunDir, RunsDir

ROW = {"run_id": "r1", "grid": "iso", "kind": "isoflop", "budget": 1e15, "params": 1000,
       "tokens": 20_000, "flops": 1.2e8, "lr": 1e-3, "batch_tokens": 1024, "steps": 20}  # fmt: skip


def test_a_result_with_an_unknown_status_is_not_written(tmp_path):
    run = RunDir(tmp_path)
    run.write_result({"status": "done", "final_eval_loss": 3.0})
    with pytest.raises(ConfigError, match=r"result\.json.*status"):
        run.write_result({"status": "finished", "final_eval_loss": 2.0})
    assert run.read_result()["final_eval_loss"] == 3.0  # the earlier result stands


def test_a_bad_metrics_line_is_not_appended_and_a_bad_one_on_disk_names_its_line(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 1, "tokens": 1024, "train_loss": 5.0, "mfu": 0.3})
    with pytest.raises(ConfigError, match="step"):
        run.append_metrics({"step": -2, "tokens": 2048, "train_loss": 4.9})
    with pytest.raises(ConfigError, match="tokens"):
        run.append_metrics({"step": 2, "train_loss": 4.9})  # every line says its tokens
    assert [line["step"] for line in run.read_metrics()] == [1]
    assert run.read_metrics()[0]["mfu"] == 0.3  # what the trainer adds is kept
    with run.metrics_path.open("a") as handle:  # a hand edit
        handle.write(json.dumps({"step": "two", "tokens": 2048}) + "\n")
    with pytest.raises(ConfigError, match=r"metrics\.jsonl:2: step"):
        run.read_metrics()


def test_a_diverging_runs_last_line_may_hold_nan(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 3, "tokens": 3072, "train_loss": float("nan")})
    assert run.read_metrics()[0]["train_loss"] != run.read_metrics()[0]["train_loss"]


def test_a_plan_row_that_breaks_the_contract_is_not_written(tmp_path):
    runs = RunsDir(tmp_path)
    runs.write_plan(pd.DataFrame([ROW, {**ROW, "run_id": "r2", "budget": float("nan")}]))
    before = runs.plan_path.read_bytes()
    with pytest.raises(ConfigError, match=r"plan\.csv: row 3.*tokens"):
        runs.write_plan(pd.DataFrame([ROW, {**ROW, "run_id": "r2", "tokens": 0}]))
    assert runs.plan_path.read_bytes() == before
    assert runs.read_plan()["budget"].isna().tolist() == [False, True]  # fixed grids: empty


def test_what_read_plan_checks_comes_from_the_row_model():
    numbers = plan_numbers()
    assert numbers["tokens"] == (1, False) and numbers["budget"] == (0, True)
    assert set(numbers) <= set(PlanRow.model_fields)


def test_a_summary_without_its_prediction_is_not_written(tmp_path):
    runs = RunsDir(tmp_path)
    with pytest.raises(ConfigError, match="predicted_loss"):
        runs.write_summary({"budget": 1e16})
    assert not runs.summary_path.exists()
