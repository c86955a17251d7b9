"""The one bootstrap of every law: refits on resamples of its data, drawn the way the data
says (``Points``: by point, run or budget; ``Curves``: by run), and percentile intervals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scaling.fitting.errors import FitError


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def intervals(samples: list[dict[str, float]], level: float) -> dict[str, list[float]]:
    """The percentile interval of each parameter over the samples."""
    if not samples:
        return {}
    return {
        key: percentile_interval(np.array([s[key] for s in samples]), level) for key in samples[0]
    }


def bootstrap(
    data: Any,
    refit: Callable[[Any], dict[str, float] | None],
    n: int,
    unit: str = "points",
    seed: int = 0,
) -> tuple[list[dict[str, float]], list[int]]:
    """``n`` refits on resamples of ``data`` (``data.resample(unit, rng)``); returns the
    samples and the index of the resample each came from. A refit that returns None (no
    solution on that resample) is skipped and not counted; the indices keep the samples of two
    laws bootstrapped on the same resamples paired."""
    if n and unit not in data.units:
        raise FitError(
            f"{data.source}: {type(data).__name__.lower()} are resampled by "
            f"{' or '.join(data.units)}",
            param="bootstrap_unit",
            value=unit,
        )
    rng = np.random.default_rng(seed)
    samples, fitted = [], []
    for index in range(n):
        result = refit(data.resample(unit, rng))
        if result is not None:
            samples.append(result)
            fitted.append(index)
    return samples, fitted
