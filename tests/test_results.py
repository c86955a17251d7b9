import json

import numpy as np
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


def _law_runs(root, branches=()):
    """A runs directory of IsoFLOP runs whose losses follow Chinchilla's law exactly; each run
    has a WSD cooldown branch at every fraction of ``branches`` (its loss from the law too)."""
    from tests.fitting.conftest import CHINCHILLA, chinchilla_loss, isoflop_points

    points = isoflop_points(budgets=[1e18, 1e19, 1e20], per_budget=7)
    points["run_id"] = [f"r{i:02d}" for i in range(len(points))]
    points["kind"] = "isoflop"
    root.mkdir(parents=True)
    points.drop(columns="loss").to_csv(root / "plan.csv", index=False)
    for row in points.itertuples():
        run = root / "runs" / row.run_id
        run.mkdir(parents=True)
        result = {
            "run_id": row.run_id,
            "status": "done",
            "final_eval_loss": row.loss,
            "tokens": row.tokens,
            "flops": row.flops,
            "branches": [
                {
                    "tokens": f * row.tokens,
                    "flops": f * row.flops,
                    "eval_loss": chinchilla_loss(CHINCHILLA, row.params, f * row.tokens),
                }
                for f in branches
            ],
        }
        (run / "result.json").write_text(json.dumps(result))
    return root


def test_wsd_branch_points_carry_their_own_compute_and_leave_isoflop_fits_unchanged(tmp_path):
    from scaling.fitting import fit_isoflop, fit_parametric, prepare_points

    plain = results.load(_law_runs(tmp_path / "plain"))
    branched = results.load(_law_runs(tmp_path / "branched", branches=(0.4, 0.7)))
    assert len(branched) == 3 * len(plain)
    branch = branched[branched["kind"] == "branch"]
    assert branch["budget"].isna().all()  # 0.4 and 0.7 of a budget: on no IsoFLOP profile
    assert (branch["flops"] < branch["run_id"].map(plain.set_index("run_id")["flops"])).all()
    iso_plain = fit_isoflop(prepare_points(plain))
    iso_branched = fit_isoflop(prepare_points(branched))
    for key, value in iso_plain.params_.items():
        assert iso_branched.params_[key] == pytest.approx(value, rel=1e-12), key
    # the laws that use every point take the branch points, each at its own compute
    law = fit_parametric(prepare_points(branched), keep=8)
    assert law.n_points_ == len(branched)
    assert law.params_["alpha"] == pytest.approx(0.34, rel=1e-3)


def test_a_branch_point_joins_the_planned_budget_its_compute_matches(tmp_path):
    branched = results.load(_law_runs(tmp_path / "RUNS", branches=(0.1,)))
    branch = branched[branched["kind"] == "branch"]
    parents = branched[branched["kind"] != "branch"].set_index("run_id")["budget"]
    joined = branch[branch["run_id"].map(parents) > 1e18]  # 0.1 of 1e19 and 1e20: planned budgets
    assert sorted(set(joined["budget"])) == [1e18, 1e19]
    assert results.branch_budget(1.05e18, [1e18, 1e19]) == 1e18
    assert np.isnan(results.branch_budget(1.5e18, [1e18, 1e19]))
    assert branch["budget"].isna().sum() == 7  # 0.1 of 1e18 joins no planned budget


def test_a_plan_written_by_hand_without_budgets_and_lines_without_flops_are_read(tmp_path):
    """plan.csv may have kind but no budget column (PlanRow allows it), and metrics lines may
    lack flops (MetricsLine allows it): the points and curves are read, budgets and FLOPs
    empty."""
    runs = make_runs(tmp_path / "RUNS")
    plan = pd.read_csv(runs / "plan.csv").drop(columns=["budget"])
    plan.to_csv(runs / "plan.csv", index=False)
    metrics = runs / "runs" / "r1" / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    metrics.write_text(
        "".join(
            json.dumps({k: x[k] for k in ("step", "tokens", "train_loss")}) + "\n" for x in lines
        )
    )
    table = results.load(runs)
    branch = table[table["branch"] != "final"]
    assert len(table) == 3 and branch["budget"].isna().all()
    curves = results.load_curves(runs)
    own = curves[curves["run_id"] == "r1"]
    assert len(own) == 5 and own["flops"].isna().all() and own["loss"].notna().all()
