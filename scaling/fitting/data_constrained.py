"""Data-constrained scaling (Muennighoff et al., 2023): repeated tokens are worth less.

    D' = U_D + U_D·R_D*·(1 − exp(−R_D / R_D*)),   R_D = D/U_D − 1 (repetitions)
    N' = U_N + U_N·R_N*·(1 − exp(−R_N / R_N*)),   U_N = min(N_opt(U_D), N), R_N = N/U_N − 1
    L  = E + A/N'^α + B/D'^β

As in the paper, E, A, B, α, β come from the single-epoch points (D ≤ U_D) alone, and only
R_D* and R_N* are fitted on the points that repeat data (Huber loss on log loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from scaling.fitting import chinchilla
from scaling.fitting.base import Fit, Law
from scaling.fitting.errors import FitError, one_of, require_varying
from scaling.fitting.minimize import multistart
from scaling.fitting.objectives import HUBER_DELTA, LOSSES, rho
from scaling.fitting.parametric import ParametricLaw

if TYPE_CHECKING:
    import pandas as pd


def effective(unique, repeats, r_star):
    """U + U·R*·(1 − exp(−R/R*)): the worth of U unique units seen 1 + R times."""
    return unique + unique * r_star * (1 - np.exp(-repeats / r_star))


class DataConstrainedLaw(Law):
    """Points need ``unique_tokens``. As Muennighoff et al. fit it: the base law
    E + A/N^α + B/D^β from the single-epoch points (or given: parameter ``base``, the parameters
    of a parametric fit; ``scaling fit --base FIT.json``), optionally with ``tie_exponents``
    (α = β, the paper's choice), ``objective`` and ``pinned`` as the parametric law takes them; then
    R_D* and R_N* on every point (single-epoch points inform R_N* too: a model larger than the
    optimum for its unique data has "repeated" parameters). The bootstrap refits everything
    fitted here, the base law included. ``details["profile"]`` holds the objective with each R*
    halved and doubled; a warning says when one is barely identified.

    What the points identify, else the fit is refused: losses that differ, 2 or more points
    that repeat data (tokens > unique_tokens), and, where the base law is fitted here, what
    the parametric law needs of the single-epoch points. An R* that halving or doubling
    hardly changes is flagged in ``details["warnings"]`` (read it as a bound)."""

    law = "data-constrained"
    formula = "L = E + A/N'^alpha + B/D'^beta (effective N', D' of Muennighoff et al. 2023)"
    answers = frozenset({"loss"})
    covariates = ("unique_tokens",)
    parameters = (*ParametricLaw.parameters, "R_D_star", "R_N_star")
    positive_params = (*ParametricLaw.positive_params, "R_D_star", "R_N_star")
    positive_in_fit = ParametricLaw.positive_in_fit

    def __init__(
        self,
        *,
        base: Annotated[
            dict[str, float] | None,
            "The base law's E, A, B, alpha, beta (a parametric fit's); None: fit it on the "
            "single-epoch points.",
        ] = None,
        tie_exponents: Annotated[bool, "One exponent: alpha = beta."] = False,
        objective: Annotated[str, "The objective on log loss: huber, l2 or l1."] = "huber",
        pinned: Annotated[dict[str, float] | None, "Parameters held fixed, e.g. E=1.69."] = None,
        **common: Any,
    ):
        self.base = base
        self.tie_exponents = tie_exponents
        self.objective = objective  # not ``loss``: that is the question the law answers
        self.pinned = pinned
        super().__init__(**common)

    def _check(self) -> None:
        super()._check()
        one_of("objective", self.objective, LOSSES)
        chinchilla.check_pinned(self.pinned)
        if self.base is not None:
            missing = [k for k in BASE if k not in self.base]
            if missing:
                raise FitError(
                    f"the base law has no {missing[0]}; give a parametric law's parameters",
                    param="base",
                    value=sorted(self.base),
                )

    def loss(self, params, tokens, sample=None, unique_tokens=None, **covariates):
        p = sample or self.params_
        N, D = np.asarray(params, float), np.asarray(tokens, float)
        U = D if unique_tokens is None else np.asarray(unique_tokens, float)
        base = chinchilla.allocation(p)
        # the compute-optimal size for U unique tokens: D_opt(C) = U, so C/6 = (U·G)^(1/b)
        n_opt_u = base["G"] * (U * base["G"]) ** (base["a"] / base["b"])
        u_n = np.minimum(n_opt_u, N)
        n_eff = effective(u_n, N / u_n - 1, p["R_N_star"])
        d_eff = effective(U, np.maximum(D / U - 1, 0), p["R_D_star"])
        return p["E"] + p["A"] / n_eff ** p["alpha"] + p["B"] / d_eff ** p["beta"]

    def _repeated(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame["tokens"] > frame["unique_tokens"] * (1 + 1e-9)).to_numpy()

    def _base_law(self) -> ParametricLaw:
        return ParametricLaw(
            tie_exponents=self.tie_exponents, objective=self.objective, pinned=self.pinned
        )

    def _fit(self, points) -> Fit:
        frame = points.frame
        if "unique_tokens" not in frame or frame["unique_tokens"].isna().any():
            raise FitError(
                f"{points.source}: the data-constrained law needs 'unique_tokens' for every point"
            )
        require_varying(frame["loss"], points.source, self.law)
        repeated = self._repeated(frame)
        if repeated.sum() < 2:
            raise FitError(
                f"{points.source}: fewer than 2 points repeat data (tokens > "
                "unique_tokens); nothing to fit R_D*, R_N* on"
            )
        base_objective = None
        if self.base is None:
            fitted = self._base_law().fit(points.subset(frame[~repeated]))
            base, base_objective = fitted.params_, fitted.objective_
        else:
            base = self.base
        base = {k: float(base[k]) for k in BASE}
        stars, objective = _fit_stars(frame, base)
        profile = _profile(frame, {**base, **stars})
        details: dict[str, Any] = {
            "single_epoch_points": int((~repeated).sum()),
            "repeated_points": int(repeated.sum()),
            "base": "given" if self.base is not None else "fitted on the single-epoch points",
            "base_objective": base_objective,
            "profile": profile,
        }
        weak = [name for name, rise in profile.items() if min(rise.values()) < WEAK_RISE]
        if weak:
            details["warnings"] = [
                f"{name} is barely identified by these points: halving or doubling it raises "
                f"the RMS log-residual by less than {WEAK_RISE:.0e}; read it as a bound"
                for name in weak
            ]
        return Fit({**base, **stars}, float(objective), details)

    def _refit(self, points, found: Fit):
        frame, params = points.frame, found.params
        base = {k: params[k] for k in BASE}
        if self.base is None:  # the base was fitted here: refit it too
            single = frame[~self._repeated(frame)]
            if len(single) < 6:
                return None
            problem = self._base_law().problem(single)
            result = problem.minimize(chinchilla.internal(base)[problem.free])
            if not np.isfinite(result.fun):
                return None
            base = chinchilla.natural(problem.full(result.x))
        return {**base, **_fit_stars(frame, base, start=params)[0]}


BASE = ("E", "A", "B", "alpha", "beta")
WEAK_RISE = 1e-4  # RMS log-residual rise below which an R* is barely identified


def _log_residuals(frame: pd.DataFrame, p: dict[str, float]) -> np.ndarray:
    law = DataConstrainedLaw.from_params(p)
    N, D, U = (frame[c].to_numpy(float) for c in ("params", "tokens", "unique_tokens"))
    return np.log(law.loss(N, D, unique_tokens=U)) - np.log(frame["loss"].to_numpy(float))


def _profile(frame: pd.DataFrame, p: dict[str, float]) -> dict[str, dict[str, float]]:
    """How much the RMS log-residual rises with each R* halved and doubled (the others held)."""
    rms = float(np.sqrt(np.mean(_log_residuals(frame, p) ** 2)))
    out = {}
    for name in ("R_D_star", "R_N_star"):
        out[name] = {
            f"x{factor:g}": float(
                np.sqrt(np.mean(_log_residuals(frame, {**p, name: p[name] * factor}) ** 2)) - rms
            )
            for factor in (0.5, 2.0)
        }
    return out


def _fit_stars(
    frame: pd.DataFrame, base: dict[str, float], delta: float = HUBER_DELTA, start=None
) -> tuple[dict[str, float], float]:
    law = DataConstrainedLaw.from_params({**base, "R_D_star": 1.0, "R_N_star": 1.0})
    N, D, U = (frame[c].to_numpy(float) for c in ("params", "tokens", "unique_tokens"))
    t = np.log(frame["loss"].to_numpy(float))

    def objective(theta):
        p = {**base, "R_D_star": np.exp(theta[0]), "R_N_star": np.exp(theta[1])}
        return rho(np.log(law.loss(N, D, p, unique_tokens=U)) - t, "huber", delta)[0].sum()

    starts = [[1, 1], [5, 5], [15, 5], [15, 15], [50, 50], [0.5, 5]]
    if start is not None:  # a bootstrap refit: from the full fit's values
        starts = [[start["R_D_star"], start["R_N_star"]]]
    best = multistart(
        objective,
        np.log(starts),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-16, "maxiter": 4000},
    )
    return {"R_D_star": float(np.exp(best.x[0])), "R_N_star": float(np.exp(best.x[1]))}, best.fun


def fit_data_constrained(data, base=None, **parameters: Any) -> DataConstrainedLaw:
    """``DataConstrainedLaw(**parameters).fit(data)``; ``base``: a single-epoch ParametricLaw
    (or its parameters)."""
    if isinstance(base, ParametricLaw):
        base = dict(base.params_)
    return DataConstrainedLaw(base=base, **parameters).fit(data)
