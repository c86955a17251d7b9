"""Kaplan et al. (2020): L(N) = (N_c/N)^α_N, L(D) = (D_c/D)^α_D and
L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D, with N the non-embedding parameter count.

The one-variable laws are straight lines in log-log space (fitted on every point: exclude
the points that are data- or size-limited first). The joint law is fitted by least squares
on log loss, started from the one-variable fits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from scaling.fitting.base import Fit, Law
from scaling.fitting.errors import FitError, require_varying
from scaling.fitting.minimize import multistart
from scaling.fitting.points import Points, as_points
from scaling.fitting.powerlaw import fit_power_law

if TYPE_CHECKING:
    import pandas as pd


class KaplanLaw(Law):
    """N is ``params_nonembedding`` where the points carry it (Kaplan's convention): the law
    is fitted on points sized so (``compute_.size`` says which N it takes).

    What the points identify, else the fit is refused: 4 or more points with 2 or more
    distinct sizes and token counts, losses that differ, and a joint fit whose scales N_c, D_c
    are finite and whose exponents stay off their floor (``MIN_EXPONENT``: a loss that does
    not fall with N or D drives them there). A term that vanishes at every point (loss
    against N alone) is flagged in ``details["warnings"]``: its scale and exponent are not
    identified, though the law's losses are."""

    law = "kaplan"
    formula = "L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D"
    answers = frozenset({"loss"})
    parameters = ("N_c", "alpha_N", "D_c", "alpha_D")
    positive_params = parameters

    def loss(self, params, tokens, sample=None, **covariates):
        p = sample or self.params_
        N, D = np.asarray(params, float), np.asarray(tokens, float)
        return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]

    def _data(self, data) -> Points:
        """The points with N counted as Kaplan counts it, where they carry that count."""
        return as_points(data).sized_by("non_embedding")

    def _fit(self, points) -> Fit:
        frame = points.frame
        if len(frame) < 4 or frame["params"].nunique() < 2 or frame["tokens"].nunique() < 2:
            raise FitError(
                f"{points.source}: the kaplan law needs at least 4 points with 2 or more "
                f"distinct sizes and token counts; got {len(frame)}"
            )
        require_varying(frame["loss"], points.source, self.law)
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
        if reason := _collapsed(params):
            raise FitError(f"{points.source}: {reason}")
        details: dict[str, Any] = {"one_variable": one_variable}
        if warnings := _vanished_terms(frame, params):
            details["warnings"] = warnings
        return Fit(params, objective, details)

    def _refit(self, points, found: Fit):
        p = found.params
        warm = [np.log(p["N_c"]), np.log(p["D_c"]), p["alpha_N"], p["alpha_D"]]
        result = _joint(points.frame, np.array([warm]))
        return result[0] if result and not _collapsed(result[0]) else None


MIN_EXPONENT = 1e-4  # the joint fit's floor for alpha_N and alpha_D (they divide)
TERM_FLOOR = 1e-6  # a term below this share of the bracket everywhere is not identified


def _collapsed(params: dict[str, float]) -> str | None:
    """Why a joint fit says nothing of the law, or None: a scale that overflowed, or an
    exponent on its floor (the loss does not fall along that axis in these points)."""
    for scale in ("N_c", "D_c"):
        if not math.isfinite(params[scale]):
            return f"the joint fit's {scale} overflowed: the points do not identify it"
    for exponent in ("alpha_N", "alpha_D"):
        if params[exponent] <= MIN_EXPONENT * (1 + 1e-6):
            return (
                f"the joint fit's {exponent} sits on its floor {MIN_EXPONENT:g}: the loss does not "
                f"fall with {'N' if exponent == 'alpha_N' else 'D'} in these points"
            )
    return None


def _vanished_terms(frame: pd.DataFrame, p: dict[str, float]) -> list[str]:
    """A warning for each term of the joint law that is below ``TERM_FLOOR`` of the bracket
    at every point: the points show no dependence on that axis, and its scale and exponent
    are not identified (alpha_D then cancels: the law is L(N) = (N_c/N)^alpha_N alone)."""
    N, D = frame["params"].to_numpy(float), frame["tokens"].to_numpy(float)
    n_term = (p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"])
    d_term = p["D_c"] / D
    warnings = []
    for term, share, names, axis in (
        ("(N_c/N)^(alpha_N/alpha_D)", n_term / (n_term + d_term), "N_c and alpha_N", "N"),
        ("D_c/D", d_term / (n_term + d_term), "D_c and alpha_D", "D"),
    ):
        if np.max(share) < TERM_FLOOR:
            warnings.append(
                f"the term {term} is below {TERM_FLOOR:g} of the law at every point: the loss "
                f"does not depend on {axis} in these points, and {names} are not identified"
            )
    return warnings


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
        bounds=([-np.inf, -np.inf, MIN_EXPONENT, MIN_EXPONENT], np.inf),
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


def fit_kaplan(data, **parameters: Any) -> KaplanLaw:
    """``KaplanLaw(**parameters).fit(data)``."""
    return KaplanLaw(**parameters).fit(data)
