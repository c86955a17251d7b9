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

C is fitted only once the curves have seen a tenth of the annealing their schedules will
have (``ANNEALING_SEEN``): before, a cosine's first quarter or a WSD's stable phase carries no
sign of it, and C would keep whatever value the fit started from. It is held at 0 then, the
forecast leaves the annealing still to come out, and a run is pruned only by a best run with
at least as much of it ahead (``runs_to_prune``).

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
# C is fitted only once some curve of the family has seen this share of the annealing area
# its schedule will have by its end; before (a cosine's first quarter, a WSD's stable phase)
# it is held at 0 and the rule asks more (``runs_to_prune``)
ANNEALING_SEEN = 0.1


@dataclass
class Forecast:
    """One run's final loss as forecast at ``step`` (its ``steps`` in all): ``now`` is the
    mean of its last 10 logged losses, ``loss`` the law's value at its last step, ``low`` and
    ``high`` the bootstrap interval. ``annealing`` is the run's annealing area S2 at its end;
    ``annealing_fitted`` whether C was fitted (False: held at 0, the gain of the annealing
    still to come left out of ``loss``)."""

    run: str
    step: int
    steps: int
    now: float
    loss: float
    low: float
    high: float
    annealing: float = 0.0
    annealing_fitted: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _terms(curves: list[Curve]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(np.log(c.loss), s1_at(c.lr, c.steps), s2_at(c.lr, c.steps, DECAY)) for c in curves]


def _unpack(theta: np.ndarray, n: int) -> tuple[np.ndarray, float, float, float]:
    """(L0 per run, A, α, C) from the fitted logarithms; C is 0 where it is not fitted."""
    c = float(np.exp(theta[n + 2])) if len(theta) > n + 2 else 0.0
    return np.exp(theta[:n]), float(np.exp(theta[n])), float(np.exp(theta[n + 1])), c


def _fit(curves: list[Curve], starts: list[np.ndarray]) -> np.ndarray | None:
    """The logarithms of (L0_1..L0_n, A, α[, C]) of least Huber loss on log residuals; None
    when no start could be fitted."""
    from scipy.optimize import least_squares

    n, terms = len(curves), _terms(curves)

    def residuals(theta: np.ndarray) -> np.ndarray:
        floors, a, alpha, c = _unpack(theta, n)
        out = []
        for floor, (log_loss, s1, s2) in zip(floors, terms, strict=True):
            predicted = np.maximum(floor + a * s1**-alpha - c * s2, 1e-6)
            out.append(log_loss - np.log(predicted))
        return np.nan_to_num(np.concatenate(out), nan=1e3, posinf=1e3, neginf=-1e3)

    best = None
    with np.errstate(over="ignore", invalid="ignore"):
        for start in starts:
            try:
                found = least_squares(residuals, start, loss="huber", f_scale=HUBER)
            except ValueError:  # a start whose residuals are not finite
                continue
            if best is None or found.cost < best.cost:
                best = found
    return None if best is None else best.x


def _final(curves: list[Curve], theta: np.ndarray) -> np.ndarray:
    floors, a, alpha, c = _unpack(theta, len(curves))
    ends = [np.array([len(curve.lr) - 1]) for curve in curves]
    return np.array(
        [
            floor + a * s1_at(curve.lr, end)[0] ** -alpha - c * s2_at(curve.lr, end, DECAY)[0]
            for floor, curve, end in zip(floors, curves, ends, strict=True)
        ]
    )


def _annealing(curve: Curve) -> tuple[float, float]:
    """The curve's annealing area S2 at its last logged step and at its schedule's end."""
    seen, end = s2_at(curve.lr, np.array([curve.steps[-1], len(curve.lr) - 1]), DECAY)
    return float(seen), float(end)


