"""Trainer overhead: tokens/s of scaling's training loop against a plain PyTorch loop.

    python benchmarks/train_throughput.py [--steps 24]
    python benchmarks/train_throughput.py --device cuda   (bf16, a 125M model at sequence 1024)

Both train the same dense model (~10M parameters on the CPU, ~125M on a GPU) on the same
prepared data (the built-in corpus), the same global batch and micro-batches, AdamW and
gradient clipping, in this process.
The trainer's rate is read from its own metrics.jsonl (tokens/s per logging window, the first
window dropped as warm-up; evaluation is outside the windows); the plain loop is timed over the
same steps. The two alternate for ``--rounds`` rounds and the medians over all rounds are
compared, so a machine whose speed drifts (shared cores) affects both alike. Target: >= 0.95.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

torch.set_flush_denormal(True)  # before torch starts its threads

from scaling.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from scaling.data import WindowSampler, prepare_data  # noqa: E402
from scaling.model import Transformer  # noqa: E402
from scaling.rundir import RunDir  # noqa: E402
from scaling.training.lifecycle import train  # noqa: E402


def plain_loop(config: RunConfig, steps: int, device: torch.device) -> list[float]:
    """tokens/s of each step of the textbook loop, after one warm-up step (bf16 autocast on a
    GPU, as the trainer under ``precision = "bf16"``)."""
    data = prepare_data(config.data)
    t = config.train
    sampler = WindowSampler(data.tokens("train"), t.seq_len, t.batch_sequences, t.seed)
    torch.manual_seed(t.seed)
    model = Transformer(config.model).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=t.lr, betas=t.betas, weight_decay=t.weight_decay
    )
    accum, mb = t.batch_sequences // t.micro_batch_size, t.micro_batch_size
    cuda = device.type == "cuda"
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        x, y = (tensor.to(device, non_blocking=True) for tensor in sampler.next_batch())
        for i in range(accum):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = model(x[i * mb : (i + 1) * mb], y[i * mb : (i + 1) * mb]).loss
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # the trainer reads its loss each step: the same synchronisation
        if step:
            times.append(time.perf_counter() - start)
    return [t.batch_tokens / seconds for seconds in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (the trainer takes it)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        shape, seq_len, micro, precision = (
            dict(d_model=768, n_layers=12, n_heads=12),
            1024,
            16,
            "bf16",
        )
    else:
        shape, seq_len, micro, precision = dict(d_model=288, n_layers=8, n_heads=6), 256, 4, "fp32"
    batch_tokens = 2 * micro * seq_len
    config = RunConfig(
        model=ModelConfig(vocab_size=4096, max_seq_len=seq_len, **shape),
        data=DataConfig(vocab_size=4096),
        train=TrainConfig(
            tokens=args.steps * batch_tokens,
            batch_tokens=batch_tokens,
            micro_batch_size=micro,
            seq_len=seq_len,
            precision=precision,
            eval_interval=0,
            eval_windows=8,
            log_interval=4,
            checkpoint_interval=10_000,
        ),
    )
    prepare_data(config.data)  # outside both timings
    plain_rates, our_rates = [], []
    for _ in range(args.rounds):
        plain_rates += plain_loop(config, args.steps, device)
        with tempfile.TemporaryDirectory() as run_dir:
            train(config, run_dir, progress=False)
            metrics = RunDir(Path(run_dir)).read_metrics()
        our_rates += [record["tokens_per_s"] for record in metrics[1:]]
    plain, ours = statistics.median(plain_rates), statistics.median(our_rates)
    where = torch.cuda.get_device_name() if device.type == "cuda" else platform.machine()
    print(f"machine: {where}, {os.cpu_count()} cores, torch {torch.__version__}, {precision}")
    print("| loop | tokens/s |")
    print("|---|---|")
    print(f"| plain PyTorch loop (same model, data, batch) | {plain:,.0f} |")
    print(f"| scaling trainer | {ours:,.0f} |")
    print(f"\nscaling / plain: {ours / plain:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
