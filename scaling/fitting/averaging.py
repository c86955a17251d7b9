"""A loss predicted by several laws at once, each weighted by how well it extrapolated.

Two forms of L(N, D) fitted to the same small study can disagree far more than either's
bootstrap interval admits: the interval measures the noise of the points, not the choice of
form. Averaging the forms, each weighted by the inverse of its backtest error (fitted without
the largest budget, asked about it), and drawing the interval from the mixture of their
bootstrap predictions carries that disagreement into the interval. (The plain mean of the forms
did better than these weights on the demo's first five seeds and worse on the next one:
BENCHMARKS.md.)

That interval is conservative: it spans both forms, while their average mostly cancels their
disagreement (on the demo's eleven seeds its 80% interval covered the holdout every time).
``paired_intervals`` gives the averaged prediction's own interval instead: when every law was
bootstrapped on the same resamples (same points, resampling settings and seed, no resample
skipped), the weighted mean of the laws' predictions on each resample is one draw of the
averaged prediction. On the demo's eleven seeds it covered the holdout about as often as its
level says (9/11 at 80%, 10/11 at 95%; BENCHMARKS.md), and the demo prints it, falling back on
the mixture where the samples cannot be paired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from scaling.fitting.base import Law
from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.errors import FitError


def backtest_weights(errors: Mapping[str, float]) -> dict[str, float]:
    """Weights proportional to 1 / backtest error, summing to 1."""
    if not errors or any(not np.isfinite(e) or e < 0 for e in errors.values()):
        raise FitError(f"backtest errors must be finite and non-negative; got {dict(errors)}")
    inverse = {name: 1.0 / max(error, 1e-12) for name, error in errors.items()}
    total = sum(inverse.values())
    return {name: value / total for name, value in inverse.items()}


def averaged_loss(
    laws: Mapping[str, Law],
    weights: Mapping[str, float],
    sizes: Mapping[str, float],
    tokens: float,
    levels: tuple[float, ...] = (0.8, 0.95),
) -> dict[str, Any]:
    """The weighted mean of the laws' losses at (N, D), each law taking the N it counts from
    ``sizes`` (``law.sizes``), and for each level the central interval of the mixture of the
    laws' bootstrap predictions (each sample weighted by its law's weight over its count).
    A law without bootstrap samples adds its point prediction with its whole weight."""
    by_law, values, sample_weights = {}, [], []
    for name, weight in weights.items():
        law = laws[name]
        by_law[name] = float(law.loss(float(law.sizes(sizes)), tokens))
        draws = list(_sample_losses(law, sizes, tokens)) or [by_law[name]]
        values.extend(draws)
        sample_weights.extend([weight / len(draws)] * len(draws))
    loss = sum(weights[name] * by_law[name] for name in weights)
    intervals = {
        level: [
            _weighted_quantile(values, sample_weights, (1 - level) / 2),
            _weighted_quantile(values, sample_weights, (1 + level) / 2),
        ]
        for level in levels
    }
    return {"loss": float(loss), "by_law": by_law, "weights": dict(weights), "intervals": intervals}


def _weighted_quantile(values, weights, q: float) -> float:
    """The q-quantile of a weighted sample (midpoint rule on the cumulative weights)."""
    order = np.argsort(values)
    v, w = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    cumulative = (np.cumsum(w) - 0.5 * w) / w.sum()
    return float(np.interp(q, cumulative, v))


def paired_intervals(
    laws: Mapping[str, Law],
    weights: Mapping[str, float],
    sizes: Mapping[str, float],
    tokens: float,
    levels: tuple[float, ...] = (0.8, 0.95),
) -> dict[float, list[float]] | None:
    """For each level the central interval of the weighted mean of the laws' losses at (N, D)
    over the bootstrap resamples they share; None where they share none (see
    ``shared_resamples``)."""
    shared = shared_resamples([laws[name] for name in weights])
    if shared is None:
        return None
    draws = sum(
        w * _sample_losses(laws[name], sizes, tokens, shared) for name, w in weights.items()
    )
    return {level: percentile_interval(draws, level) for level in levels}


def _sample_losses(
    law: Law, sizes: Mapping[str, float], tokens: float, resamples: list[int] | None = None
) -> np.ndarray:
    """The law's loss at (N, D) on each of its bootstrap samples (those of ``resamples``, by
    resample index, when given), N as the law counts it."""
    n = float(law.sizes(sizes))
    samples = law.samples_
    if resamples is not None:
        by_index = dict(zip(resample_indices(law), law.samples_, strict=True))
        samples = [by_index[i] for i in resamples]
    return np.array([float(law.loss(n, tokens, sample=s)) for s in samples])


def resample_indices(law: Law) -> list[int]:
    """The resample each of the law's bootstrap samples was fitted on (``resamples_``; all of
    them, in order, where a fit file of an earlier format did not record it)."""
    return list(law.resamples_ if law.resamples_ is not None else range(len(law.samples_)))


def shared_resamples(laws: list[Law]) -> list[int] | None:
    """The indices of the bootstrap resamples every law was fitted on, when the laws were
    bootstrapped on the same resamples (the same points by digest, the same resampling
    settings and seed); None when they were not, or share none."""
    if not laws or any(not law.samples_ for law in laws):
        return None
    keys = ("bootstrap_samples", "bootstrap_unit", "seed")
    first = laws[0]
    same = all(
        law.points_digest_ == first.points_digest_
        and all(getattr(law, key) == getattr(first, key) for key in keys)
        # fewer samples than resamples, and no record of which: they cannot be paired
        and law.resamples_ is not None
        for law in laws
    )
    if not same:
        return None
    shared = sorted(set.intersection(*(set(resample_indices(law)) for law in laws)))
    return shared or None


def bootstrap_paired(laws: list[Law]) -> bool:
    """Whether the laws' bootstrap samples can be paired resample by resample."""
    return shared_resamples(laws) is not None
