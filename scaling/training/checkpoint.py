"""Checkpoints: model and optimizer (sharded, torch.distributed.checkpoint), the loop state and
every rank's RNG state, replaced atomically.

Layout: the run's checkpoint folder (``RunDir.checkpoint``) holds DCP shards, ``state.json``
(step, tokens, sampler position, wall time, best losses, tracker id) and ``rng-<rank>.pt``.
A new checkpoint is written to ``<folder>.tmp``, fsynced, and swapped in by renames; the
previous one stays as ``<folder>.old``. A checkpoint without ``state.json`` (written last,
with the size of every file) is incomplete and never loaded; one whose files are missing or
cut is damaged, and ``resume`` falls back to the previous one with a warning.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import StorageMeta
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from scaling.config import ConfigError
from scaling.fileio import fsync_dir, write_json_atomic


def _dist() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def _single_process_quiet():
    """DCP warns on every save and load without a process group; one process is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


@contextlib.contextmanager
def _plain_errors(path: Path):
    """DCP's CheckpointException derives from BaseException, past every ``except Exception``:
    re-raise the first rank's own error (an OSError keeps its errno: a full disk is said as
    one), naming the checkpoint folder."""
    try:
        yield
    except CheckpointException as err:
        failure = next(iter(err.failures.values()))
        cause = failure[0] if isinstance(failure, tuple) else failure
        if isinstance(cause, OSError):
            raise OSError(cause.errno, cause.strerror, str(path)) from None
        raise RuntimeError(f"{path}: {type(cause).__name__}: {cause}") from None


def _barrier() -> None:
    if _dist():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if _dist() else 0


