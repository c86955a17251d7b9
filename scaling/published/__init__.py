"""Published points bundled with the package, each with where it comes from: what a lab fits
before it trusts a tool with its own runs.

``load(name)`` is a table of ``params``, ``tokens``, ``flops``, ``loss`` that
``prepare_points`` takes; ``provenance(name)`` says which paper, which figure, who read it off
and how; ``scaling fit builtin:NAME`` and ``scaling published`` reach them by name. This module
imports nothing heavy, so a command line checks a name at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scaling.errors import FitError  # the ground's: no import back up into scaling.fitting

if TYPE_CHECKING:
    import pandas as pd

PREFIX = "builtin:"


@dataclass(frozen=True)
class Dataset:
    name: str
    summary: str
    params_axis: str  # a key of scaling.published.chinchilla.PARAMS_AXES

    def points(self) -> pd.DataFrame:
        from scaling.published import chinchilla

        return chinchilla.figure4_points(self.params_axis)


DATASETS = {
    d.name: d
    for d in (
        Dataset(
            "chinchilla",
            "Hoffmann et al. (2022) Fig. 4, 245 runs as Epoch AI extracted and fitted them",
            "epoch-2024",
        ),
        Dataset(
            "chinchilla-corrected",
            "the same 245 runs, parameter axis corrected (models 2-9% larger)",
            "corrected",
        ),
    )
}


def is_builtin(source: object) -> bool:
    return str(source).startswith(PREFIX)


def unknown(name: str) -> str | None:
    """The one-line answer to a name that is not bundled; None for one that is."""
    bare = name.removeprefix(PREFIX)
    if bare in DATASETS:
        return None
    return f"{PREFIX}{bare}: no such published dataset; bundled: " + ", ".join(
        f"{PREFIX}{n}" for n in DATASETS
    )


def dataset(name: str) -> Dataset:
    """The dataset called ``name`` (with or without ``builtin:``); ``FitError`` if unknown."""
    message = unknown(name)
    if message:
        raise FitError(message)
    return DATASETS[name.removeprefix(PREFIX)]


def load(name: str) -> pd.DataFrame:
    return dataset(name).points()


def provenance(name: str) -> dict[str, Any]:
    from scaling.published import chinchilla

    found = dataset(name)
    record = json.loads((chinchilla.HERE / chinchilla.PROVENANCE).read_text())
    (top, _), (bottom, _) = chinchilla.PARAMS_AXES[found.params_axis]
    axis = f"100B at svg_y {top}, 100M at svg_y {bottom} ({found.params_axis})"
    return {"name": found.name, "summary": found.summary, "params_axis": axis, **record}
