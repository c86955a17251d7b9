"""Which runs of a sweep cannot win: the final loss of every run of one model forecast from
the start of its loss curve, and the rule that stops a run whose forecast lies wholly above
the best one's.

The forecast is the learning-rate annealing law (Tissue et al. 2024; ``lr_annealing``)
fitted across the runs compared at once, its shape shared as a loss-curve law's is by the
curves of one model, with one change: each run has its own floor L0_i,

    L_i(s) = L0_i + A·S1_i(s)^(−α) − C·S2_i(s),

A, α and C shared. The runs of an lr sweep differ in the very thing the law takes as input:
one law for all would forecast a lower loss for every larger sum of learning rates (S1), so
the largest lr would always win; the floor of its own lets a run's lr cost it (too high an lr
trains to a worse loss), while the shared shape carries what the runs seen for longer teach
to the rest. Fitted each on its own curve (every parameter its own), a quarter of a cosine run
did not identify C: forecasts went negative, with intervals to match (BENCHMARKS.md).

Intervals: a moving-block bootstrap of every run's logged steps (``LrCurves.resample("steps")``),
each resample refitted from the fit's own parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scaling.fitting.base import blas_threads
from scaling.fitting.curvelaws import s1_at
from scaling.fitting.curves import Curve, LrCurves
from scaling.fitting.errors import FitError
from scaling.fitting.lr_annealing import s2_at

MIN_LOGGED = 8  # logged losses a run needs before it is forecast
DECAY = 0.999  # λ of S2's momentum, as the lr-annealing law's default
HUBER = 0.01  # on log residuals: a step's loss an outlier past 1%


@dataclass
class Forecast:
    """One run's final loss as forecast at ``step`` (its ``steps`` in all): ``now`` is the
    mean of its last 10 logged losses, ``loss`` the law's value at its last step, ``low`` and
    ``high`` the bootstrap interval."""

    run: str
    step: int
    steps: int
    now: float
    loss: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _terms(curves: list[Curve]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(np.log(c.loss), s1_at(c.lr, c.steps), s2_at(c.lr, c.steps, DECAY)) for c in curves]


def _unpack(theta: np.ndarray, n: int) -> tuple[np.ndarray, float, float, float]:
    """(L0 per run, A, α, C) from the fitted logarithms."""
    return np.exp(theta[:n]), *np.exp(theta[n:])


def _fit(curves: list[Curve], starts: list[np.ndarray]) -> np.ndarray:
    """The logarithms of (L0_1..L0_n, A, α, C) of least Huber loss on log residuals."""
    from scipy.optimize import least_squares

    n, terms = len(curves), _terms(curves)

    def residuals(theta: np.ndarray) -> np.ndarray:
        floors, a, alpha, c = _unpack(theta, n)
        out = []
        for floor, (log_loss, s1, s2) in zip(floors, terms, strict=True):
            predicted = np.maximum(floor + a * s1**-alpha - c * s2, 1e-6)
            out.append(log_loss - np.log(predicted))
        return np.concatenate(out)

    best = None
    with np.errstate(over="ignore", invalid="ignore"):
        for start in starts:
            found = least_squares(residuals, start, loss="huber", f_scale=HUBER)
            if best is None or found.cost < best.cost:
                best = found
    return best.x


def _final(curves: list[Curve], theta: np.ndarray) -> np.ndarray:
    floors, a, alpha, c = _unpack(theta, len(curves))
    last = [np.array([len(curve.lr) - 1]) for curve in curves]
    return np.array(
        [
            floor + a * s1_at(curve.lr, end)[0] ** -alpha - c * s2_at(curve.lr, end, DECAY)[0]
            for floor, curve, end in zip(floors, curves, last, strict=True)
        ]
    )


def forecast_final_losses(
    curves: list[Curve], samples: int = 40, level: float = 0.8, seed: int = 0
) -> list[Forecast]:
    """Each curve's final loss (the lr of every step of its whole schedule is known, the
    losses logged so far given) with its interval, from one fit across all of them."""
    if not curves:
        return []
    short = [c.name for c in curves if len(c.steps) < MIN_LOGGED]
    if short:
        raise FitError(
            f"run {short[0]}: fewer than {MIN_LOGGED} logged losses; log every step "
            "(train.log_interval = 1) for the pruner's forecasts"
        )
    floors = [np.log(0.8 * c.loss.min()) for c in curves]
    starts = [
        np.array([*floors, 0.0, np.log(alpha), np.log(c)])
        for alpha in (0.2, 0.5, 1.0)
        for c in (0.1, 1.0, 10.0)
    ]
    with blas_threads():
        theta = _fit(curves, starts)
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(samples):
            resample = LrCurves(curves).resample("steps", rng).curves
            draws.append(_final(curves, _fit(resample, [theta])))
    point = _final(curves, theta)
    tail = 100 * (1 - level) / 2
    low, high = (
        np.percentile(np.array(draws), [tail, 100 - tail], axis=0)
        if draws
        else (
            point,
            point,
        )
    )
    return [
        Forecast(
            run=curve.name,
            step=int(curve.steps[-1]) + 1,
            steps=len(curve.lr),
            now=float(np.mean(curve.loss[-10:])),
            loss=float(point[i]),
            low=float(min(low[i], point[i])),
            high=float(max(high[i], point[i])),
        )
        for i, curve in enumerate(curves)
    ]


def forecast_group(
    families: list[list[Curve]],
    competing: set[str] | None = None,
    samples: int = 40,
    level: float = 0.8,
    seed: int = 0,
) -> tuple[list[Forecast], dict[str, str]]:
    """The forecasts of the runs that compete (one model, one budget), each family (the runs
    that share a number of steps, so that one shape fits them: the learning rates of one
    batch size) fitted on its own, and the runs to prune among all of them: their final
    losses are all of one model at one budget, so any run may prune any other. A family may
    hold runs that no longer compete (pruned at an earlier rung, their curves cut there):
    they still teach the shape, but are neither forecast nor pruned again. ``competing``:
    the names of the runs that do (default: all)."""
    forecasts = [
        forecast
        for family in families
        for forecast in forecast_final_losses(family, samples, level, seed)
        if competing is None or forecast.run in competing
    ]
    return forecasts, runs_to_prune(forecasts)


def runs_to_prune(forecasts: list[Forecast]) -> dict[str, str]:
    """The runs whose whole interval lies above the best run's interval, each with the reason
    in one line; every run whose interval reaches the best one's is kept. The best run is the
    one whose interval ends lowest: the run surest to reach a low loss (a run whose forecast
    cannot be told from nothing, its interval reaching 0 or below, is never the best)."""
    sure = [f for f in forecasts if f.low > 0 and np.isfinite(f.high)]
    if len(forecasts) < 2 or not sure:
        return {}
    best = min(sure, key=lambda f: (f.high, f.loss))
    return {
        f.run: (
            f"forecast final loss {f.loss:.4f} [{f.low:.4f}, {f.high:.4f}] at step {f.step} of "
            f"{f.steps} lies above run {best.run}'s {best.loss:.4f} [{best.low:.4f}, "
            f"{best.high:.4f}]"
        )
        for f in forecasts
        if f is not best and f.low > best.high
    }
