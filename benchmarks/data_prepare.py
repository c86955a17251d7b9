"""Data preparation and sampling throughput.

    python benchmarks/data_prepare.py [--vocab-size 4096]

1. Prepares the built-in corpus (the Python standard library, BPE trained here) into a fresh
   temporary cache and reports MB/s (target: under 60 s on 2 cores).
2. Samples training batches and compares tokens/s with the forward+backward tokens/s of a
   model measured in the same process (target: sampling at least 20x faster than training
   consumes). The model is the ~10M-parameter shape of benchmarks/model_step.py, the size of
   the largest model a CPU demo trains.
3. Finds the prepared entry again, as every run start does (the corpus fingerprint), and lists
   the standard library's files both ways: the pruned walk the corpus uses against the plain
   reference that walks every installed package and filters (the same list).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

torch.set_flush_denormal(True)  # before torch starts its threads

from scaling.config import DataConfig, ModelConfig  # noqa: E402
from scaling.data import WindowSampler, prepare_data  # noqa: E402
from scaling.data.corpus import (  # noqa: E402
    STDLIB_TEST_DIRS,
    _stdlib_files,
    corpus_fingerprint,
    stdlib_root,
)
from scaling.model import Transformer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    cfg = DataConfig(source="builtin:python-stdlib", vocab_size=args.vocab_size)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        prepared = prepare_data(cfg, cache=Path(cache))
        prepare_s = time.perf_counter() - start
        meta = prepared.meta
        megabytes = (meta["train"]["bytes"] + meta["val"]["bytes"]) / 1e6
        train = prepared.tokens("train")

        sampler = WindowSampler(train, args.seq_len, args.batch, seed=0)
        n_batches = 400
        start = time.perf_counter()
        for _ in range(n_batches):
            sampler.next_batch()
        sample_rate = n_batches * args.batch * args.seq_len / (time.perf_counter() - start)

        model_cfg = ModelConfig(
            vocab_size=prepared.vocab_size,
            d_model=288,
            n_layers=8,
            n_heads=6,
            max_seq_len=args.seq_len,
        )
        model = Transformer(model_cfg)
        times = []
        for step in range(5):
            x, y = sampler.next_batch()
            start = time.perf_counter()
            model(x, y).loss.backward()
            model.zero_grad(set_to_none=True)
            if step:
                times.append(time.perf_counter() - start)
        train_rate = args.batch * args.seq_len / sorted(times)[len(times) // 2]

        start = time.perf_counter()
        corpus_fingerprint(cfg)
        fingerprint_s = time.perf_counter() - start
        start = time.perf_counter()
        pruned = _stdlib_files(include_tests=False)
        pruned_s = time.perf_counter() - start
        start = time.perf_counter()
        reference = _listing_by_filtering()
        reference_s = time.perf_counter() - start
        assert pruned == reference

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(
        f"| prepare builtin:python-stdlib ({megabytes:.1f} MB, BPE {args.vocab_size}) "
        f"| {prepare_s:.1f} s ({megabytes / prepare_s:.2f} MB/s) | < 60 s |"
    )
    print(
        f"| tokens | {meta['train']['tokens']:,} train, {meta['val']['tokens']:,} val "
        f"({meta['tokens_per_byte']:.3f} tokens/byte) | |"
    )
    print(f"| sampling (batch {args.batch} x {args.seq_len}) | {sample_rate:,.0f} tokens/s | |")
    print(f"| training, 10M model fwd+bwd | {train_rate:,.0f} tokens/s | |")
    print(f"| sampling / training | {sample_rate / train_rate:,.0f}x | >= 20x |")
    print(
        f"| find the prepared entry again (fingerprint, each run start) | {fingerprint_s:.2f} s | |"
    )
    print(
        f"| list the stdlib ({len(pruned)} files): pruned walk / filtering every file "
        f"| {pruned_s * 1e3:.0f} ms / {reference_s * 1e3:.0f} ms "
        f"({reference_s / pruned_s:.0f}x) | same list |"
    )


def _listing_by_filtering() -> list[Path]:
    """The plain definition: every .py under the stdlib, filtered afterwards."""
    root = stdlib_root()
    files = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        if STDLIB_TEST_DIRS.intersection(parts[:-1]):
            continue
        files.append(path)
    return sorted(files)


if __name__ == "__main__":
    main()
