"""Checkpoints: model and optimizer (sharded, torch.distributed.checkpoint), the loop state and
every rank's RNG state, replaced atomically.

Layout: the run's checkpoint folder (``RunDir.checkpoint``) holds DCP shards, ``state.json``
(step, tokens, sampler position, wall time, best losses, tracker id) and ``rng-<rank>.pt``.
A new checkpoint is written to ``<folder>.tmp`` and swapped in by renames; a crash between
the renames leaves ``<folder>.old``, which ``latest`` then uses. A checkpoint without
``state.json`` (written last) is incomplete and never loaded.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def _single_process_quiet():
    """DCP warns on every save and load without a process group; one process is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _barrier() -> None:
    if _dist():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if _dist() else 0


def _siblings(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")


def latest(folder: Path) -> Path | None:
    """The complete checkpoint of ``folder`` (or of the one a crashed swap left aside)."""
    for path in (folder, _siblings(folder)[1]):
        if (path / "state.json").is_file():
            return path
    return None


def save(folder: Path, model, optimizer, state: dict[str, Any]) -> None:
    """Every rank calls this; rank 0 swaps the finished checkpoint into ``folder``."""
    final = folder
    tmp, old = _siblings(folder)
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    with _single_process_quiet():
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng-{_rank()}.pt")
    _barrier()
    if _rank() == 0:
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()


def load(path: Path, model, optimizer) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG; return the loop state."""
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    with _single_process_quiet():
        dcp.load(state, checkpoint_id=str(path))
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optim"],
        options=StateDictOptions(strict=True),
    )
    rng_path = path / f"rng-{_rank()}.pt"
    if rng_path.is_file():
        rng = torch.load(rng_path, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return json.loads((path / "state.json").read_text())
