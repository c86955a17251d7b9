"""The loss-curve laws (fitting.curvelaws, .multipower, .lr_annealing): data drawn from each
law under constant, cosine and WSD schedules with noise give its parameters back and predict a
held-out schedule; the fit file; bootstrap by curves; questions of points refused."""

import json

import numpy as np
import pytest

from scaling.config import TrainConfig
from scaling.fitting import Law, LRAnnealingLaw, MultiPowerLaw
from scaling.fitting.curves import Curve, LrCurves
from scaling.fitting.errors import FitError
from scaling.schedules import lr_schedule

STEPS = 3000
MPL = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}
LRA = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.3}


def schedule(kind, **changed):
    cfg = TrainConfig(schedule=kind, lr=3e-4, warmup_steps=200, **changed)
    return np.array(lr_schedule(cfg, STEPS))


SCHEDULES = {
    "constant": schedule("constant"),
    "cosine": schedule("cosine"),
    "wsd": schedule("wsd", cooldown_fraction=0.2),
    "held-out": schedule("wsd", cooldown_fraction=0.4, cooldown_shape="linear"),
}


def drawn(truth, noise=3e-4, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(250, STEPS, 25)
    return {
        name: Curve(
            name, lr, steps, truth.curve(lr, steps) * np.exp(rng.normal(0, noise, len(steps)))
        )
        for name, lr in SCHEDULES.items()
    }


@pytest.mark.parametrize(
    ("law", "params", "recovered", "refine"),
    [
        (MultiPowerLaw, MPL, ("L0", "A", "alpha", "B"), {"refine": "lbfgs"}),
        (LRAnnealingLaw, LRA, ("L0", "A", "alpha", "C"), {}),
    ],
)
def test_a_fit_recovers_the_law_and_predicts_a_held_out_schedule(law, params, recovered, refine):
    truth = law.from_params(params)
    curves = drawn(truth)
    fitted = law(**refine).fit(LrCurves([curves[n] for n in ("constant", "cosine", "wsd")]))
    for name in recovered:
        assert fitted.params_[name] == pytest.approx(params[name], rel=0.03), name
    held = curves["held-out"]
    predicted, true = fitted.curve(held.lr, held.steps), truth.curve(held.lr, held.steps)
    assert np.mean(np.abs(predicted - true) / true) < 2e-4


def test_a_fit_file_round_trips_and_its_bootstrap_draws_curves(tmp_path):
    truth = LRAnnealingLaw.from_params(LRA)
    curves = drawn(truth)
    law = LRAnnealingLaw(bootstrap_samples=6).fit(LrCurves(list(curves.values())))
    assert law.bootstrap_unit == "curves" and len(law.samples_) >= 3
    path = tmp_path / "lra.json"
    law.to_json(path)
    back = Law.from_json(path)
    lr = SCHEDULES["held-out"]
    assert isinstance(back, LRAnnealingLaw) and np.allclose(back.curve(lr), law.curve(lr))
    predicted = back.predict(schedule=lr)
    low, high = np.array(predicted["intervals"]["loss"]).T
    assert (low <= np.array(predicted["loss"]) + 1e-9).all()
    assert (high >= np.array(predicted["loss"]) - 1e-9).all()
    assert json.loads(path.read_text())["answers"] == ["curve"]


def test_questions_of_points_are_refused_in_one_line():
    law = MultiPowerLaw.from_params(MPL)
    with pytest.raises(FitError, match="along a learning rate schedule"):
        law.predict(params=1e8, tokens=1e9)
    with pytest.raises(FitError, match="bootstrap_unit"):
        MultiPowerLaw(bootstrap_unit="points")
    with pytest.raises(FitError, match="refine"):
        MultiPowerLaw(refine="sgd")
