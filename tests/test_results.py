import json

import pandas as pd
import pytest

from scaling import results
from scaling.config import ConfigError


def make_runs(root, n=3):
    """A runs directory as the trainer writes it: plan.csv, result.json, metrics.jsonl."""
    plan = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(n)],
            "kind": "isoflop",
            "budget": 1e15,
            "params": [1e6 * (i + 1) for i in range(n)],
            "tokens": [1e8 / (i + 1) for i in range(n)],
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    plan.to_csv(root / "plan.csv", index=False)
    for i, row in plan.iterrows():
        run = root / "runs" / row["run_id"]
        run.mkdir(parents=True)
        lines = [
            json.dumps(
                {
                    "step": s,
                    "tokens": s * 1e6,
                    "flops": 6 * row["params"] * s * 1e6,
                    "lr": 1e-3,
                    "train_loss": 5.0 - 0.1 * s,
                }
            )
            for s in range(1, 6)
        ]
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        if i < n - 1:  # the last run is still pending
            result = {
                "run_id": row["run_id"],
                "status": "done",
                "final_eval_loss": 3.0 + i,
                "final_train_loss": 2.9 + i,
                "tokens": row["tokens"],
                "flops": 1e15,
                "wall_s": 10.0,
            }
            if i == 0:
                result["branches"] = [{"tokens": 5e7, "flops": 5e14, "eval_loss": 3.5}]
            (run / "result.json").write_text(json.dumps(result))
    return root


def test_load_gives_one_row_per_run_and_branch(tmp_path):
    runs = make_runs(tmp_path / "RUNS")
    df = results.load(runs)
    assert df["run_id"].tolist() == ["r0", "r0", "r1"]
    assert df["branch"].tolist() == ["final", "cooldown@5e+07", "final"]
    assert df["loss"].tolist() == [3.0, 3.5, 4.0]
    assert df.loc[1, "tokens"] == 5e7 and df.loc[1, "params"] == 1e6
    with_pending = results.load(runs, include_pending=True)
    assert with_pending["status"].tolist()[-1] == "pending"


def test_load_curves(tmp_path):
    runs = make_runs(tmp_path / "RUNS")
    curves = results.load_curves(runs)
    assert len(curves) == 15 and set(curves) >= {"run_id", "params", "tokens", "flops", "loss"}


def test_corrupt_files_are_named(tmp_path):
    runs = make_runs(tmp_path / "RUNS")
    metrics = runs / "runs" / "r1" / "metrics.jsonl"
    # a truncated last line (a run killed mid-write) is skipped ...
    metrics.write_text(metrics.read_text() + '{"step": 6, "tok')
    assert len(results.load_curves(runs)) == 15
    # ... a corrupt line in the middle is an error naming file and line
    lines = metrics.read_text().splitlines()
    lines[2] = "garbage"
    metrics.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"r1/metrics.jsonl:3: not a JSON object"):
        results.load_curves(runs)
    (runs / "runs" / "r0" / "result.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"r0/result.json: not valid JSON"):
        results.load(runs)
    with pytest.raises(ConfigError, match="plan.csv: no such file"):
        results.load(tmp_path)
