"""Loss curves with their schedules (fitting.curves): tables, runs' schedules, the schedules
`scaling predict --schedule` reads, and resampling by curves."""

import json

import numpy as np
import pandas as pd
import pytest

from scaling.config import RunConfig, TrainConfig
from scaling.fitting.curves import Curve, LrCurves, curves_from_table, schedule_from
from scaling.fitting.errors import FitError
from scaling.schedules import lr_at


def table(steps=50, lr=1e-3):
    loss = np.full(steps, np.nan)
    loss[10::10] = 3.0
    return pd.DataFrame({"run": "a", "step": np.arange(steps), "lr": lr, "loss": loss})


def test_a_table_gives_every_steps_lr_and_the_logged_losses():
    curves = curves_from_table(table(), "t.csv")
    (curve,) = curves.curves
    assert len(curve.lr) == 50 and list(curve.steps) == [10, 20, 30, 40]
    assert len(curves) == 4 and curves.units == ("curves", "steps")


def test_sparse_rows_are_joined_piecewise_linearly_in_lr():
    rows = pd.DataFrame(
        {"run": "a", "step": [0, 10, 20], "lr": [0.0, 1e-3, 1e-3], "loss": [np.nan, 3.0, 2.9]}
    )
    (curve,) = curves_from_table(rows).curves
    assert np.allclose(curve.lr[:11], np.linspace(0, 1e-3, 11)) and curve.lr[20] == 1e-3


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda f: f.drop(columns="lr"), "t.csv: no 'lr' column"),
        (lambda f: f.assign(lr=-1e-3), "field 'lr' is -0.001 at step 0"),
        (lambda f: f.iloc[5:], "field 'step' must be whole, distinct and start at 0"),
        (lambda f: f.assign(loss=np.nan), "no loss logged"),
        (lambda f: f.assign(loss=-1.0), "field 'loss' must be positive"),
    ],
)
def test_a_bad_table_is_one_line_naming_file_and_field(change, says):
    with pytest.raises(FitError, match=says.replace("(", r"\(")):
        curves_from_table(change(table()), "t.csv")


def test_the_trainers_words_give_the_trainers_schedule():
    lr = schedule_from("wsd:steps=200,lr=3e-3,warmup=10,cooldown=0.3,shape=linear")
    cfg = TrainConfig(
        schedule="wsd", lr=3e-3, warmup_steps=10, cooldown_fraction=0.3, cooldown_shape="linear"
    )
    assert np.allclose(lr, [lr_at(cfg, s, 200) for s in range(200)])
    cosine = schedule_from("cosine:steps=100,lr=1e-3,warmup=5,min_lr=0.1")
    assert len(cosine) == 100 and cosine[5] == pytest.approx(1e-3) and cosine[-1] > 1e-4


def test_a_schedule_from_a_csv_and_from_a_runs_config(tmp_path):
    path = tmp_path / "s.csv"
    pd.DataFrame({"step": [0, 4, 9], "lr": [0.0, 4e-3, 4e-3]}).to_csv(path, index=False)
    assert np.allclose(schedule_from(str(path))[:5], [0, 1e-3, 2e-3, 3e-3, 4e-3])
    config = RunConfig.model_validate(
        {"model": {"d_model": 16, "n_layers": 1, "n_heads": 2}, "train": {"tokens": 2**16}}
    )
    (tmp_path / "config.json").write_text(json.dumps(config.model_dump(mode="json")))
    lr = schedule_from(str(tmp_path / "config.json"))
    assert len(lr) == config.train.tokens // config.train.batch_tokens


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("wsd:steps=100,lr=-1", "lr=-1 must be > 0"),
        ("wsd:steps=100", "no lr="),
        ("cosine:steps=10,lr=1e-3,bogus=1", "KEY one of steps, lr"),
        ("wsd:steps=10,lr=1e-3,cooldown=0", r"cooldown=0 must be in \(0, 1\]"),
        ("nothing.csv", "no such file"),
    ],
)
def test_a_bad_schedule_is_one_line_naming_the_field(text, says):
    with pytest.raises(FitError, match=says):
        schedule_from(text)


def test_a_schedule_csv_with_a_negative_lr_is_refused(tmp_path):
    path = tmp_path / "s.csv"
    pd.DataFrame({"step": [0, 1], "lr": [1e-3, -1e-3]}).to_csv(path, index=False)
    with pytest.raises(FitError, match="s.csv: field 'lr' is -0.001 at step 1"):
        schedule_from(str(path))


def test_resampling_draws_whole_curves():
    curves = LrCurves([Curve(n, np.ones(5), np.array([1, 2]), np.array([3.0, 2.0])) for n in "abc"])
    drawn = curves.resample("curves", np.random.default_rng(0))
    assert len(drawn.curves) == 3 and {c.name for c in drawn.curves} <= {"a", "b", "c"}
    with pytest.raises(FitError, match="resampled by curves"):
        curves.resample("points", np.random.default_rng(0))
