"""y = k · x^e, fitted by least squares in log space; the building block of Approaches 1 and 2
and of the hyperparameter laws."""

from __future__ import annotations

import numpy as np

from scaling.fitting.errors import FitError


def fit_power_law(x, y, sigma=None) -> tuple[float, float]:
    """(k, e) of y = k·x^e by least squares on (log x, log y); ``sigma``: the spread of each
    log y, weighting each point by 1/sigma (Porian et al.'s weighted fit of the optima)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(np.log(x)) == 0:
        raise FitError(f"a power law needs at least 2 distinct x values; got {len(np.unique(x))}")
    w = None if sigma is None else 1 / np.maximum(np.asarray(sigma, float), 1e-12)
    e, log_k = np.polyfit(np.log(x), np.log(y), 1, w=w)
    return float(np.exp(log_k)), float(e)


def evaluate(k: float, e: float, x):
    return k * np.asarray(x, float) ** e


def invert(k: float, e: float, y):
    """x such that k·x^e = y."""
    return (np.asarray(y, float) / k) ** (1 / e)
