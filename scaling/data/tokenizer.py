"""Tokenizers: byte-level BPE trained locally, a user's ``tokenizer.json``, or raw bytes.

All three give the same small interface (``encode_batch``, ``vocab_size``, ``eod_id``,
``hash``), so preparation does not care which one it has. Nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from scaling.data.corpus import DataError

EOD = "<|endoftext|>"


class ByteTokenizer:
    """The 256 byte values of the UTF-8 text; byte 0 (NUL, absent from text) ends a document."""

    vocab_size = 256
    eod_id = 0
    hash = hashlib.sha256(b"scaling-bytes-v1").hexdigest()

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [
            np.frombuffer(t.encode("utf-8", errors="surrogatepass"), dtype=np.uint8).astype(
                np.uint32
            )
            for t in texts
        ]

    def save(self, path: Path) -> None:
        path.write_text('{"scaling": "bytes", "vocab_size": 256, "eod_id": 0}\n')


class HFTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` with an end-of-document token."""

    def __init__(self, tokenizer, source: str):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        eod = tokenizer.token_to_id(EOD)
        if eod is None:
            raise DataError(
                f"{source}: the tokenizer has no end-of-document token {EOD!r}; add it as a "
                "special token"
            )
        self.eod_id = eod
        self.hash = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        # encode_batch runs on all cores in the Rust library
        return [np.asarray(e.ids, dtype=np.uint32) for e in self.tokenizer.encode_batch(texts)]

    def save(self, path: Path) -> None:
        self.tokenizer.save(str(path))


def train_bpe(texts: Iterable[str], vocab_size: int) -> HFTokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenization) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return HFTokenizer(tokenizer, "trained BPE")


def load_tokenizer_file(path: str | Path) -> HFTokenizer:
    from tokenizers import Tokenizer

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data.tokenizer: {path} does not exist (use 'bpe', 'bytes' or a path)")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust library raises a plain Exception
        raise DataError(f"data.tokenizer: {path} is not a tokenizer.json ({err})") from None
    return HFTokenizer(tokenizer, str(path))


def load_saved(path: Path) -> ByteTokenizer | HFTokenizer:
    """The tokenizer saved next to prepared data."""
    if '"scaling": "bytes"' in path.read_text()[:100]:
        return ByteTokenizer()
    return load_tokenizer_file(path)
