"""y = k · x^e, fitted by least squares in log space; the building block of Approaches 1 and 2
and of the hyperparameter laws."""

from __future__ import annotations

import numpy as np

from scaling.fitting.base import FitError


def fit_power_law(x, y) -> tuple[float, float]:
    """(k, e) of y = k·x^e by least squares on (log x, log y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(np.log(x)) == 0:
        raise FitError(f"a power law needs at least 2 distinct x values; got {len(np.unique(x))}")
    e, log_k = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(log_k)), float(e)


def evaluate(k: float, e: float, x):
    return k * np.asarray(x, float) ** e


def invert(k: float, e: float, y):
    """x such that k·x^e = y."""
    return (np.asarray(y, float) / k) ** (1 / e)