def forecast_final_losses(
    curves: list[Curve], samples: int = 40, level: float = 0.8, seed: int = 0
) -> list[Forecast]:
    """Each curve's final loss (the lr of every step of its whole schedule is known, the
    losses logged so far given) with its interval, from one fit across all of them. Raises
    FitError when a curve is too short or the law cannot be fitted."""
    if not curves:
        return []
    short = [c.name for c in curves if len(c.steps) < MIN_LOGGED]
    if short:
        raise FitError(
            f"run {short[0]}: fewer than {MIN_LOGGED} logged losses; log every step "
            "(train.log_interval = 1) for the pruner's forecasts"
        )
    annealing = [_annealing(c) for c in curves]
    fitted = any(end > 0 and seen >= ANNEALING_SEEN * end for seen, end in annealing)
    floors = [np.log(0.8 * c.loss.min()) for c in curves]
    starts = [
        np.array([*floors, 0.0, np.log(alpha), *([np.log(c)] if fitted else [])])
        for alpha in (0.2, 0.5, 1.0)
        for c in ((0.1, 1.0, 10.0) if fitted else (None,))
    ]
    with blas_threads():
        theta = _fit(curves, starts)
        if theta is None:
            raise FitError(f"runs {', '.join(c.name for c in curves)}: no start could be fitted")
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(samples):
            refit = _fit(LrCurves(curves).resample("steps", rng).curves, [theta])
            if refit is not None:
                draws.append(_final(curves, refit))
    point = _final(curves, theta)
    low, high = point, point
    finite = [d for d in draws if np.isfinite(d).all()]
    if samples and len(finite) >= samples / 2:  # else no interval: a bootstrap of survivors
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(np.array(finite), [tail, 100 - tail], axis=0)
    return [
        Forecast(
            run=curve.name,
            step=int(curve.steps[-1]) + 1,
            steps=len(curve.lr),
            now=float(np.mean(curve.loss[-10:])),
            loss=float(point[i]),
            low=float(min(low[i], point[i])),
            high=float(max(high[i], point[i])),
            annealing=annealing[i][1],
            annealing_fitted=fitted,
        )
        for i, curve in enumerate(curves)
    ]


def forecast_group(
    families: list[list[Curve]],
    competing: set[str] | None = None,
    samples: int = 40,
    level: float = 0.8,
    seed: int = 0,
) -> tuple[list[Forecast], dict[str, str], list[str]]:
    """The forecasts of the runs that compete (one model, one budget), each family (the runs
    that share a number of steps, so that one shape fits them: the learning rates of one
    batch size) fitted on its own, and the runs to prune among all of them: their final
    losses are all of one model at one budget, so any run may prune any other. A family may
    hold runs that no longer compete (pruned at an earlier rung, their curves cut there):
    they still teach the shape, but are neither forecast nor pruned again. ``competing``:
    the names of the runs that do (default: all). The third item: why a family could not be
    forecast (its runs are then kept)."""
    forecasts, failed = [], []
    for family in families:
        try:
            found = forecast_final_losses(family, samples, level, seed)
        except FitError as err:  # this family's runs are kept; the others still compete
            failed.append(str(err))
            continue
        forecasts += [f for f in found if competing is None or f.run in competing]
    return forecasts, runs_to_prune(forecasts), failed


def runs_to_prune(forecasts: list[Forecast]) -> dict[str, str]:
    """The runs whose whole interval lies above the best run's interval, each with the reason
    in one line; every run whose interval reaches the best one's is kept. The best run is the
    one whose interval ends lowest: the run surest to reach a low loss (a run whose forecast
    cannot be told from nothing, its interval reaching 0 or below, is never the best).

    Where either forecast left out the annealing still to come (C held at 0), a run is pruned
    only if it has no more of it ahead than the best run: whatever C is (annealing lowers the
    loss, C ≥ 0), its gain cannot then reverse the order. In an lr sweep of one schedule that
    means the lower learning rates go first and a higher one waits until C is fitted."""
    sure = [f for f in forecasts if f.low > 0 and np.isfinite(f.high)]
    if len(forecasts) < 2 or not sure:
        return {}
    best = min(sure, key=lambda f: (f.high, f.loss))

    def beaten(f: Forecast) -> bool:
        if f is best or not f.low > best.high:
            return False
        fitted = f.annealing_fitted and best.annealing_fitted
        return fitted or f.annealing <= best.annealing

    return {
        f.run: (
            f"forecast final loss {f.loss:.4f} [{f.low:.4f}, {f.high:.4f}] at step {f.step} of "
            f"{f.steps} lies above run {best.run}'s {best.loss:.4f} [{best.low:.4f}, "
            f"{best.high:.4f}]"
            + ("" if f.annealing_fitted else " (before any annealing: C held at 0)")
        )
        for f in forecasts
        if beaten(f)
    }
