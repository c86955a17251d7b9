"""Dubey et al. (2024), "The Llama 3 Herd of Models", Figure 2 ("Scaling law IsoFLOPs
curves"): 133 training runs at 10 compute budgets, read off the figure's vector graphics as
Eric Czech published it (github.com/eric-czech/llama3_isoflop_extraction).

The figure plots validation loss (a linear axis) against training tokens (a log axis), one
colour per budget. The bundled files hold what the figure says: each marker's centre in SVG
points and its colour, the legend (colour and label of each budget) and the paper's own
per-budget minima (the diamonds it draws). The points follow here from the axes' grid lines;
the figure gives no model sizes, so ``params`` = C / (6·D), the convention of the paper's
C = 6·N·D. Provenance, and the checks against the published digitisation:
``llama3_figure2.json``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd

from scaling.published.axes import Axis, linear_axis, log_axis

HERE = files("scaling.published")
MARKERS = "llama3_figure2_markers.csv"
LEGEND = "llama3_figure2_legend.csv"
OPTIMA = "llama3_figure2_optima.csv"
PROVENANCE = "llama3_figure2.json"

# The grid lines are drawn in their own coordinates, mapped to the SVG's by
# matrix(0.998403, 0, 0, -0.998403, 0.0451608, 325.956605): x' = 0.998403·x + 0.0451608,
# y' = 325.956605 - 0.998403·y. Markers and diamonds are placed in the SVG's coordinates.
GRID_SCALE, GRID_X, GRID_Y = 0.998403, 0.0451608, 325.956605
TOKENS_GRID = {1e10: 172.15941, 1e11: 293.924142, 1e12: 415.688873}  # vertical lines' x
LOSS_GRID = {  # horizontal lines' y
    0.70: 68.706933,
    0.75: 117.757908,
    0.80: 166.808883,
    0.85: 215.855946,
    0.90: 264.906921,
    0.95: 313.957896,
}
FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6·N·D: the figure's budgets and tokens give N


def tokens_ticks() -> dict[float, float]:
    """SVG x of each token tick (its grid line)."""
    return {value: GRID_SCALE * x + GRID_X for value, x in TOKENS_GRID.items()}


def loss_ticks() -> dict[float, float]:
    """SVG y of each loss tick (its grid line)."""
    return {value: GRID_Y - GRID_SCALE * y for value, y in LOSS_GRID.items()}


def _outermost(ticks: dict[float, float]) -> Axis:
    low, high = min(ticks), max(ticks)
    return (ticks[low], low), (ticks[high], high)


TOKENS_AXIS = _outermost(tokens_ticks())  # through 1e10 and 1e12 (1e11 lies on it)
LOSS_AXIS = _outermost(loss_ticks())  # through 0.70 and 0.95 (the others lie on it)


def budgets() -> pd.Series:
    """Compute budget (FLOPs) by marker colour, from the legend's labels."""
    legend = pd.read_csv(HERE / LEGEND, dtype={"label": str})
    return pd.Series(legend["label"].astype(float).to_numpy(), index=legend["fill"])


def figure2_points(tokens_axis: Axis = TOKENS_AXIS, loss_axis: Axis = LOSS_AXIS) -> pd.DataFrame:
    """The 133 runs as params, tokens, flops, budget, loss, with the marker each came from
    (its place in the figure's drawing order). ``flops`` is the run's budget as the legend
    labels it; ``params`` = flops / (6·tokens)."""
    markers = pd.read_csv(HERE / MARKERS)
    budget = markers["fill"].map(budgets())
    if budget.isna().any():  # a colour missing from the legend would be a broken package file
        missing = sorted(set(markers["fill"][budget.isna()]))
        raise ValueError(f"{MARKERS}: colours not in the legend: {missing}")
    tokens = log_axis(markers["svg_x"], tokens_axis)
    flops = budget.to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "params": flops / (FLOPS_PER_PARAM_TOKEN * tokens),
            "tokens": tokens,
            "flops": flops,
            "budget": flops,
            "loss": linear_axis(markers["svg_y"], loss_axis),
            "marker": markers["marker"],
        }
    )


def figure2_optima() -> pd.DataFrame:
    """The paper's compute-optimal point of each budget, as the figure draws it (a diamond at
    the minimum of each budget's parabola): budget, tokens, loss, params (C/6D). The diamonds
    are drawn from the largest budget down, so diamond i marks the i-th budget from the top;
    their x grows with the budget in the same order."""
    diamonds = pd.read_csv(HERE / OPTIMA).sort_values("diamond")
    ordered = np.sort(budgets().to_numpy())[::-1]
    if len(ordered) != len(diamonds):
        raise ValueError(f"{OPTIMA}: {len(diamonds)} diamonds for {len(ordered)} budgets")
    tokens = log_axis(diamonds["svg_x"], TOKENS_AXIS)
    frame = pd.DataFrame(
        {
            "budget": ordered,
            "tokens": tokens,
            "loss": linear_axis(diamonds["svg_y"], LOSS_AXIS),
            "params": ordered / (FLOPS_PER_PARAM_TOKEN * tokens),
        }
    )
    return frame.iloc[::-1].reset_index(drop=True)


def _check(variant: str) -> None:
    if variant != "figure2":
        raise ValueError(f"llama3: no variant {variant!r} (one: figure2)")


def points(variant: str) -> pd.DataFrame:
    """The dataset's points (``scaling.published.load``); one variant, ``figure2``."""
    _check(variant)
    return figure2_points()


def provenance(variant: str) -> dict[str, Any]:
    """Where the points come from, with the axes' calibration."""
    _check(variant)
    record = json.loads((HERE / PROVENANCE).read_text())
    (x0, v0), (x1, v1) = TOKENS_AXIS
    (y0, l0), (y1, l1) = LOSS_AXIS
    axes = f"tokens {v0:g} at svg_x {x0:.6f}, {v1:g} at {x1:.6f} (log); "
    axes += f"loss {l0:g} at svg_y {y0:.6f}, {l1:g} at {y1:.6f} (linear)"
    return {"axes": axes, **record}
