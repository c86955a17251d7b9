"""Corpora: documents from local files, the built-in Python standard library, or a named
Hugging Face dataset; a content fingerprint; the train/validation split.

A document is the unit of the split. It goes to validation when a stable hash of its text
falls below ``val_fraction``, so the split depends neither on file order nor on which other
files are present: adding a file moves no existing document.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scaling.config import ConfigError, DataConfig

STDLIB = "builtin:python-stdlib"
STDLIB_TEST_DIRS = {"test", "tests", "idle_test"}


class DataError(ConfigError):
    """Bad data input: one line naming the source and what is wrong."""


@dataclass
class Document:
    name: str  # file path, or path:line for JSON Lines, path:row for Parquet
    text: str


@dataclass
class ReadStats:
    """What reading the corpus met: undecodable bytes are replaced and counted here."""

    documents: int = 0
    bytes: int = 0
    replaced_chars: int = 0
    files_with_replacements: list[str] = field(default_factory=list)


def is_validation(text: str, val_fraction: float) -> bool:
    digest = hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(include_tests: bool) -> list[Path]:
    """The standard library's .py files, sorted. The walk prunes the folders it leaves out
    rather than filtering their files: the installed packages under site-packages are ten
    times the standard library, and every run start lists these files."""
    skipped = {"site-packages", "dist-packages"} | (set() if include_tests else STDLIB_TEST_DIRS)
    files = []
    for folder, subfolders, names in os.walk(stdlib_root(), followlinks=True):
        subfolders[:] = [name for name in subfolders if name not in skipped]
        files.extend(Path(folder, name) for name in names if name.endswith(".py"))
    return sorted(files)


def _local_files(cfg: DataConfig) -> list[Path]:
    source = cfg.source
    if any(ch in source for ch in "*?["):
        matches = [Path(p) for p in glob.glob(source, recursive=True)]
        files = sorted(p for p in matches if p.is_file())
        if not files:
            raise DataError(f"data.source: the glob {source!r} matches no file")
        return files
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in cfg.extensions
        )
        if not files:
            raise DataError(
                f"data.source: {path} holds no file with a suffix in {', '.join(cfg.extensions)}"
            )
        return files
    raise DataError(f"data.source: {source!r} does not exist (a file, a directory or a glob)")


def _decode(raw: bytes, name: str, stats: ReadStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        stats.replaced_chars += text.count("\ufffd") - raw.count("\ufffd".encode())
        stats.files_with_replacements.append(name)
        return text


def _file_documents(path: Path, cfg: DataConfig, stats: ReadStats) -> Iterator[Document]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open("rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(_decode(line, f"{path}:{line_no}", stats))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{line_no}: not valid JSON ({err.msg})") from None
                if not isinstance(record, dict) or cfg.text_field not in record:
                    raise DataError(
                        f"{path}:{line_no}: no field {cfg.text_field!r} "
                        "(set data.text_field to the field that holds the text)"
                    )
                yield Document(f"{path}:{line_no}", str(record[cfg.text_field]))
    elif suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path, columns=[cfg.text_field])
        except ImportError as err:
            raise DataError(f"{path}: reading Parquet needs pyarrow ({err})") from None
        except (KeyError, ValueError) as err:
            raise DataError(f"{path}: no column {cfg.text_field!r} ({err})") from None
        for row, text in enumerate(frame[cfg.text_field].astype(str)):
            yield Document(f"{path}:{row}", text)
    else:
        yield Document(str(path), _decode(path.read_bytes(), str(path), stats))


def _hf_documents(cfg: DataConfig) -> Iterator[Document]:
    spec = cfg.source.removeprefix("hf:")
    name, _, split = spec.partition(":")
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"data.source {cfg.source!r}: Hugging Face datasets need the extra: "
            "pip install 'scaling[hf]'"
        ) from None
    dataset = datasets.load_dataset(name, split=split or "train")
    if cfg.text_field not in dataset.column_names:
        raise DataError(
            f"data.source {cfg.source!r}: no column {cfg.text_field!r}; "
            f"columns are {', '.join(dataset.column_names)}"
        )
    for row, record in enumerate(dataset):
        yield Document(f"{name}:{row}", str(record[cfg.text_field]))


def iter_documents(cfg: DataConfig, stats: ReadStats | None = None) -> Iterator[Document]:
    """Every non-empty document of the corpus, in a fixed order, up to ``max_bytes``."""
    stats = stats if stats is not None else ReadStats()
    if cfg.source.startswith("hf:"):
        documents = _hf_documents(cfg)
    else:
        if cfg.source == STDLIB:
            files = _stdlib_files(cfg.include_tests)
        elif cfg.source.startswith("builtin:"):
            raise DataError(f"data.source: unknown built-in corpus {cfg.source!r}; have {STDLIB}")
        else:
            files = _local_files(cfg)
        documents = (doc for path in files for doc in _file_documents(path, cfg, stats))
    for doc in documents:
        if not doc.text.strip():
            continue
        size = len(doc.text.encode("utf-8", errors="surrogatepass"))
        if cfg.max_bytes is not None and stats.bytes + size > cfg.max_bytes and stats.documents:
            return
        stats.documents += 1
        stats.bytes += size
        yield doc


def corpus_fingerprint(cfg: DataConfig) -> tuple[str, ReadStats]:
    """A hash of every document's name and text (so a changed file changes the key)."""
    digest = hashlib.sha256()
    if cfg.source == STDLIB:
        digest.update(f"python {platform.python_version()}\0".encode())
    stats = ReadStats()
    for doc in iter_documents(cfg, stats):
        name = os.path.relpath(doc.name, stdlib_root()) if cfg.source == STDLIB else doc.name
        digest.update(name.encode("utf-8", errors="surrogatepass") + b"\0")
        digest.update(hashlib.sha256(doc.text.encode("utf-8", errors="surrogatepass")).digest())
    if stats.documents == 0:
        raise DataError(f"data.source {cfg.source!r}: the corpus is empty (no non-empty document)")
    return digest.hexdigest(), stats
