"""Points without training: the end of a WSD cooldown branch predicted by a loss-curve law,
a point the Chinchilla laws can use, marked predicted with its interval, and never mixed
silently with measured points (refused without --include-predicted; counted when included)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.config import RunConfig, TrainConfig, run_id_of
from scaling.fitting import LRAnnealingLaw, ParametricLaw, prepare_points
from scaling.fitting.api import fit_curve_law, predict_branches
from scaling.fitting.errors import FitError
from scaling.fitting.predicted import branch_schedule, predicted_points
from scaling.schedules import cooldown_factor, lr_schedule

from ..conftest import scaling
from .conftest import isoflop_points

runner = CliRunner()
TRUTH = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.3}
STEPS, BATCH = 1500, 256


def write_runs(root, noise=3e-4, eval_factor=1.0):
    """A runs directory of one model, as the trainer writes it: three runs (WSD, constant,
    cosine) whose train losses are drawn from the lr-annealing law ``TRUTH``, each ending with
    an eval loss ``eval_factor`` times its last train loss."""
    law = LRAnnealingLaw.from_params(TRUTH)
    rng = np.random.default_rng(0)
    plan = []
    for schedule in ("wsd", "constant", "cosine"):
        train = TrainConfig(
            schedule=schedule,
            lr=3e-4,
            warmup_steps=100,
            seq_len=32,
            batch_tokens=BATCH,
            tokens=STEPS * BATCH,
            cooldown_fraction=0.2,
        )
        config = RunConfig(train=train)
        run_id = run_id_of(config)
        config = config.model_copy(update={"run_id": run_id})
        run = root / "runs" / run_id
        run.mkdir(parents=True)
        (run / "config.json").write_text(config.model_dump_json())
        loss = law.curve(np.array(lr_schedule(train, STEPS))) * np.exp(rng.normal(0, noise, STEPS))
        lines = [
            {"step": s + 1, "tokens": (s + 1) * BATCH, "flops": 6e6 * (s + 1) * BATCH,
             "train_loss": float(loss[s])}
            for s in range(150, STEPS, 10)
        ]  # fmt: skip
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        result = {
            "run_id": run_id,
            "status": "done",
            "final_eval_loss": float(loss[-1]) * eval_factor,
            "final_train_loss": float(loss[-1]),
            "tokens": STEPS * BATCH,
            "flops": 6e6 * STEPS * BATCH,
            "wall_s": 1.0,
        }
        (run / "result.json").write_text(json.dumps(result))
        plan.append(
            {"run_id": run_id, "kind": "fixed", "budget": None, "params": 1_000_000,
             "tokens": STEPS * BATCH, "flops": 6e6 * STEPS * BATCH}
        )  # fmt: skip
    pd.DataFrame(plan).to_csv(root / "plan.csv", index=False)
    return root


def by_hand(fraction, cooldown=0.2):
    """A branch's lr, written out: warm-up to 3e-4 over 100 steps, constant until
    T = E − round(f·E), then 1 − sqrt down to 0 at E = round(fraction·STEPS)."""
    end = round(fraction * STEPS)
    length = round(cooldown * end)
    start = end - length
    lr = [3e-4 * (j + 1) / 100 if j < 100 else 3e-4 for j in range(end)]
    for j in range(start, end):
        lr[j] = 3e-4 * cooldown_factor((j - start) / length, "1-sqrt")
    return np.array(lr)


def test_a_branch_is_built_as_the_trainer_builds_one():
    train = TrainConfig(schedule="wsd", lr=3e-4, warmup_steps=100, cooldown_fraction=0.2)
    for fraction in (0.1, 0.2, 0.5, 1.0):
        assert np.allclose(branch_schedule(train, STEPS, fraction), by_hand(fraction))
    # the whole run (fraction 1) is the run's own schedule; another cooldown length is asked
    assert np.allclose(branch_schedule(train, STEPS, 1.0), lr_schedule(train, STEPS))
    assert np.allclose(branch_schedule(train, STEPS, 0.4, cooldown=0.1), by_hand(0.4, 0.1))
    # past the run's end: the run continued in its stable phase, then cooled down
    assert np.allclose(branch_schedule(train, STEPS, 1.5), by_hand(1.5))
    with pytest.raises(FitError, match="fractions=10.5"):
        branch_schedule(train, STEPS, 10.5)


def test_predicted_points_match_the_laws_own_loss_at_those_fractions(tmp_path):
    runs = write_runs(tmp_path / "RUNS")
    law = fit_curve_law("lr-annealing", runs, bootstrap_samples=4).law
    frame = predicted_points(law, runs, [0.1, 0.2, 0.5, 1.0])
    measured, predicted = frame[~frame["predicted"]], frame[frame["predicted"].astype(bool)]
    assert len(measured) == 3 and len(predicted) == 8  # the WSD and constant runs, 4 each
    truth = LRAnnealingLaw.from_params(TRUTH)
    for row in predicted.to_dict(orient="records"):
        lr = by_hand(row["fraction"])
        assert row["tokens"] == len(lr) * BATCH and row["flops"] == 6e6 * row["tokens"]
        assert row["loss"] == pytest.approx(truth.curve(lr)[-1], rel=1e-3)
        assert row["loss_low"] <= row["loss"] <= row["loss_high"]  # the bootstrap's interval
        assert row["kind"] == "branch" and row["branch"].startswith("predicted cooldown@")
    # the measured columns all travel: a predicted row has every column of a measured one
    assert set(measured) - {"loss_low", "loss_high"} <= set(predicted)
    # a cosine run has no stable phase: named, it is refused
    cosine = measured.loc[measured["run_id"] != predicted["run_id"].iloc[0], "run_id"]
    with pytest.raises(FitError, match="cosine schedule"):
        for run_id in cosine:
            predicted_points(law, runs, [0.5], run_ids=[run_id])


def test_predicted_points_are_put_on_their_runs_eval_scale(tmp_path):
    """Measured points are eval losses, the law predicts train losses: each predicted point is
    scaled by its run's measured eval / predicted train ratio, unless asked not to."""
    runs = write_runs(tmp_path / "RUNS", eval_factor=1.08)
    law = fit_curve_law("lr-annealing", runs, bootstrap_samples=4).law
    scaled = predicted_points(law, runs, [0.2, 0.5], measured=False)
    plain = predicted_points(law, runs, [0.2, 0.5], measured=False, eval_scale=False)
    truth = LRAnnealingLaw.from_params(TRUTH)
    pairs = zip(scaled.to_dict(orient="records"), plain.to_dict(orient="records"), strict=True)
    for row, own in pairs:
        expected = truth.curve(by_hand(row["fraction"]))[-1]
        assert row["eval_ratio"] == pytest.approx(1.08, rel=1e-3)
        assert row["loss"] == pytest.approx(1.08 * expected, rel=1e-3)
        assert row["loss_low"] == pytest.approx(1.08 * own["loss_low"], rel=1e-3)
        assert own["loss"] == pytest.approx(expected, rel=1e-3) and own["eval_ratio"] is None


