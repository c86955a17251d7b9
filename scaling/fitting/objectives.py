"""What several laws minimise or solve, in one place: the robust losses on residuals (Huber,
L1, L2) and the vertex of a parabola (an IsoFLOP profile's minimum, a hyperparameter sweep's
optimum). Numpy only."""

from __future__ import annotations

import numpy as np

from scaling.fitting.errors import all_equal

LOSSES = ("huber", "l2", "l1")
HUBER_DELTA = 1e-3  # Hoffmann et al.'s δ on log loss


def rho(r: np.ndarray, loss: str = "huber", delta: float = HUBER_DELTA):
    """Per-residual loss and its derivative: ``l2`` ½r², ``huber`` with ``delta``, ``l1`` a
    Huber loss whose quadratic zone vanishes (1e-6)."""
    if loss == "l2":
        return 0.5 * r * r, r
    d = 1e-6 if loss == "l1" else delta
    small = np.abs(r) <= d
    value = np.where(small, 0.5 * r * r, d * (np.abs(r) - 0.5 * d))
    return value, np.where(small, r, d * np.sign(r))


def parabola(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(c2, c1, c0) of the least-squares parabola y = c2·x² + c1·x + c0."""
    c2, c1, c0 = np.polyfit(x, y, 2)
    return float(c2), float(c1), float(c0)


def parabola_vertex(
    x: np.ndarray, y: np.ndarray, within: tuple[float, float] | None = None
) -> tuple[float | None, float | None, str]:
    """The minimum (x*, y*) of the least-squares parabola through (x, y), or (None, None, why
    not): fewer than 3 distinct x, values of y all equal (a parabola through them curves up or
    down by round-off), a parabola that opens downwards, or a vertex outside ``within``
    (default: the sampled x)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or len(np.unique(x)) < 3:
        return None, None, f"{len(np.unique(x))} distinct sizes (a parabola needs 3)"
    if all_equal(y):
        return None, None, "its losses are all equal (no minimum to find)"
    c2, c1, c0 = parabola(x, y)
    if c2 <= 0:
        return None, None, "the profile has no minimum (parabola opens downwards)"
    vertex = -c1 / (2 * c2)
    low, high = within if within is not None else (x.min(), x.max())
    if not low <= vertex <= high:
        return None, None, "the minimum lies outside the sampled sizes"
    return float(vertex), float(c0 - c1 * c1 / (4 * c2)), ""
