"""Luo et al. (2025), "A Multi-Power Law for Loss Curve Prediction Across Learning Rate
Schedules" (ICLR 2025, arXiv:2503.12811): the loss curves of their repository
thu-yao-01-luo/MultiPowerLaw (MIT), ``loss_curve_repo/csv_{25,100,400}/*.csv`` at commit
8da9f1902602f3391b971a811e3cc51604541769, bundled as they are in one table
(``multipower_losses.csv``: size, run, step, lr, loss; a loss every 128 steps or so).

The lr of every step is not in those files (their ``lr`` column is the lr at the logged step
only): the repository's loader rebuilds it from each curve's name (``src/data_loader.py``)
with its schedules (``src/lr_schedules.py``), ported below, so that ``curves`` gives the
table the loss-curve laws read: run, step, lr, loss, one row per step from 0 (warm-up of 2160
steps from lr 0, peak 3e-4), loss empty where none was logged. As the loader does, a curve
logged at step 24000 is cut below it. Provenance: ``multipower.json``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd

HERE = files("scaling.published")
LOSSES = "multipower_losses.csv"
PROVENANCE = "multipower.json"
SIZES = ("25M", "100M", "400M")
# src/config.py: the curves the paper fits on, and those it predicts
TRAIN = ("cosine_24000", "constant_24000", "wsdcon_9")
TEST = (
    "constant_72000",
    "cosine_72000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_18",
)
WARMUP, PEAK, END = 2160, 3e-4, 3e-5


def _warmup() -> np.ndarray:
    return np.linspace(0, PEAK, WARMUP)


def schedule(name: str) -> np.ndarray:
    """The lr of every step of the curve called ``name`` (``src/data_loader.py``,
    ``src/lr_schedules.py``; linear warm-up, ``const_warmup=False``)."""
    kind, *rest = name.split("_")
    if kind == "cosine":
        total = int(rest[0])
        step = np.arange(total)[WARMUP:]
        decay = END + 0.5 * (PEAK - END) * (1 + np.cos(np.pi * (step - WARMUP) / (total - WARMUP)))
        return np.concatenate([_warmup(), decay])
    if kind == "constant":
        return np.concatenate([_warmup(), np.full(int(rest[0]) - WARMUP, PEAK)])
    if kind == "wsdcon":  # two stages: 3e-4 to step 8000, then int(rest)·1e-5, 16000 steps
        low = int(rest[0]) * 1e-5
        return np.concatenate([_warmup(), np.full(8000 - WARMUP, PEAK), np.full(8000, low)])
    if kind in ("wsd", "wsdld"):
        decay, total = int(rest[0]), int(rest[1])
        step = np.arange(total)[decay:]
        if kind == "wsd":  # geometric from the peak to the end
            tail = PEAK ** ((total - step) / (total - decay)) * END ** (
                (step - decay) / (total - decay)
            )
        else:  # linear
            tail = PEAK * (1 - (step - decay) / (total - decay)) + END * (step - decay) / (
                total - decay
            )
        return np.concatenate([_warmup(), np.full(decay - WARMUP, PEAK), tail])
    raise ValueError(f"multipower: no schedule for curve {name!r}")


def losses() -> pd.DataFrame:
    """The bundled table as it is: size, run, step, lr, loss."""
    return pd.read_csv(HERE / LOSSES)


def curves(size: str, runs: tuple[str, ...] = TRAIN + TEST) -> pd.DataFrame:
    """The curves ``runs`` of model ``size`` as run, step, lr, loss (one row per step)."""
    if size not in SIZES:
        raise ValueError(f"multipower: no size {size!r} (one of {', '.join(SIZES)})")
    table = losses()
    table = table[table["size"] == size]
    frames = []
    for run in runs:
        logged = table[table["run"] == run]
        if logged["step"].max() == 24000:  # src/data_loader.py: truncated below 24000
            logged = logged[logged["step"] < 24000]
        lr = schedule(run)
        loss = np.full(len(lr), np.nan)
        loss[logged["step"].to_numpy()] = logged["loss"].to_numpy()
        frames.append(
            pd.DataFrame({"run": run, "step": np.arange(len(lr)), "lr": lr, "loss": loss})
        )
    return pd.concat(frames, ignore_index=True)


def points(variant: str) -> pd.DataFrame:
    """``builtin:multipower-25m`` and the others: the paper's three fitting curves."""
    return curves(variant, TRAIN)


def provenance(variant: str) -> dict[str, Any]:
    return {"file": LOSSES, "size": variant, **json.loads((HERE / PROVENANCE).read_text())}


def optimal_schedules() -> dict[str, Any]:
    """The repository's optimised schedules (``optimized_schedules/*.npy``, every 100th step
    after the warm-up and the last) with the set-up and final losses of ``src/optimization.py``
    (its own objective; see ``fitting.optimal_schedule``)."""
    return json.loads((HERE / PROVENANCE).read_text())["published_optimal_schedules"]
