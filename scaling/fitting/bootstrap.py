"""Bootstrap resampling over points, runs or budgets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from scaling.fitting.base import BOOTSTRAP_UNITS as UNITS
from scaling.fitting.base import FitError, percentile_interval


def resample(frame: pd.DataFrame, unit: str, rng: np.random.Generator) -> pd.DataFrame:
    """A bootstrap sample of ``frame``: rows, or whole runs / budgets, drawn with replacement."""
    if unit == "points":
        return frame.iloc[rng.integers(0, len(frame), len(frame))]
    column = {"runs": "run_id", "budgets": "budget"}.get(unit)
    if column is None:
        raise FitError(f"must be one of {', '.join(UNITS)}", param="bootstrap_unit", value=unit)
    if column not in frame:
        raise FitError(f"the points have no {column!r} column", param="bootstrap_unit", value=unit)
    groups = list(frame.groupby(column, sort=True).indices.values())
    chosen = rng.integers(0, len(groups), len(groups))
    return frame.iloc[np.concatenate([groups[i] for i in chosen])]


def bootstrap(
    frame: pd.DataFrame,
    refit: Callable[[pd.DataFrame], dict[str, float] | None],
    n: int,
    unit: str = "points",
    seed: int = 0,
    level: float = 0.95,
) -> tuple[list[dict[str, float]], dict[str, list[float]], list[int]]:
    """``n`` refits on resamples; returns the samples, percentile intervals per key, and the
    index of the resample each sample came from. A refit that returns None (no solution on
    that resample) is skipped and not counted; the indices keep the samples of two laws
    bootstrapped on the same resamples paired."""
    rng = np.random.default_rng(seed)
    samples, fitted = [], []
    for index in range(n):
        result = refit(resample(frame, unit, rng))
        if result is not None:
            samples.append(result)
            fitted.append(index)
    intervals: dict[str, Any] = {}
    if samples:
        for key in samples[0]:
            intervals[key] = percentile_interval(np.array([s[key] for s in samples]), level)
    return samples, intervals, fitted
