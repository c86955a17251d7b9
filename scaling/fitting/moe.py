"""Mixture-of-Experts laws: how much an expert count is worth in dense parameters.

1. Per expert count: a parametric fit of its own, and the effective-parameter multiplier m_E,
   the factor by which the dense law's N must grow to match the MoE's loss at equal active
   parameters: L_MoE(N, D) ≈ L_dense(m_E·N, D).
2. With a ``granularity`` column, the joint form of Krajewski et al. (2024):
   L(N, D, G) = c + (g/G^γ + a)/N^α + b/D^β, N active parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from scaling.fitting import chinchilla
from scaling.fitting.base import Fit, Law
from scaling.fitting.errors import FitError
from scaling.fitting.minimize import multistart
from scaling.fitting.objectives import HUBER_DELTA, rho
from scaling.fitting.parametric import ParametricLaw

if TYPE_CHECKING:
    import pandas as pd

GRANULAR = ("c", "g", "gamma", "a", "alpha", "b", "beta")


class MoELaw(Law):
    """Points need ``n_experts`` (0 or 1: dense) and ``params`` = active parameters (a sweep
    sized by active parameters gives them so: ``points.prepare_points``).

    What the points identify, else the fit is refused: the dense law as the parametric law
    needs it (of the dense points), and each expert count's multiplier inside its search
    range ``MULTIPLIER_RANGE`` (one on its edge is a bound the points push against, not a
    value they fix)."""

    law = "moe"
    formula = (
        "L_MoE(N_active, D) = L_dense(m_E * N_active, D); "
        "L(N, D, G) = c + (g/G^gamma + a)/N^alpha + b/D^beta"
    )
    answers = frozenset({"loss"})
    covariates = ("n_experts",)
    parameters = ParametricLaw.parameters
    positive_params = ParametricLaw.positive_params
    positive_in_fit = ParametricLaw.positive_in_fit

    @classmethod
    def params_problem(cls, params: dict[str, float], fitted: bool) -> tuple[str, str] | None:
        for name, value in params.items():  # multiplier_8: the dense-equivalent factor
            if name.startswith("multiplier_") and value <= 0:
                return name, f"{value!r} must be positive"
        return super().params_problem(params, fitted)

    def dense(self, sample=None) -> ParametricLaw:
        p = sample or self.params_
        return ParametricLaw.from_params({k: p[k] for k in DENSE}, compute=self.compute_)

    def multiplier(self, n_experts: int, sample=None) -> float:
        p = sample or self.params_
        if n_experts <= 1:
            return 1.0
        key = f"multiplier_{int(n_experts)}"
        if key not in p:
            fitted = sorted(k.removeprefix("multiplier_") for k in p if k.startswith("multiplier_"))
            raise FitError(
                f"no multiplier fitted for {n_experts} experts; have {', '.join(fitted)}",
                param="n_experts",
                value=n_experts,
            )
        return p[key]

    def loss(self, params, tokens, sample=None, n_experts: int = 0, **covariates):
        n_experts = int(n_experts or 0)
        scaled = self.multiplier(n_experts, sample) * np.asarray(params, float)
        return self.dense(sample).loss(scaled, tokens)

    def at(self, params, tokens, sample=None, **covariates) -> dict:
        """The loss there, and the expert count's multiplier."""
        out = super().at(params, tokens, sample, **covariates)
        out["multiplier"] = self.multiplier(int(covariates.get("n_experts") or 0), sample)
        return out

    def _fit(self, points) -> Fit:
        frame = points.frame
        if "n_experts" not in frame:
            raise FitError(
                f"{points.source}: the moe law needs an 'n_experts' column (0 or 1 for dense runs)"
            )
        dense_rows = frame[frame["n_experts"] <= 1]
        if frame["n_experts"].max() <= 1:
            raise FitError(f"{points.source}: no MoE points (n_experts > 1) to compare with dense")
        dense = ParametricLaw().fit(points.subset(dense_rows))
        multipliers = _multipliers(frame, dense)
        for name, value in multipliers.items():
            if not _inside(value):
                low, high = np.exp(MULTIPLIER_RANGE)
                raise FitError(
                    f"{points.source}: {name} = {value:.4g} lies on the edge of its search range "
                    f"[{low:.3g}, {high:.3g}]: the points do not identify it"
                )
        params = {**dense.params_, **multipliers}
        per_expert: dict[str, Any] = {}
        for e, group in frame[frame["n_experts"] > 1].groupby("n_experts"):
            try:
                own = ParametricLaw().fit(points.subset(group))
                per_expert[str(int(e))] = {**own.params_, "n_points": len(group)}
            except FitError as err:
                per_expert[str(int(e))] = {"skipped": str(err), "n_points": len(group)}
        details: dict[str, Any] = {"dense_points": len(dense_rows), "per_expert": per_expert}
        if "granularity" in frame and frame["granularity"].notna().all():
            details["granular"] = fit_granular(frame)
        return Fit(params, None, details)

    def _refit(self, points, found: Fit):
        frame, params = points.frame, found.params
        sample_dense = frame[frame["n_experts"] <= 1]
        sub = ParametricLaw.from_params({k: params[k] for k in DENSE})
        if len(sample_dense) >= 6:
            problem = chinchilla.Problem(sample_dense)
            result = problem.minimize(chinchilla.internal(params))
            sub = ParametricLaw.from_params(chinchilla.natural(problem.full(result.x)))
        multipliers = _multipliers(frame, sub)
        wanted = {k for k in params if k.startswith("multiplier_")}
        if multipliers.keys() != wanted or not all(map(_inside, multipliers.values())):
            return None
        return {**sub.params_, **multipliers}


