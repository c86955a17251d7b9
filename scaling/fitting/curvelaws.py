"""What the loss-curve laws share (``multipower.MultiPowerLaw``, ``lr_annealing.
LRAnnealingLaw``): their input (``curves.LrCurves``), S1, the objective (Huber on log
residuals over every curve, as the multi-power code: thu-yao-01-luo/MultiPowerLaw, MIT, commit
8da9f1902602f3391b971a811e3cc51604541769, ``src/models.py``, ``src/utils.py``), the surrogate
grid both start from (``src/fitting.py`` ``initialize_params``), and the question ``curve``:
the loss at every step of a schedule.

Every parameter is shared by the curves given (one model); the bootstrap resamples curves.
"""

from __future__ import annotations

from itertools import product
from typing import Annotated, Any, ClassVar

import numpy as np

from scaling.fitting.base import Fit, Law
from scaling.fitting.curves import LrCurves, check_lr, curves_from_table, schedule_from
from scaling.fitting.errors import FitError, coverage, positive

PREDICT_GRID = 2000
# Where the fit looks (L-BFGS-B's bounds, on the logarithms): wide, and finite throughout.
BOUNDS = {
    "L0": (1e-3, 1e3),
    "A": (1e-8, 1e8),
    "alpha": (1e-4, 5.0),
    "B": (1e-8, 1e10),
    "C": (1e-8, 1e8),
    "beta": (1e-4, 5.0),
    "gamma": (1e-4, 5.0),
}  # a longer schedule is computed at this many steps, interpolated between


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber's value and derivative (``scipy.special.huber``, as the repository's)."""
    small = np.abs(r) <= delta
    value = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    return value, np.where(small, r, delta * np.sign(r))


def s1_at(lr: np.ndarray, steps: np.ndarray) -> np.ndarray:
    return np.cumsum(lr)[steps]


class CurveLaw(Law):
    """What the loss-curve laws share: their input (``curves.LrCurves``; a DataFrame of
    ``run, step, lr, loss``), the surrogate start, and the question ``curve``."""

    answers: ClassVar[frozenset[str]] = frozenset({"curve"})
    units: ClassVar[tuple[str, ...]] = LrCurves.units
    parameters: ClassVar[tuple[str, ...]] = ()
    shape: ClassVar[tuple[str, ...]] = ()  # the parameters past L0, A, alpha, drop

    def __init__(
        self,
        *,
        huber_delta: Annotated[
            float, "Curve laws: Huber δ on log residuals (1e-3 as the multi-power code)."
        ] = 1e-3,
        bootstrap_unit: Annotated[
            str,
            "What a bootstrap resample draws: points, runs or budgets; curve laws: curves, or "
            "steps (blocks of each curve's logged steps, for a single curve).",
        ] = "curves",
        **common: Any,
    ):
        self.huber_delta = huber_delta
        super().__init__(bootstrap_unit=bootstrap_unit, **common)

    def _check(self) -> None:
        super()._check()
        positive("huber_delta", self.huber_delta)

    def _data(self, data) -> LrCurves:
        if isinstance(data, LrCurves):
            return data
        if hasattr(data, "columns"):
            return curves_from_table(data)
        raise FitError(f"the {self.law} law fits loss curves with their lr schedules")

    # -- the objective: Huber on log residuals over every curve, on the logarithms -----------
    def _objective(self, terms, predict, theta: np.ndarray, scale: float = 1.0):
        """The objective and its gradient in the logarithms of the parameters."""
        value, grad = self._raw_objective(terms, predict, np.exp(theta))
        return value * scale, grad * np.exp(theta) * scale

    def _raw_objective(self, terms, predict, params: np.ndarray):
        """Σ Huber(log loss − log pred) over the curves, and its gradient in the parameters."""
        total, grad = 0.0, np.zeros_like(params)
        delta = float(self.huber_delta)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for term in terms:
                pred, jac = predict(term, params)
                if not np.isfinite(pred).all() or not np.isfinite(jac).all():
                    return 1e30, np.zeros_like(params)
                low = pred < 1e-10  # as the code: log(pred.clamp(min=1e-10)), flat below
                pred = np.where(low, 1e-10, pred)
                value, slope = huber(np.log(term["loss"]) - np.log(pred), delta)
                total += value.sum()
                grad += (jac * np.where(low, 0.0, -slope / pred)).sum(axis=1)
        return total, grad

    def _minimize(self, terms, predict, start: np.ndarray, maxiter: int = 3000):
        """L-BFGS-B on the logarithms within ``BOUNDS``, the objective scaled to 1 at the
        start (Huber's values are ~δ²), restarted while it still improves (a line search
        that stops short of the minimum ends one run)."""
        from scipy.optimize import minimize

        bounds = [tuple(np.log(BOUNDS[name])) for name in self.parameters[: len(start)]]
        theta = np.clip(np.log(np.maximum(start, 1e-30)), *np.array(bounds).T)
        first = self._objective(terms, predict, theta)[0]
        scale = 1.0 / first if 0 < first < 1e30 else 1.0
        best = first * scale
        for _ in range(6):
            result = minimize(
                lambda t: self._objective(terms, predict, t, scale),
                theta,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": maxiter, "ftol": 1e-14, "gtol": 1e-10},
            )
            improved = result.fun < best * (1 - 1e-9)
            if result.fun <= best:
                theta, best = result.x, float(result.fun)
            if not improved:
                break
        return np.exp(theta), best / scale

    def _surrogate(
        self, curves: LrCurves, drop: list[np.ndarray], unit: float
    ) -> tuple[np.ndarray, float]:
        """L0, A, α, B from the repository's grid (``initialize_params``) on the surrogate
        L0 + A·S1^(−α) − B·drop: L0 around the least loss, A and α from a line through
        log(loss − min + 0.01) against log S1, B over 100–1000 for a drop of ``unit`` = 3e-4
        (the code's peak lr; B's grid scales with ``unit``)."""
        from scipy.stats import linregress

        terms = [
            {"loss": c.loss, "s1": s1_at(c.lr, c.steps), "drop": d}
            for c, d in zip(curves.curves, drop, strict=True)
        ]
        least = min(c.loss.min() for c in curves.curves)
        x = np.concatenate([np.log(t["s1"]) for t in terms])
        y = np.concatenate([np.log(t["loss"] - least + 0.01) for t in terms])
        slope, intercept = linregress(x, y)[:2]
        grid = product(
            np.linspace(least - 0.2, least + 0.2, 5),
            np.linspace(np.exp(intercept) - 0.1, np.exp(intercept) + 0.1, 3),
            np.linspace(-slope - 0.1, -slope + 0.1, 3),
            np.linspace(100, 1000, 3) * 3e-4 / unit,
        )
        best = (None, np.inf)
        for start in grid:
            found = self._minimize(terms, _surrogate_predict, np.array(start), maxiter=500)
            if found[1] < best[1]:
                best = found
        if best[0] is None:
            raise FitError(f"{curves.source}: no start of the {self.law} law's fit converged")
        return best

    def _check_curves(self, curves: LrCurves) -> None:
        if len(curves) < len(self.parameters) + 1:
            raise FitError(
                f"{curves.source}: {len(curves)} logged losses; the {self.law} law has "
                f"{len(self.parameters)} parameters"
            )

    def _result(self, params, objective: float, curves: LrCurves, surrogate=None) -> Fit:
        values = dict(zip(self.parameters, (float(p) for p in params), strict=True))
        details: dict[str, Any] = {"curves": [c.name for c in curves.curves]}
        if surrogate is not None:
            details["surrogate"] = [float(x) for x in surrogate]
        return Fit(values, objective, details, warm=params)

    # -- the question -----------------------------------------------------------------------
    def _question(self, compute, params, tokens, covariates):
        raise FitError(
            f"the {self.law} law predicts the loss along a learning rate schedule: give the "
            "schedule (scaling predict --schedule)"
        )

    def curve(self, lr, steps=None, sample: dict[str, float] | None = None) -> np.ndarray:
        """The loss at ``steps`` (default: every step) of a schedule whose 0-based step j has
        lr ``lr[j]``."""
        self._check_fitted()
        lr = check_lr(lr, "schedule")
        steps = np.arange(len(lr)) if steps is None else np.asarray(steps, dtype=int)
        return self._curve(lr, steps, sample or self.params_)

    def _curve(self, lr, steps, p) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} defines no _curve")

    def predict_schedule(self, lr, level: float | None = None) -> dict[str, Any]:
        """The loss at every step of a schedule, with its bootstrap interval where the fit was
        bootstrapped. A schedule longer than ``PREDICT_GRID`` steps is computed exactly at
        that many evenly spaced steps (the last included) and interpolated between them."""
        lr = check_lr(lr, "schedule")
        every = np.arange(len(lr))
        grid = (
            every
            if len(lr) <= PREDICT_GRID
            else np.unique(np.linspace(0, len(lr) - 1, PREDICT_GRID).round().astype(int))
        )

        def at(sample=None):
            return np.interp(every, grid, self.curve(lr, grid, sample))

        out: dict[str, Any] = {"steps": every, "loss": at()}
        level = coverage(self.level if level is None else level)
        if self.samples_:
            draws = np.array([at(sample) for sample in self.samples_])
            tail = 100 * (1 - level) / 2  # bootstrap.percentile_interval, every step at once
            out["low"], out["high"] = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
        return out

    def predict(
        self,
        compute: float | None = None,
        params: float | None = None,
        tokens: float | None = None,
        level: float | None = None,
        schedule: Any = None,
        **covariates: float,
    ) -> dict[str, Any]:
        """The loss at every step of ``schedule`` (the lr of each step, or a schedule as
        ``curves.schedule_from`` reads it): steps, loss, and where the fit was bootstrapped
        ``intervals["loss"]``, one [low, high] per step."""
        self._check_fitted()
        if schedule is None or any(v is not None for v in (compute, params, tokens, *covariates)):
            self._question(compute, params, tokens, covariates)
        lr = schedule_from(schedule) if isinstance(schedule, str) else schedule
        found = self.predict_schedule(lr, level)
        out: dict[str, Any] = {"steps": found["steps"].tolist(), "loss": found["loss"].tolist()}
        if "low" in found:
            out["intervals"] = {"loss": np.stack([found["low"], found["high"]], 1).tolist()}
        return out


def _surrogate_predict(term, p):
    L0, A, alpha, B = p
    power = term["s1"] ** -alpha
    pred = L0 + A * power - B * term["drop"]
    jac = np.stack([np.ones_like(power), power, -A * power * np.log(term["s1"]), -term["drop"]])
    return pred, jac
