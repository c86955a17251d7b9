"""Which runs of a sweep cannot win: each run's final loss forecast from the start of its
loss curve, and the rule that stops a run whose forecast lies wholly above the best one's.

A run's forecast is a loss-curve law (``lr-annealing`` by default, or ``multi-power``) fitted
on the steps it has logged so far, with its whole learning-rate schedule known from its
config, and evaluated at its last step; the interval comes from a moving-block bootstrap of
those logged steps (``LrCurves.resample(unit="steps")``).

Each run gets a law of its own, not one law shared across the runs compared: the runs of an
lr sweep differ in the very thing the laws take as input, and a law shared by them predicts a
lower loss for every larger sum of learning rates (S1), so it would always rank the largest lr
first. Fitted run by run, the law only has to carry each curve to the end of its own schedule
(the cooldown still to come, which is what a comparison of raw losses mid-run misses).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scaling.fitting.curves import Curve, LrCurves
from scaling.fitting.errors import FitError
from scaling.fitting.lr_annealing import LRAnnealingLaw
from scaling.fitting.multipower import MultiPowerLaw

FORECAST_LAWS = ("lr-annealing", "multi-power")


@dataclass
class Forecast:
    """One run's final loss as forecast at ``step`` (its ``steps`` in all): ``now`` is the
    mean of its last few logged losses, ``loss`` the law's value at the last step, ``low`` and
    ``high`` its interval (the law's own, from the bootstrap)."""

    run: str
    step: int
    steps: int
    now: float
    loss: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def forecast_final_loss(
    curve: Curve,
    law: str = "lr-annealing",
    samples: int = 40,
    level: float = 0.9,
    seed: int = 0,
) -> Forecast:
    """``curve``: the lr of every step of the run's whole schedule, the losses logged so far.
    Raises FitError when the law cannot be fitted on them (too few logged steps)."""
    if law not in FORECAST_LAWS:
        raise FitError(f"one of {', '.join(FORECAST_LAWS)}", param="law", value=law)
    if len(curve.steps) < 8:
        raise FitError(
            f"run {curve.name}: {len(curve.steps)} logged losses by step "
            f"{int(curve.steps[-1]) + 1 if len(curve.steps) else 0}; a forecast needs 8"
        )
    kind = LRAnnealingLaw if law == "lr-annealing" else MultiPowerLaw
    estimator = kind(bootstrap_samples=samples, bootstrap_unit="steps", level=level, seed=seed)
    estimator.fit(LrCurves([curve], source=f"run {curve.name}"))
    last = len(curve.lr) - 1
    found = estimator.predict_schedule(curve.lr)
    loss = float(found["loss"][last])
    low, high = loss, loss
    if "low" in found:  # no interval where under half the resamples could be fitted
        low, high = float(found["low"][last]), float(found["high"][last])
    return Forecast(
        run=curve.name,
        step=int(curve.steps[-1]) + 1,
        steps=len(curve.lr),
        now=float(np.mean(curve.loss[-5:])),
        loss=loss,
        low=min(low, loss),
        high=max(high, loss),
    )


def runs_to_prune(forecasts: list[Forecast]) -> dict[str, str]:
    """The runs whose whole interval lies above the best run's interval, each with the reason
    in one line; every run whose interval reaches the best one's is kept. The best run is the
    one whose interval ends lowest: the run surest to reach a low loss. (The least point
    forecast would do as well where every interval is tight, but a run seen too briefly can
    forecast far below the rest with an interval to match, and nothing would be pruned.)"""
    if len(forecasts) < 2:
        return {}
    best = min(forecasts, key=lambda f: (f.high, f.loss))
    return {
        f.run: (
            f"forecast final loss {f.loss:.4f} [{f.low:.4f}, {f.high:.4f}] at step {f.step} of "
            f"{f.steps} lies above run {best.run}'s {best.loss:.4f} [{best.low:.4f}, "
            f"{best.high:.4f}]"
        )
        for f in forecasts
        if f is not best and f.low > best.high
    }
