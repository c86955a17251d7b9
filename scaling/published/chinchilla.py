"""Hoffmann et al. (2022), Figure 4 (left): 245 training runs read off the figure's vector
graphics the way Epoch AI read them for their replication (Besiroglu et al. 2024).

The bundled files hold what the figure says, not what anyone derived from it: each marker's
centre in SVG points and its colour, and the colour bar's pixel rows. The points follow here
from the axes' tick positions, so the two calibrations of the parameter axis (Epoch AI's
published one and the corrected one) come from the same measurements. Provenance, and the
checks against Epoch AI's published numbers: ``chinchilla_figure4.json``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pandas as pd

from scaling.published.axes import log_axis

HERE = files("scaling.published")
MARKERS = "chinchilla_figure4_markers.csv"
COLORBAR = "chinchilla_figure4_colorbar.csv"
PROVENANCE = "chinchilla_figure4.json"

# A log axis is two ticks: (SVG coordinate, value). SVG y grows downwards.
FLOPS_AXIS = ((83.856, 1e18), (294.452, 1e21))
PARAMS_AXES = {
    # Epoch AI's published points and fit: the 100M tick where their first reading put it
    "epoch-2024": ((26.872, 100e9), (319.125, 100e6)),
    # Derek Jones's correction (shape-of-code.com, 2024-04-28), on which the 40B tick lies too
    "corrected": ((26.872, 100e9), (322.703, 100e6)),
}
LOSS_AXIS = ((26.872, 5.0), (332.671, 2.0))
COLORBAR_TOP = 26.0  # SVG y of the colour bar image's first pixel row (one row per point)


def loss_of_colour() -> pd.Series:
    """Loss by colour: the median loss of the colour bar's rows of that exact colour."""
    bar = pd.read_csv(HERE / COLORBAR)
    bar["loss"] = log_axis(COLORBAR_TOP + bar["pixel_row"], LOSS_AXIS)
    return bar.groupby("fill")["loss"].median()


def figure4_points(params_axis: str = "epoch-2024") -> pd.DataFrame:
    """The 245 runs as params, tokens, flops, loss (tokens = FLOPs / 6N, as Epoch AI), with
    the marker each came from."""
    markers = pd.read_csv(HERE / MARKERS)
    params = log_axis(markers["svg_y"], PARAMS_AXES[params_axis])
    flops = log_axis(markers["svg_x"], FLOPS_AXIS)
    loss = markers["fill"].map(loss_of_colour())
    if loss.isna().any():  # a colour missing from the bar would be a broken package file
        missing = sorted(set(markers["fill"][loss.isna()]))
        raise ValueError(f"{MARKERS}: colours not in the colour bar: {missing}")
    return pd.DataFrame(
        {
            "params": params,
            "tokens": flops / (6 * params),
            "flops": flops,
            "loss": loss.to_numpy(),
            "marker": markers["marker"],
        }
    )


def points(params_axis: str) -> pd.DataFrame:
    """The dataset's points (``scaling.published.load``): ``figure4_points``."""
    return figure4_points(params_axis)


def provenance(params_axis: str) -> dict[str, Any]:
    """Where the points come from, with the parameter axis ``params_axis`` uses."""
    record = json.loads((HERE / PROVENANCE).read_text())
    (top, _), (bottom, _) = PARAMS_AXES[params_axis]
    axis = f"100B at svg_y {top}, 100M at svg_y {bottom} ({params_axis})"
    return {"params_axis": axis, **record}
