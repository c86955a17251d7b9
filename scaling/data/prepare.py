"""Tokenize a corpus once into ``train.bin`` / ``val.bin`` in a shared cache.

A cache entry is a directory ``$SCALING_CACHE/data/<key>/`` keyed by (corpus fingerprint,
tokenizer, validation fraction). It is built in a temporary sibling directory and renamed
into place only when complete, under an exclusive file lock: two processes preparing the same
data at once build it once, and a half-written entry (a killed process) is never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaling.config import DataConfig
from scaling.data.corpus import (
    STDLIB,
    DataError,
    ReadStats,
    corpus_fingerprint,
    is_validation,
    iter_documents,
)
from scaling.data.tokenizer import ByteTokenizer, load_saved, load_tokenizer_file, train_bpe

FORMAT_VERSION = 1
BATCH_DOCUMENTS = 256


def cache_dir() -> Path:
    return Path(os.environ.get("SCALING_CACHE", Path.home() / ".cache" / "scaling")).expanduser()


@dataclass
class PreparedData:
    path: Path
    meta: dict
    reused: bool = False  # True when an existing cache entry served this call

    @classmethod
    def load(cls, path: Path, reused: bool = True) -> PreparedData:
        return cls(path, json.loads((path / "meta.json").read_text()), reused)

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]

    def tokens(self, split: str) -> np.memmap:
        """The token stream of ``split`` ('train' or 'val'), memory-mapped read-only."""
        return np.memmap(self.path / f"{split}.bin", dtype=self.meta["dtype"], mode="r")

    def tokenizer(self):
        return load_saved(self.path / "tokenizer.json")

    def bits_per_byte(self, nats_per_token: float, split: str = "val") -> float:
        """Loss in bits per UTF-8 byte of text: comparable across tokenizers."""
        counts = self.meta[split]
        return nats_per_token * counts["tokens"] / counts["bytes"] / math.log(2)


def bits_per_byte(nats_per_token: float, tokens: int, n_bytes: int) -> float:
    return nats_per_token * tokens / n_bytes / math.log(2)


def _tokenizer_key(cfg: DataConfig) -> dict:
    if cfg.tokenizer == "bpe":
        return {"kind": "bpe", "vocab_size": cfg.vocab_size}
    if cfg.tokenizer == "bytes":
        return {"kind": "bytes"}
    return {"kind": "file", "hash": load_tokenizer_file(cfg.tokenizer).hash}


def _exclusive_lock(path: Path):
    """One preparer of a cache entry at a time, across processes (the filelock library)."""
    from filelock import FileLock

    return FileLock(str(path))


def _cache_key(cfg: DataConfig, fingerprint: str) -> str:
    key_fields = {
        "format": FORMAT_VERSION,
        "corpus": fingerprint,
        "tokenizer": _tokenizer_key(cfg),
        "val_fraction": cfg.val_fraction,
    }
    return hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]


def find_prepared(
    cfg: DataConfig, cache: Path | None = None
) -> tuple[PreparedData | None, ReadStats]:
    """The complete cache entry of ``cfg`` if there is one (nothing is built), and what
    reading the corpus found."""
    fingerprint, stats = corpus_fingerprint(cfg)
    entry = (cache or cache_dir()) / "data" / _cache_key(cfg, fingerprint)
    return (PreparedData.load(entry) if (entry / "meta.json").is_file() else None), stats


def prepare_data(
    cfg: DataConfig, cache: Path | None = None, progress: bool = False
) -> PreparedData:
    """The prepared data of ``cfg``: from the cache when there, built (once) otherwise."""
    fingerprint, stats = corpus_fingerprint(cfg)
    key = _cache_key(cfg, fingerprint)
    root = (cache or cache_dir()) / "data"
    entry = root / key
    if (entry / "meta.json").is_file():
        return PreparedData.load(entry)
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root / f"{key}.lock"):
        if (entry / "meta.json").is_file():  # another process built it while we waited
            return PreparedData.load(entry)
        for stale in root.glob(f"{key}.tmp-*"):  # left by a killed process; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        staging = root / f"{key}.tmp-{os.getpid()}"
        staging.mkdir()
        try:
            meta = _build(cfg, staging, stats, progress)
            meta.update(key=key, corpus_fingerprint=fingerprint, created=time.time())
            (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
            os.rename(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return PreparedData.load(entry, reused=False)


def _build(cfg: DataConfig, out: Path, stats: ReadStats, progress: bool) -> dict:
    if cfg.tokenizer == "bpe":
        train_texts = (
            d.text for d in iter_documents(cfg) if not is_validation(d.text, cfg.val_fraction)
        )
        tokenizer = train_bpe(train_texts, cfg.vocab_size)
    elif cfg.tokenizer == "bytes":
        tokenizer = ByteTokenizer()
    else:
        tokenizer = load_tokenizer_file(cfg.tokenizer)
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    counts = {split: {"documents": 0, "tokens": 0, "bytes": 0} for split in ("train", "val")}

    from rich.progress import Progress

    with (
        (out / "train.bin").open("wb") as train_file,
        (out / "val.bin").open("wb") as val_file,
        Progress(disable=not progress, transient=True) as bar,
    ):
        task = bar.add_task("tokenizing", total=stats.bytes)
        files = {"train": train_file, "val": val_file}
        batch: list[str] = []

        def flush() -> None:
            for text, ids in zip(batch, tokenizer.encode_batch(batch), strict=True):
                split = "val" if is_validation(text, cfg.val_fraction) else "train"
                ids = np.append(ids, tokenizer.eod_id).astype(dtype)
                files[split].write(ids.tobytes())
                n_bytes = len(text.encode("utf-8", errors="surrogatepass"))
                counts[split]["documents"] += 1
                counts[split]["tokens"] += len(ids)
                counts[split]["bytes"] += n_bytes
                bar.advance(task, n_bytes)
            batch.clear()

        for doc in iter_documents(cfg):
            batch.append(doc.text)
            if len(batch) == BATCH_DOCUMENTS:
                flush()
        flush()
    if counts["val"]["documents"] == 0 or counts["train"]["documents"] == 0:
        raise DataError(
            f"data.source {cfg.source!r}: {stats.documents} document(s) gave "
            f"{counts['train']['documents']} for training and {counts['val']['documents']} "
            "for validation; both need at least one (add documents or change data.val_fraction)"
        )
    tokenizer.save(out / "tokenizer.json")
    total_tokens = counts["train"]["tokens"] + counts["val"]["tokens"]
    total_bytes = counts["train"]["bytes"] + counts["val"]["bytes"]
    return {
        "format": FORMAT_VERSION,
        "source": cfg.source,
        "config": cfg.model_dump(mode="json"),
        "python_version": platform.python_version() if cfg.source == STDLIB else None,
        "tokenizer": {**_tokenizer_key(cfg), "hash": tokenizer.hash},
        "vocab_size": tokenizer.vocab_size,
        "eod_id": tokenizer.eod_id,
        "dtype": np.dtype(dtype).name,
        "train": counts["train"],
        "val": counts["val"],
        "tokens_per_byte": total_tokens / total_bytes,
        "replaced_chars": stats.replaced_chars,
        "files_with_replacements": stats.files_with_replacements[:20],
    }


def list_cache(cache: Path | None = None) -> list[PreparedData]:
    """Every complete entry in the cache, newest first."""
    root = (cache or cache_dir()) / "data"
    if not root.is_dir():
        return []
    entries = [
        PreparedData.load(meta.parent)
        for meta in root.glob("*/meta.json")
        if ".tmp-" not in meta.parent.name
    ]
    return sorted(entries, key=lambda e: e.meta.get("created", 0), reverse=True)
