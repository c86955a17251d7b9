"""Corpora, tokenizers, prepared token shards and deterministic batch sampling."""

from scaling.config import DataConfig
from scaling.data.corpus import DataError, iter_documents
from scaling.data.prepare import PreparedData, bits_per_byte, cache_dir, list_cache, prepare_data
from scaling.data.sampler import ValidationWindows, WindowSampler

__all__ = [
    "DataConfig",
    "DataError",
    "PreparedData",
    "ValidationWindows",
    "WindowSampler",
    "bits_per_byte",
    "cache_dir",
    "iter_documents",
    "list_cache",
    "prepare_data",
]
