"""Kaplan et al. (2020): L(N) = (N_c/N)^α_N, L(D) = (D_c/D)^α_D and
L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D, with N the non-embedding parameter count.

The one-variable laws are straight lines in log-log space (fitted on every point: exclude
the points that are data- or size-limited first). The joint law is fitted by least squares
on log loss, started from the one-variable fits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from scaling.fitting.base import FitError, Law
from scaling.fitting.minimize import multistart
from scaling.fitting.powerlaw import fit_power_law


class KaplanLaw(Law):
    """N is ``params_nonembedding`` where the points carry it (Kaplan's convention)."""

    law = "kaplan"
    formula = "L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D"
    answers = frozenset({"loss"})

    def loss(self, params, tokens, sample=None, **covariates):
        p = sample or self.params
        N, D = np.asarray(params, float), np.asarray(tokens, float)
        return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]

    def sizes(self, frame):
        return frame[self.details.get("N", "params")]

    def _bootstrap_frame(self, points):
        frame = points.frame.copy()
        if "params_nonembedding" in frame:
            frame["params"] = frame["params_nonembedding"].astype(float)
        return frame

    def _fit(self, points):
        frame = self._bootstrap_frame(points)
        if len(frame) < 4 or frame["params"].nunique() < 2 or frame["tokens"].nunique() < 2:
            raise FitError(
                f"{points.source}: the kaplan law needs at least 4 points with 2 or more "
                f"distinct sizes and token counts; got {len(frame)}"
            )
        k_n, e_n = fit_power_law(frame["params"], frame["loss"])  # L = N_c^α · N^-α
        k_d, e_d = fit_power_law(frame["tokens"], frame["loss"])
        one_variable = {
            "L(N)": {"N_c": _scale(k_n, e_n), "alpha_N": -e_n},
            "L(D)": {"D_c": _scale(k_d, e_d), "alpha_D": -e_d},
        }
        fitted = _joint(frame, _starts(frame), keep=12)
        if fitted is None:
            raise FitError(f"{points.source}: the joint Kaplan fit did not converge")
        params, objective = fitted
        details = {
            "one_variable": one_variable,
            "N": "params_nonembedding" if "params_nonembedding" in points.frame else "params",
        }
        return params, objective, details

    def _refit(self, frame, params):
        warm = [np.log(params["N_c"]), np.log(params["D_c"]), params["alpha_N"], params["alpha_D"]]
        result = _joint(frame, np.array([warm]))
        return result[0] if result else None


def _scale(k: float, e: float) -> float:
    """X_c of L = (X_c/X)^α from the power law L = k·X^e (α = −e): k^(−1/e), in log space,
    inf where it overflows, NaN where the loss does not fall with X (e ≥ 0)."""
    if e >= 0:
        return math.nan
    log_scale = -math.log(k) / e
    return math.exp(log_scale) if log_scale < 700 else math.inf


def _residual_fn(frame: pd.DataFrame):
    x, y, t = (np.log(frame[c].to_numpy(float)) for c in ("params", "tokens", "loss"))

    def residual(theta):
        log_nc, log_dc, alpha_n, alpha_d = theta
        return alpha_d * np.logaddexp((alpha_n / alpha_d) * (log_nc - x), log_dc - y) - t

    return residual


def _joint(
    frame: pd.DataFrame, starts: np.ndarray, keep: int | None = None
) -> tuple[dict[str, float], float] | None:
    """Least squares on log loss from the best ``keep`` starts (exponents kept positive)."""
    best = multistart(
        _residual_fn(frame),
        starts,
        method="least_squares",
        keep=keep,
        bounds=([-np.inf, -np.inf, 1e-4, 1e-4], np.inf),
        options={"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, "max_nfev": 5000},
    )
    if best is None:
        return None
    log_nc, log_dc, alpha_n, alpha_d = best.x
    params = {
        "N_c": float(np.exp(log_nc)),
        "alpha_N": float(alpha_n),
        "D_c": float(np.exp(log_dc)),
        "alpha_D": float(alpha_d),
    }
    return params, float(best.fun_value)


def _starts(frame: pd.DataFrame) -> np.ndarray:
    """A grid over exponents and scales around the largest size and token count."""
    log_n, log_d = np.log(frame["params"].max()), np.log(frame["tokens"].max())
    return np.array(
        [
            (log_n + dn, log_d + dd, an, ad)
            for dn in (0.0, 5.0, 10.0, 20.0)
            for dd in (0.0, 5.0, 10.0, 20.0)
            for an in (0.03, 0.1, 0.3, 1.0)
            for ad in (0.03, 0.1, 0.3, 1.0)
        ]
    )


def fit_kaplan(data, **settings: Any) -> KaplanLaw:
    """``KaplanLaw(**settings).fit(data)``."""
    return KaplanLaw(**settings).fit(data)