DENSE = ("E", "A", "B", "alpha", "beta")
MULTIPLIER_RANGE = (-5.0, 10.0)  # log m searched: a multiplier from 1/150 to 22,000


def _inside(multiplier: float) -> bool:
    """Whether a fitted multiplier is off the edges of its search range (by 1e-6 in log)."""
    low, high = MULTIPLIER_RANGE
    return low + 1e-6 < np.log(multiplier) < high - 1e-6


def _multiplier(dense: ParametricLaw, group: pd.DataFrame) -> float:
    from scipy.optimize import minimize_scalar  # scipy loads when a law fits, not on import

    N, D = group["params"].to_numpy(float), group["tokens"].to_numpy(float)
    t = np.log(group["loss"].to_numpy(float))

    def objective(log_m):
        return rho(np.log(dense.loss(np.exp(log_m) * N, D)) - t, "huber", HUBER_DELTA)[0].sum()

    return float(
        np.exp(
            minimize_scalar(
                objective, bounds=MULTIPLIER_RANGE, method="bounded", options={"xatol": 1e-10}
            ).x
        )
    )


def _multipliers(frame: pd.DataFrame, dense: ParametricLaw) -> dict[str, float]:
    return {
        f"multiplier_{int(e)}": _multiplier(dense, g)
        for e, g in frame[frame["n_experts"] > 1].groupby("n_experts")
    }


def fit_granular(frame: pd.DataFrame) -> dict[str, Any]:
    """Krajewski et al.'s L(N, D, G), least squares on log loss from a pruned grid of starts."""
    N, D, G = (frame[c].to_numpy(float) for c in ("params", "tokens", "granularity"))
    t = np.log(frame["loss"].to_numpy(float))

    def residual(theta):
        lc, lg, gamma, la, alpha, lb, beta = theta
        value = np.exp(lc) + (np.exp(lg) / G**gamma + np.exp(la)) / N**alpha + np.exp(lb) / D**beta
        return np.log(value) - t

    grid = np.array(
        [
            (lc, lg, gm, la, al, lb, be)
            for lc in (-1.0, 0.5)
            for lg in (0.0, 5.0)
            for gm in (0.3, 1.0)
            for la in (0.0, 5.0)
            for al in (0.2, 0.5)
            for lb in (0.0, 5.0)
            for be in (0.2, 0.5)
        ]
    )
    best = multistart(
        residual,
        grid,
        method="least_squares",
        keep=12,
        bounds=(
            [-np.inf, -np.inf, 0, -np.inf, 0, -np.inf, 0],
            [np.inf, np.inf, 3, np.inf, 3, np.inf, 3],
        ),
        options={"xtol": 1e-14, "ftol": 1e-14, "gtol": 1e-14, "max_nfev": 5000},
    )
    lc, lg, gamma, la, alpha, lb, beta = best.x
    return {
        "c": np.exp(lc),
        "g": np.exp(lg),
        "gamma": gamma,
        "a": np.exp(la),
        "alpha": alpha,
        "b": np.exp(lb),
        "beta": beta,
        "objective": best.fun_value,
    }


def fit_moe(data, **parameters: Any) -> MoELaw:
    """``MoELaw(**parameters).fit(data)``."""
    return MoELaw(**parameters).fit(data)
