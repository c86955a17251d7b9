"""Where a training step's time goes: one model of gpu_mfu.py, profiled on the GPU.

    python benchmarks/gpu_profile.py [--model dense-125M] [--compile]
    python benchmarks/gpu_profile.py --device cpu --tiny   (the CPU dry run)

The dense 125M model reached 32% MFU (exact count) compiled on an H200, against 44% at 350M and
a 40% target: this prints what its step spends the GPU's time on, kernel by kernel and by kind
(matrix products, attention, the rest), so the next lease can fix the largest share instead of
guessing. Five steps are profiled after three warm-up steps.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.gpu_mfu import SHAPES, TINY
from scaling.config import ModelConfig
from scaling.model import Transformer

KINDS = [  # the first pattern a kernel's name matches names its kind
    ("attention", r"flash|fmha|attention|sdpa"),
    ("matmul", r"gemm|matmul|\bmm\b|addmm|bmm|cutlass|xmma|nvjet"),
    ("cross-entropy", r"log_softmax|nll_loss|cross_entropy"),
    ("optimizer", r"adam|foreach|multi_tensor"),
    ("compiled (triton)", r"^triton_"),
]


def kind_of(kernel: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, kernel, re.IGNORECASE):
            return kind
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dense-125M", choices=list(SHAPES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--compile", action="store_true", help="every block compiled")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    shape, seq_len, batch = (TINY, 64, 2) if args.tiny else (SHAPES, 1024, 16)
    cfg = ModelConfig(vocab_size=50304, max_seq_len=seq_len, activation="gelu", **shape[args.model])
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    if args.compile:
        for block in model.blocks:
            block.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    idx = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(idx[:, :-1], idx[:, 1:]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        for _ in range(5):
            step()
        if cuda:
            torch.cuda.synchronize()
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        spent = event.self_device_time_total if cuda else event.self_cpu_time_total
        if spent > 0:
            times[event.key] += spent / 5  # per step, microseconds
    total = sum(times.values())
    by_kind: dict[str, float] = defaultdict(float)
    for kernel, spent in times.items():
        by_kind[kind_of(kernel)] += spent
    where = torch.cuda.get_device_name() if cuda else "cpu"
    print(
        f"{args.model}, compile {'on' if args.compile else 'off'}, {where}: "
        f"{total / 1e3:.1f} ms of kernels per step"
    )
    print("| kind | ms per step | share |")
    print("|---|---|---|")
    for kind, spent in sorted(by_kind.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {spent / 1e3:.2f} | {spent / total:.0%} |")
    print("\n| kernel (top 15) | kind | ms per step | share |")
    print("|---|---|---|---|")
    for kernel, spent in sorted(times.items(), key=lambda item: -item[1])[:15]:
        print(f"| {kernel[:90]} | {kind_of(kernel)} | {spent / 1e3:.2f} | {spent / total:.0%} |")


if __name__ == "__main__":
    main()
