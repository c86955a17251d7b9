"""Published points bundled with the package, each with where it comes from: what a lab fits
before it trusts a tool with its own runs.

``load(name)`` is a table of ``params``, ``tokens``, ``flops``, ``loss`` (and, where the
dataset has them, ``budget``, ``unique_tokens``, ``run_id``) that ``prepare_points`` takes (the
loss curves of ``multipower-*``: ``run, step, lr, loss``, what the loss-curve laws take);
``provenance(name)`` says which paper, which figure or file, who read it and how;
``scaling fit builtin:NAME`` and ``scaling published`` reach them by name. Each dataset's files
are read by one module of this package (``chinchilla``, ``llama3``, ``datablations``,
``multipower``), which this one imports only when a dataset is loaded: it imports nothing heavy
itself, so a command line checks a name at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from scaling.errors import FitError  # the ground's: no import back up into scaling.fitting

if TYPE_CHECKING:
    import pandas as pd

PREFIX = "builtin:"


@dataclass(frozen=True)
class Dataset:
    name: str
    summary: str
    module: str  # the module of scaling.published that reads this dataset's files
    variant: str  # what that module's points() and provenance() take

    def _reader(self) -> Any:
        return import_module(f"scaling.published.{self.module}")

    def points(self) -> pd.DataFrame:
        return self._reader().points(self.variant)

    def provenance(self) -> dict[str, Any]:
        return self._reader().provenance(self.variant)


DATASETS = {
    d.name: d
    for d in (
        Dataset(
            "chinchilla",
            "Hoffmann et al. (2022) Fig. 4, 245 runs as Epoch AI extracted and fitted them",
            "chinchilla",
            "epoch-2024",
        ),
        Dataset(
            "chinchilla-corrected",
            "the same 245 runs, parameter axis corrected (models 2-9% larger)",
            "chinchilla",
            "corrected",
        ),
        Dataset(
            "llama3",
            "Dubey et al. (2024) Fig. 2, 133 IsoFLOP runs (10 budgets, 6e18-1e22; N = C/6D)",
            "llama3",
            "figure2",
        ),
        Dataset(
            "datablations",
            "Muennighoff et al. (2023), the 182 runs of their data-constrained fit (Apache-2.0)",
            "datablations",
            "fit-182",
        ),
        Dataset(
            "datablations-all",
            "the same study's 296 finished runs, outliers included (Apache-2.0)",
            "datablations",
            "all-296",
        ),
        *(
            Dataset(
                f"multipower-{size.lower()}",
                f"Luo et al. (2025), loss curves of their {size} model: the 3 curves of their "
                "fit (run, step, lr, loss; MIT)",
                "multipower",
                size,
            )
            for size in ("25M", "100M", "400M")
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
    """Paper, source, extraction, licence, procedure and the published fit of ``name``."""
    found = dataset(name)
    return {"name": found.name, "summary": found.summary, **found.provenance()}