def _siblings(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")


def complete(folder: Path) -> list[Path]:
    """The complete checkpoints of ``folder``, newest first: the folder itself and the previous
    one kept beside it (``<folder>.old``)."""
    return [path for path in (folder, _siblings(folder)[1]) if (path / "state.json").is_file()]


def latest(folder: Path) -> Path | None:
    found = complete(folder)
    return found[0] if found else None


def _manifest(path: Path) -> dict[str, int]:
    return {
        str(p.relative_to(path)): p.stat().st_size
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "state.json"
    }


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(path)


def save(folder: Path, model, optimizer, state: dict[str, Any]) -> None:
    """Every rank calls this. The checkpoint is written to ``<folder>.tmp``, fsynced, and swapped
    in by renames by rank 0; the previous complete one stays as ``<folder>.old``, the fallback
    if the new one is found damaged. ``state.json``, written last, lists every file's size."""
    final = folder
    tmp, old = _siblings(folder)
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    with _single_process_quiet(), _plain_errors(tmp):
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng-{_rank()}.pt")
    _barrier()
    if _rank() == 0:
        _fsync_tree(tmp)
        write_json_atomic(tmp / "state.json", {**state, FILES_KEY: _manifest(tmp)})
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        fsync_dir(final.parent)
    _barrier()


FILES_KEY = "_files"  # in state.json: the size of every file of the checkpoint


class DamagedCheckpoint(Exception):
    pass


def verify(path: Path) -> dict[str, Any]:
    """The loop state of a complete checkpoint whose files are all there, at their sizes."""
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DamagedCheckpoint(f"{path / 'state.json'}: unreadable ({err})") from None
    for name, size in state.pop(FILES_KEY, {}).items():
        file = path / name
        if not file.is_file():
            raise DamagedCheckpoint(f"{file}: missing")
        if file.stat().st_size != size:
            raise DamagedCheckpoint(f"{file}: {file.stat().st_size} bytes, written as {size}")
    return state


def resume(folder: Path, model, optimizer) -> tuple[dict[str, Any], Path] | None:
    """Load the newest checkpoint of ``folder`` that verifies and loads, warning in one line
    about each damaged one; None when the run has none. A folder that holds no complete
    checkpoint (no state.json) is damage too: ConfigError, nothing touched.

    Rank 0 alone looks at the files and says which checkpoints to try, in order: on a shared
    file system each node's cache may see ``folder`` and ``.old`` differently just after a
    save's rename, and ranks that chose differently would load different steps or meet in
    mismatched collectives. A load that fails fails on every rank (DCP gathers the errors),
    so all ranks fall back together."""
    candidates, damage, message = _share_from_rank_0(lambda: _candidates(folder))
    if message is not None:
        raise ConfigError(message)
    if not candidates:
        return None
    for path in candidates:
        try:
            return load(path, model, optimizer), path
        except Exception as err:  # a damaged shard fails inside DCP with many kinds of error
            first_line = (str(err).splitlines() or [""])[0][:200]
            damage.append(f"{path}: {type(err).__name__}: {first_line}")
            if path is not candidates[-1]:
                warnings.warn(
                    f"damaged checkpoint, resuming from the previous one: {damage[-1]}",
                    stacklevel=2,
                )
    raise ConfigError(
        f"no checkpoint of {folder} loads ({'; '.join(damage)}); nothing was changed: move "
        "the folders aside to train the run from the start"
    )


def _candidates(folder: Path) -> tuple[list[Path], list[str], str | None]:
    """(the complete checkpoints whose files are all there, newest first; what was wrong
    with the others; the error to raise, if any)."""
    found = complete(folder)
    if not found:
        leftover = [p for p in (folder, _siblings(folder)[1]) if p.exists()]
        if leftover:
            return (
                [],
                [],
                (
                    f"{leftover[0]}: an incomplete checkpoint (no state.json) and no complete one; "
                    "nothing was changed: move the folder aside to train the run from the start"
                ),
            )
        return [], [], None
    good, damage = [], []
    for path in found:
        try:
            verify(path)
            good.append(path)
        except DamagedCheckpoint as err:
            damage.append(str(err))
            if path is not found[-1]:
                warnings.warn(
                    f"damaged checkpoint, resuming from the previous one: {err}", stacklevel=3
                )
    if not good:
        return (
            [],
            damage,
            (
                f"no checkpoint of {folder} loads ({'; '.join(damage)}); nothing was changed: "
                "move the folders aside to train the run from the start"
            ),
        )
    return good, damage, None


def _share_from_rank_0(decide):
    """``decide()`` on rank 0, its answer on every rank."""
    if not _dist():
        return decide()
    answer = [decide() if _rank() == 0 else None]
    dist.broadcast_object_list(answer, src=0)
    return answer[0]


def load(path: Path, model, optimizer) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG; return the loop state. Nothing in the
    folder can run code: see ``_DataOnlyReader``."""
    reader = _DataOnlyReader(str(path))
    reader.read_metadata()  # refused here in one line, not deep inside DCP's fallbacks
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    with _single_process_quiet(), _plain_errors(path):
        dcp.load(state, storage_reader=reader, planner=_DataOnlyPlanner())
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
    return verify(path)


# -- loading without running code ---------------------------------------------------------------
# DCP keeps its index (``.metadata``) as a pickle and the state's non-tensor values (the
# optimizer's lr, betas, ...) as pickles inside the shards, and loads both with a plain
# unpickler: a checkpoint folder from someone else could run any code on resume. Here the
# index is read by an unpickler that knows only the classes a DCP index is made of, and the
# values by torch's ``weights_only`` loader (tensors, numbers, strings, containers).

_INDEX_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "MetadataIndex",
        "StorageMeta",
        "TensorProperties",
        "TensorStorageMetadata",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},  # a layout by its name
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath"},
}


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        allowed = name in _INDEX_CLASSES.get(module, ()) or (
            module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        )
        if not allowed:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which no checkpoint index holds: not loaded"
            )
        return super().find_class(module, name)


class _DataOnlyReader(dcp.FileSystemReader):
    def read_metadata(self, *args: Any, **kwargs: Any):
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            try:
                metadata = _IndexUnpickler(stream).load()
            except pickle.UnpicklingError as err:
                raise ValueError(f"{path}: {err}") from None
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class _DataOnlyPlanner(DefaultLoadPlanner):
    def load_bytes(self, read_item, value) -> None:
        """The value read as data, then handed on re-serialized by us: what DCP's own (plain)
        unpickler then reads is our pickle of plain data, not the file's."""
        clean = io.BytesIO()
        torch.save(torch.load(value, weights_only=True), clean)
        clean.seek(0)
        super().load_bytes(read_item, clean)
