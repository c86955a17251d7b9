"""`scaling fit --law multi-power|lr-annealing` and `scaling predict --schedule`: a table of
curves in, a fit file out, the loss along a schedule back; bad inputs are one line, exit 2;
and our own trainer's runs fitted and predicted, each stage a fresh process."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.config import TrainConfig
from scaling.fitting import LRAnnealingLaw, ParametricLaw
from scaling.fitting.curves import curves_from_runs
from scaling.schedules import lr_schedule

from ..conftest import scaling

runner = CliRunner()
TRUTH = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.3}


def write_curves(path, steps=1500):
    law = LRAnnealingLaw.from_params(TRUTH)
    rng = np.random.default_rng(0)
    frames = []
    for kind in ("constant", "cosine", "wsd"):
        lr = np.array(lr_schedule(TrainConfig(schedule=kind, lr=3e-4, warmup_steps=100), steps))
        loss = law.curve(lr) * np.exp(rng.normal(0, 3e-4, steps))
        loss[(np.arange(steps) % 20 != 0) | (np.arange(steps) < 150)] = np.nan
        frames.append(pd.DataFrame({"run": kind, "step": range(steps), "lr": lr, "loss": loss}))
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_fit_a_table_then_predict_a_schedule(tmp_path):
    csv = write_curves(tmp_path / "curves.csv")
    fit = tmp_path / "lra.json"
    done = runner.invoke(app, ["fit", str(csv), "--law", "lr-annealing", "--out", str(fit)])
    assert done.exit_code == 0, done.output
    assert json.loads(fit.read_text())["params"]["alpha"] == pytest.approx(0.5, rel=0.03)
    schedule = "wsd:steps=1500,lr=3e-4,warmup=100,cooldown=0.4,shape=linear"
    done = runner.invoke(app, ["predict", "--fit", str(fit), "--schedule", schedule, "--json"])
    assert done.exit_code == 0, done.output
    rows = json.loads(done.output)["predictions"]
    assert [r["step"] for r in rows] == list(range(1500))
    lr = np.array(
        lr_schedule(
            TrainConfig(
                schedule="wsd",
                lr=3e-4,
                warmup_steps=100,
                cooldown_fraction=0.4,
                cooldown_shape="linear",
            ),
            1500,
        )
    )
    truth = LRAnnealingLaw.from_params(TRUTH).curve(lr)
    assert np.mean(np.abs(np.array([r["loss"] for r in rows]) - truth) / truth) < 5e-4
    table = runner.invoke(app, ["predict", "--fit", str(fit), "--schedule", schedule])
    assert table.exit_code == 0 and "1499" in table.output and "lr-annealing" in table.output


def test_bad_inputs_are_one_line_and_exit_2(tmp_path):
    csv = write_curves(tmp_path / "curves.csv")
    no_lr = tmp_path / "no_lr.csv"
    pd.read_csv(csv).drop(columns="lr").to_csv(no_lr, index=False)
    done = runner.invoke(app, ["fit", str(no_lr), "--law", "multi-power"])
    assert done.exit_code == 2 and "no_lr.csv: no 'lr' column" in done.output
    assert len(done.output.strip().splitlines()) == 1

    parametric = tmp_path / "parametric.json"
    ParametricLaw.from_params({"E": 1.7, "A": 400, "B": 400, "alpha": 0.3, "beta": 0.3}).to_json(
        parametric
    )
    done = runner.invoke(app, ["predict", "--fit", str(parametric), "--schedule", "wsd:steps=9"])
    assert done.exit_code == 2 and "holds a parametric law" in done.output
    assert done.output.startswith("error: --schedule 'wsd:steps=9'")

    lra = tmp_path / "lra.json"
    LRAnnealingLaw.from_params(TRUTH).to_json(lra)
    done = runner.invoke(app, ["predict", "--fit", str(lra), "--schedule", "wsd:steps=9,lr=-1"])
    assert done.exit_code == 2 and "lr=-1 must be > 0" in done.output
    done = runner.invoke(app, ["predict", "--fit", str(lra), "--compute", "1e20"])
    assert done.exit_code == 2 and "--schedule" in done.output


SPEC = """
[sweep]
name = "curves"
min_steps = 5

[model]
head_dim = 8
d_model_multiple = 8

[data]
source = "builtin:python-stdlib"
max_bytes = 400_000
val_fraction = 0.05
tokenizer = "bytes"

[train]
seq_len = 32
batch_tokens = 256
micro_batch_size = 8
lr = 1e-2
warmup_steps = 10
cooldown_fraction = 0.3
eval_interval = 0
eval_windows = 4
log_interval = 2
checkpoint_interval = 10000

[[grid]]
kind = "grid"
axes = {{"train.schedule" = ["wsd", "cosine"]}}
params = [{params}]
tokens = [{tokens}]
"""


@pytest.mark.slow
def test_our_trainers_runs_fitted_and_predicted_in_fresh_processes(tmp_path):
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache")}
    spec = tmp_path / "curves.toml"
    spec.write_text(SPEC.format(params=20_000, tokens=256 * 200))
    runs = tmp_path / "RUNS"
    scaling("plan", spec, "--out", runs, env=env)
    scaling("launch", runs, "--no-progress", "--max-parallel", "1", env=env)
    fitted = json.loads(scaling("fit", runs, "--law", "multi-power", "--json", env=env).stdout)
    assert fitted["law"] == "multi-power" and len(fitted["details"]["curves"]) == 2
    fit = runs / "fits" / "multi-power.json"
    done = scaling(
        "predict", "--fit", fit, "--schedule", "wsd:steps=200,lr=1e-2,warmup=10,cooldown=0.3",
        "--json", env=env,
    )  # fmt: skip
    rows = json.loads(done.stdout)["predictions"]
    assert len(rows) == 200 and all(np.isfinite(r["loss"]) for r in rows)
    # the WSD run's own schedule: the prediction follows its logged (noisy, per-batch) losses
    run = next(p for p in (runs / "runs").iterdir() if "wsd" in (p / "config.json").read_text())
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {m["step"] - 1: m["train_loss"] for m in lines if "train_loss" in m}
    # every step's lr rebuilt from the run's config is the lr the trainer logged
    (curve,) = [c for c in curves_from_runs(runs).curves if c.name == run.name]
    assert all(curve.lr[m["step"] - 1] == m["lr"] for m in lines if "lr" in m)
    late = [s for s in logged if s >= 100]
    predicted = np.mean([rows[s]["loss"] for s in late])
    measured = np.mean([logged[s] for s in late])
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)
