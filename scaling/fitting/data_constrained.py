"""Data-constrained scaling (Muennighoff et al., 2023): repeated tokens are worth less.

    D' = U_D + U_D·R_D*·(1 − exp(−R_D / R_D*)),   R_D = D/U_D − 1 (repetitions)
    N' = U_N + U_N·R_N*·(1 − exp(−R_N / R_N*)),   U_N = min(N_opt(U_D), N), R_N = N/U_N − 1
    L  = E + A/N'^α + B/D'^β

As in the paper, E, A, B, α, β come from the single-epoch points (D ≤ U_D) alone, and only
R_D* and R_N* are fitted on the points that repeat data (Huber loss on log loss).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.fitting.base import FitError, Law
from scaling.fitting.bootstrap import bootstrap
from scaling.fitting.parametric import ParametricLaw, _rho, fit_parametric
from scaling.fitting.points import Points, prepare_points


def effective(unique, repeats, r_star):
    """U + U·R*·(1 − exp(−R/R*)): the worth of U unique units seen 1 + R times."""
    return unique + unique * r_star * (1 - np.exp(-repeats / r_star))


class DataConstrainedLaw(Law):
    law = "data-constrained"
    formula = "L = E + A/N'^alpha + B/D'^beta (effective N', D' of Muennighoff et al. 2023)"

    def loss(self, N, D, U=None, p: dict[str, float] | None = None):
        p = p or self.params
        N, D = np.asarray(N, float), np.asarray(D, float)
        U = D if U is None else np.asarray(U, float)
        base = ParametricLaw(params={k: p[k] for k in ("E", "A", "B", "alpha", "beta")})
        # the compute-optimal size for U unique tokens: D_opt(C) = U, so C/6 = (U·G)^(1/b)
        derived = base._derived(base.params)
        n_opt_u = derived["G"] * (U * derived["G"]) ** (derived["a"] / derived["b"])
        u_n = np.minimum(n_opt_u, N)
        n_eff = effective(u_n, N / u_n - 1, p["R_N_star"])
        d_eff = effective(U, np.maximum(D / U - 1, 0), p["R_D_star"])
        return p["E"] + p["A"] / n_eff ** p["alpha"] + p["B"] / d_eff ** p["beta"]

    def predict(self, compute=None, params=None, tokens=None, unique_tokens=None) -> dict[str, Any]:
        if params is None or tokens is None:
            raise FitError(
                "the data-constrained law predicts the loss of a size, a token count "
                "and a number of unique tokens (--params, --tokens)"
            )
        unique = tokens if unique_tokens is None else unique_tokens

        def at(p):
            return {
                "params": params,
                "tokens": tokens,
                "unique_tokens": unique,
                "loss": float(self.loss(params, tokens, unique, p)),
            }

        return self._with_intervals(at(self.params), at)


def _fit_stars(frame: pd.DataFrame, base: dict[str, float], delta: float = 1e-3):
    law = DataConstrainedLaw(params={**base, "R_D_star": 1.0, "R_N_star": 1.0})
    N, D, U = (frame[c].to_numpy(float) for c in ("params", "tokens", "unique_tokens"))
    t = np.log(frame["loss"].to_numpy(float))

    def objective(theta):
        p = {**base, "R_D_star": np.exp(theta[0]), "R_N_star": np.exp(theta[1])}
        return _rho(np.log(law.loss(N, D, U, p)) - t, "huber", delta)[0].sum()

    best = None
    for start in np.log([[1, 1], [5, 5], [15, 5], [15, 15], [50, 50], [0.5, 5]]):
        result = minimize(
            objective,
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-16, "maxiter": 4000},
        )
        if best is None or result.fun < best.fun:
            best = result
    return {"R_D_star": float(np.exp(best.x[0])), "R_N_star": float(np.exp(best.x[1]))}, best.fun


def fit_data_constrained(
    data: pd.DataFrame | Points,
    base: ParametricLaw | None = None,
    bootstrap_samples: int = 0,
    bootstrap_unit: str = "points",
    seed: int = 0,
) -> DataConstrainedLaw:
    """Points need ``unique_tokens``. ``base``: a single-epoch parametric fit; by default it
    is fitted here on the points that do not repeat data."""
    points = data if isinstance(data, Points) else prepare_points(data)
    frame = points.frame
    if "unique_tokens" not in frame or frame["unique_tokens"].isna().any():
        raise FitError(
            f"{points.source}: the data-constrained law needs 'unique_tokens' for "
            "every point (map it with --unique-tokens-col)"
        )
    repeated = frame["tokens"] > frame["unique_tokens"] * (1 + 1e-9)
    if repeated.sum() < 2:
        raise FitError(
            f"{points.source}: fewer than 2 points repeat data (tokens > "
            "unique_tokens); nothing to fit R_D*, R_N* on"
        )
    if base is None:
        single = Points(frame[~repeated].reset_index(drop=True), [], points.source)
        base = fit_parametric(single)
    fitted, objective = _fit_stars(frame[repeated], base.params)

    samples, intervals = bootstrap(
        frame[repeated],
        lambda s: {**base.params, **_fit_stars(s, base.params)[0]},
        bootstrap_samples,
        bootstrap_unit,
        seed,
    )
    return DataConstrainedLaw.fitted(
        points,
        {**base.params, **fitted},
        (samples, intervals),
        objective=float(objective),
        options={"bootstrap": bootstrap_samples, "bootstrap_unit": bootstrap_unit, "seed": seed},
        details={
            "single_epoch_points": int((~repeated).sum()),
            "repeated_points": int(repeated.sum()),
            "base_objective": base.objective,
        },
    )
