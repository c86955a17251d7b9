"""A figure's axis as two of its ticks: (coordinate, value). Coordinates are the SVG's own
(y grows downwards); a log axis is linear in log10 of the value."""

from __future__ import annotations

import numpy as np

Axis = tuple[tuple[float, float], tuple[float, float]]


def log_axis(coordinate, axis: Axis) -> np.ndarray:
    """Values at SVG ``coordinate`` on the log axis through two ticks."""
    (c0, v0), (c1, v1) = axis
    return v0 * (v1 / v0) ** ((np.asarray(coordinate, dtype=float) - c0) / (c1 - c0))


def linear_axis(coordinate, axis: Axis) -> np.ndarray:
    """Values at SVG ``coordinate`` on the linear axis through two ticks."""
    (c0, v0), (c1, v1) = axis
    return v0 + (v1 - v0) * (np.asarray(coordinate, dtype=float) - c0) / (c1 - c0)