def test_predicted_points_are_refused_unless_included_and_then_counted():
    frame = isoflop_points(noise=0.0).assign(predicted=False)
    frame.loc[frame.index[:3], "predicted"] = True
    with pytest.raises(FitError, match="3 of its .* points are predicted"):
        prepare_points(frame, source="points.csv")
    points = prepare_points(frame, source="points.csv", include_predicted=True)
    assert points.predicted == 3
    law = ParametricLaw().fit(points)
    assert law.details_["predicted_points"] == 3
    assert ParametricLaw.from_json(law.to_json()).details_["predicted_points"] == 3
    # measured points alone: nothing recorded
    measured = ParametricLaw().fit(prepare_points(frame[~frame["predicted"]]))
    assert "predicted_points" not in measured.details_


def test_a_table_with_predicted_points_is_refused_in_a_fresh_process(tmp_path):
    points = tmp_path / "points.csv"
    frame = isoflop_points(noise=0.0).assign(predicted=False)
    frame.loc[frame.index[:2], "predicted"] = True
    frame.to_csv(points, index=False)
    refused = scaling("fit", points, "--law", "parametric", env=dict(os.environ), check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "2 of its 63 points are predicted" in refused.stderr


@pytest.mark.slow
def test_the_join_through_the_cli_in_fresh_processes(tmp_path):
    """fit a curve law on a runs directory, predict its branch points into a CSV, fit the
    parametric law on them: refused without --include-predicted (one line, exit 2), and
    with it the fit file and the table say how many points were predicted."""
    env = dict(os.environ)
    runs = write_runs(tmp_path / "RUNS")
    scaling("fit", runs, "--law", "lr-annealing", env=env)
    curve = runs / "fits" / "lr-annealing.json"
    points = tmp_path / "points.csv"
    done = scaling(
        "predict", "--fit", curve, "--branches", runs, "--fractions", "0.2,0.5", "--out", points,
        env=env,
    )  # fmt: skip
    assert "predicted points (4)" in done.stdout and "3 measured, 4 predicted" in done.stdout
    table = pd.read_csv(points)
    assert table["predicted"].sum() == 4 and (~table["predicted"]).sum() == 3
    # the parametric law needs several sizes: add measured points of others to the table
    others = isoflop_points(noise=0.0).assign(predicted=False)
    both = pd.concat([table, others], ignore_index=True)
    both.to_csv(points, index=False)
    refused = scaling("fit", points, "--law", "parametric", env=env, check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "4 of its" in refused.stderr
    assert "--include-predicted" in refused.stderr
    fit = tmp_path / "parametric.json"
    done = scaling(
        "fit", points, "--law", "parametric", "--include-predicted", "--out", fit, env=env
    )
    assert "4 of them predicted" in done.stdout
    assert json.loads(fit.read_text())["details"]["predicted_points"] == 4


def test_bad_branch_requests_are_one_line(tmp_path):
    runs = write_runs(tmp_path / "RUNS")
    parametric = tmp_path / "parametric.json"
    p = {"E": 1.7, "A": 400, "B": 400, "alpha": 0.3, "beta": 0.3}
    ParametricLaw.from_params(p).to_json(parametric)
    with pytest.raises(FitError, match="holds a parametric law"):
        predict_branches(parametric, runs, [0.2])
    stranger = tmp_path / "lra.json"
    LRAnnealingLaw.from_params(TRUTH).to_json(stranger)  # fitted on no run of RUNS
    with pytest.raises(FitError, match="none of them a finished run here"):
        predict_branches(stranger, runs, [0.2])
    both = ["predict", "--fit", str(stranger), "--branches", str(runs), "--fractions", "0.2"]
    done = runner.invoke(app, [*both, "--schedule", "wsd:steps=9,lr=1"])
    assert done.exit_code == 2 and "--branches predicts branch points alone" in done.output
    done = runner.invoke(app, [*both[:5], "--fractions", "0.2,x"])
    assert done.exit_code == 2 and "--fractions '0.2,x'" in done.output
