"""Mixture-of-Experts laws: how much an expert count is worth in dense parameters.

1. Per expert count: a parametric fit of its own, and the effective-parameter multiplier m_E,
   the factor by which the dense law's N must grow to match the MoE's loss at equal active
   parameters: L_MoE(N, D) ≈ L_dense(m_E·N, D).
2. With a ``granularity`` column, the joint form of Krajewski et al. (2024):
   L(N, D, G) = c + (g/G^γ + a)/N^α + b/D^β, N active parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize_scalar

from scaling.fitting.base import FitError, Law
from scaling.fitting.bootstrap import bootstrap
from scaling.fitting.parametric import ParametricLaw, _rho, fit_parametric
from scaling.fitting.points import Points, prepare_points

GRANULAR = ("c", "g", "gamma", "a", "alpha", "b", "beta")


class MoELaw(Law):
    law = "moe"
    formula = (
        "L_MoE(N_active, D) = L_dense(m_E * N_active, D); "
        "L(N, D, G) = c + (g/G^gamma + a)/N^alpha + b/D^beta"
    )

    def dense(self, p: dict[str, float] | None = None) -> ParametricLaw:
        p = p or self.params
        return ParametricLaw(params={k: p[k] for k in ("E", "A", "B", "alpha", "beta")})

    def multiplier(self, n_experts: int, p: dict[str, float] | None = None) -> float:
        p = p or self.params
        if n_experts <= 1:
            return 1.0
        key = f"multiplier_{int(n_experts)}"
        if key not in p:
            fitted = sorted(k.removeprefix("multiplier_") for k in p if k.startswith("multiplier_"))
            raise FitError(
                f"no multiplier fitted for {n_experts} experts; have {', '.join(fitted)}"
            )
        return p[key]

    def loss(self, N, D, n_experts: int = 0, p: dict[str, float] | None = None):
        return self.dense(p).loss(self.multiplier(n_experts, p) * np.asarray(N, float), D)

    def predict(self, compute=None, params=None, tokens=None, n_experts: int = 0) -> dict[str, Any]:
        if params is None or tokens is None:
            raise FitError(
                "the moe law predicts the loss of an active size, a token count and "
                "an expert count (--params, --tokens, --experts)"
            )

        def at(p):
            return {
                "params": params,
                "tokens": tokens,
                "n_experts": n_experts,
                "multiplier": self.multiplier(n_experts, p),
                "loss": float(self.loss(params, tokens, n_experts, p)),
            }

        return self._with_intervals(at(self.params), at)


def _multiplier(dense: ParametricLaw, group: pd.DataFrame) -> float:
    N, D = group["params"].to_numpy(float), group["tokens"].to_numpy(float)
    t = np.log(group["loss"].to_numpy(float))

    def objective(log_m):
        return _rho(np.log(dense.loss(np.exp(log_m) * N, D)) - t, "huber", 1e-3)[0].sum()

    return float(
        np.exp(
            minimize_scalar(
                objective, bounds=(-5, 10), method="bounded", options={"xatol": 1e-10}
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
    costs = np.array([np.square(residual(theta)).sum() for theta in grid])
    best = None
    for start in grid[np.argsort(costs)[:12]]:
        result = least_squares(
            residual,
            start,
            bounds=(
                [-np.inf, -np.inf, 0, -np.inf, 0, -np.inf, 0],
                [np.inf, np.inf, 3, np.inf, 3, np.inf, 3],
            ),
            xtol=1e-14,
            ftol=1e-14,
            gtol=1e-14,
            max_nfev=5000,
        )
        if best is None or result.cost < best.cost:
            best = result
    lc, lg, gamma, la, alpha, lb, beta = best.x
    return {
        "c": np.exp(lc),
        "g": np.exp(lg),
        "gamma": gamma,
        "a": np.exp(la),
        "alpha": alpha,
        "b": np.exp(lb),
        "beta": beta,
        "objective": 2 * best.cost,
    }


def fit_moe(
    data: pd.DataFrame | Points,
    bootstrap_samples: int = 0,
    bootstrap_unit: str = "points",
    seed: int = 0,
) -> MoELaw:
    """Points need ``n_experts`` (0 or 1: dense) and ``params`` = active parameters."""
    points = data if isinstance(data, Points) else prepare_points(data)
    frame = points.frame
    if "n_experts" not in frame:
        raise FitError(
            f"{points.source}: the moe law needs an 'n_experts' column "
            "(0 or 1 for dense runs; map it with --experts-col)"
        )
    dense_rows = frame[frame["n_experts"] <= 1]
    if frame["n_experts"].max() <= 1:
        raise FitError(f"{points.source}: no MoE points (n_experts > 1) to compare with dense")
    dense = fit_parametric(Points(dense_rows.reset_index(drop=True), [], points.source))
    params = {**dense.params, **_multipliers(frame, dense)}

    per_expert: dict[str, Any] = {}
    for e, group in frame[frame["n_experts"] > 1].groupby("n_experts"):
        try:
            own = fit_parametric(Points(group.reset_index(drop=True), [], points.source))
            per_expert[str(int(e))] = {**own.params, "n_points": len(group)}
        except FitError as err:
            per_expert[str(int(e))] = {"skipped": str(err), "n_points": len(group)}
    details: dict[str, Any] = {"dense_points": len(dense_rows), "per_expert": per_expert}
    if "granularity" in frame and frame["granularity"].notna().all():
        details["granular"] = fit_granular(frame)

    def refit(sample: pd.DataFrame):
        sample_dense = sample[sample["n_experts"] <= 1]
        sub = ParametricLaw(params=dense.params)
        if len(sample_dense) >= 6:
            from scaling.fitting.parametric import _Problem

            problem = _Problem(sample_dense, "huber", 1e-3, None, None)
            start = np.log([dense.params["E"], dense.params["A"], dense.params["B"]])
            result = problem.minimize(np.r_[start, dense.params["alpha"], dense.params["beta"]])
            e, a, b, alpha, beta = problem.full(result.x)
            sub = ParametricLaw(
                params={
                    "E": np.exp(e),
                    "A": np.exp(a),
                    "B": np.exp(b),
                    "alpha": alpha,
                    "beta": beta,
                }
            )
        found = _multipliers(sample, sub)
        return {**sub.params, **found} if found.keys() == params.keys() - set(sub.params) else None

    samples, intervals = bootstrap(frame, refit, bootstrap_samples, bootstrap_unit, seed)
    return MoELaw.fitted(
        points,
        params,
        (samples, intervals),
        options={"bootstrap": bootstrap_samples, "bootstrap_unit": bootstrap_unit, "seed": seed},
        details=details,
    )
