"""Data-constrained scaling (Muennighoff et al., 2023): repeated tokens are worth less.

    D' = U_D + U_D·R_D*·(1 − exp(−R_D / R_D*)),   R_D = D/U_D − 1 (repetitions)
    N' = U_N + U_N·R_N*·(1 − exp(−R_N / R_N*)),   U_N = min(N_opt(U_D), N), R_N = N/U_N − 1
    L  = E + A/N'^α + B/D'^β

As in the paper, E, A, B, α, β come from the single-epoch points (D ≤ U_D) alone, and only
R_D* and R_N* are fitted on the points that repeat data (Huber loss on log loss).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scaling.fitting.base import FitError, Law
from scaling.fitting.minimize import multistart
from scaling.fitting.parametric import ParametricLaw, _rho
from scaling.fitting.points import Points


def effective(unique, repeats, r_star):
    """U + U·R*·(1 − exp(−R/R*)): the worth of U unique units seen 1 + R times."""
    return unique + unique * r_star * (1 - np.exp(-repeats / r_star))


class DataConstrainedLaw(Law):
    """Points need ``unique_tokens``. Setting ``base``: the parameters (E, A, B, alpha, beta)
    of a single-epoch parametric law; by default that law is fitted here on the points that do
    not repeat data."""

    law = "data-constrained"
    formula = "L = E + A/N'^alpha + B/D'^beta (effective N', D' of Muennighoff et al. 2023)"
    defaults: ClassVar[dict[str, Any]] = {"base": None}
    answers = frozenset({"loss"})
    covariates = ("unique_tokens",)

    def loss(self, params, tokens, sample=None, unique_tokens=None, **covariates):
        p = sample or self.params
        N, D = np.asarray(params, float), np.asarray(tokens, float)
        U = D if unique_tokens is None else np.asarray(unique_tokens, float)
        base = ParametricLaw._derived(p)
        # the compute-optimal size for U unique tokens: D_opt(C) = U, so C/6 = (U·G)^(1/b)
        n_opt_u = base["G"] * (U * base["G"]) ** (base["a"] / base["b"])
        u_n = np.minimum(n_opt_u, N)
        n_eff = effective(u_n, N / u_n - 1, p["R_N_star"])
        d_eff = effective(U, np.maximum(D / U - 1, 0), p["R_D_star"])
        return p["E"] + p["A"] / n_eff ** p["alpha"] + p["B"] / d_eff ** p["beta"]

    def _repeated(self, frame: pd.DataFrame) -> np.ndarray:
        return (frame["tokens"] > frame["unique_tokens"] * (1 + 1e-9)).to_numpy()

    def _fit(self, points):
        frame = points.frame
        if "unique_tokens" not in frame or frame["unique_tokens"].isna().any():
            raise FitError(
                f"{points.source}: the data-constrained law needs 'unique_tokens' for every point"
            )
        repeated = self._repeated(frame)
        if repeated.sum() < 2:
            raise FitError(
                f"{points.source}: fewer than 2 points repeat data (tokens > "
                "unique_tokens); nothing to fit R_D*, R_N* on"
            )
        base = self.settings["base"]
        base_objective = None
        if base is None:
            single = Points(frame[~repeated].reset_index(drop=True), [], points.source)
            fitted = ParametricLaw().fit(single)
            base, base_objective = fitted.params, fitted.objective
        self._base = {k: float(base[k]) for k in ("E", "A", "B", "alpha", "beta")}
        stars, objective = _fit_stars(frame[repeated], self._base)
        details = {
            "single_epoch_points": int((~repeated).sum()),
            "repeated_points": int(repeated.sum()),
            "base_objective": base_objective,
        }
        return {**self._base, **stars}, float(objective), details

    def _bootstrap_frame(self, points):
        return points.frame[self._repeated(points.frame)]

    def _refit(self, frame, params):
        return {**self._base, **_fit_stars(frame, self._base)[0]}


def _fit_stars(frame: pd.DataFrame, base: dict[str, float], delta: float = 1e-3):
    law = DataConstrainedLaw.from_params({**base, "R_D_star": 1.0, "R_N_star": 1.0})
    N, D, U = (frame[c].to_numpy(float) for c in ("params", "tokens", "unique_tokens"))
    t = np.log(frame["loss"].to_numpy(float))

    def objective(theta):
        p = {**base, "R_D_star": np.exp(theta[0]), "R_N_star": np.exp(theta[1])}
        return _rho(np.log(law.loss(N, D, p, unique_tokens=U)) - t, "huber", delta)[0].sum()

    best = multistart(
        objective,
        np.log([[1, 1], [5, 5], [15, 5], [15, 15], [50, 50], [0.5, 5]]),
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-16, "maxiter": 4000},
    )
    return {"R_D_star": float(np.exp(best.x[0])), "R_N_star": float(np.exp(best.x[1]))}, best.fun


def fit_data_constrained(data, base=None, **settings: Any) -> DataConstrainedLaw:
    """``DataConstrainedLaw(**settings).fit(data)``; ``base``: a single-epoch ParametricLaw
    (or its parameters)."""
    if base is not None and hasattr(base, "params"):
        base = base.params
    return DataConstrainedLaw(base=base, **settings).fit(data)
