"""Muennighoff et al. (2023), "Scaling Data-Constrained Language Models": the runs behind
their data-constrained scaling law, from their repository huggingface/datablations
(Apache-2.0), bundled as the data themselves.

The notebook ``utils/parametric_fit.ipynb`` keeps its runs in dict literals (validation loss,
parameters and tokens by run name); the bundled CSVs are those literals, read without running
the notebook, with each run name decoded by the notebook's own rule. ``fit-182``: the 182 runs
of the published fit (outliers removed, as the notebook's cell "Custom data loading with
outliers removed"); ``all-296``: every finished run. Provenance: ``datablations.json``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pandas as pd

HERE = files("scaling.published")
FILES = {
    "fit-182": "datablations_fit_points_182.csv",
    "all-296": "datablations_all_runs.csv",
}
PROVENANCE = "datablations.json"
FLOPS_PER_PARAM_TOKEN = 6.0  # the paper's C = 6·N·D


def _file(variant: str) -> str:
    if variant not in FILES:
        raise ValueError(f"datablations: no variant {variant!r} (one of {', '.join(FILES)})")
    return FILES[variant]


def points(variant: str) -> pd.DataFrame:
    """The runs as params, tokens (repeats included), unique_tokens, flops (6·N·D), loss (the
    validation loss), epochs (tokens / unique_tokens) and run_id (the notebook's run name)."""
    runs = pd.read_csv(HERE / _file(variant))
    return pd.DataFrame(
        {
            "params": runs["params"],
            "tokens": runs["tokens"],
            "unique_tokens": runs["unique_tokens"],
            "flops": FLOPS_PER_PARAM_TOKEN * runs["params"] * runs["tokens"],
            "loss": runs["val_loss"],
            "epochs": runs["epochs"],
            "run_id": runs["run_name"],
        }
    )


def provenance(variant: str) -> dict[str, Any]:
    """Where the runs come from; ``file`` is the bundled table of this variant."""
    return {"file": _file(variant), **json.loads((HERE / PROVENANCE).read_text())}
