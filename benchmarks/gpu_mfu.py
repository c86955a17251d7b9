"""MFU on one GPU: bf16 autocast, SDPA (flash) attention, eager and torch.compile per block.

    python benchmarks/gpu_mfu.py [--device cpu --tiny]   (the CPU form: a dry run of the code)

Dense models of about 125M and 350M parameters and an MoE (8 experts, top-2, the 125M model's
shape) at sequence 1024, trained on random tokens (the data pipeline is measured elsewhere) with
fused AdamW, each eager and with every block compiled. MFU is model FLOPs per token × tokens/s
over the GPU's peak dense bf16 FLOP/s, under two FLOP conventions: 6N (N active parameters)
and the exact matmul count of our implementation (attention included). The MoE is then put
against the dense model of its shape per active FLOP (its exact MFU over the dense one's, both
compiled). Targets: >= 40% for the dense 125M model (exact), MoE >= 0.6 of dense.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scaling.config import ModelConfig
from scaling.counting import count_params, flops_per_token
from scaling.model import Transformer
from scaling.training.metrics import device_peak_flops

SHAPES = {
    "dense-125M": dict(d_model=768, n_layers=12, n_heads=12),
    "dense-350M": dict(d_model=1024, n_layers=24, n_heads=16),
    "moe-8x-top2": dict(d_model=768, n_layers=12, n_heads=12, n_experts=8, top_k=2),
}
TINY = {  # the CPU dry run: the same code at toy sizes
    "dense-125M": dict(d_model=64, n_layers=2, n_heads=4),
    "dense-350M": dict(d_model=96, n_layers=2, n_heads=4),
    "moe-8x-top2": dict(d_model=64, n_layers=2, n_heads=4, n_experts=8, top_k=2),
}


def measure(
    cfg: ModelConfig, batch: int, seq_len: int, device: torch.device, compile: bool, steps: int
) -> float:
    """Tokens/s: the median step time over ``steps`` steps after three warm-up steps."""
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    if compile:
        for block in model.blocks:
            block.compile()
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    idx = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device=device)
    times = []
    for step in range(steps + 3):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(idx[:, :-1], idx[:, 1:]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= 3:
            times.append(time.perf_counter() - start)
    del model, optimizer
    if cuda:
        torch.cuda.empty_cache()
    return batch * seq_len / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (the CPU dry run)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    shapes, seq_len, batch = (TINY, 64, 2) if args.tiny else (SHAPES, 1024, 16)
    name, peak = device_peak_flops(device, "bf16")
    peak = peak or float("nan")
    print(f"device: {name}, peak bf16 {peak / 1e12:.0f} TFLOP/s, torch {torch.__version__}")
    print("| model | compile | params (total / active) | tokens/s | MFU (6N) | MFU (exact) |")
    print("|---|---|---|---|---|---|")
    exact: dict[tuple[str, bool], float] = {}
    for label, shape in shapes.items():
        cfg = ModelConfig(vocab_size=50304, max_seq_len=seq_len, activation="gelu", **shape)
        counted = count_params(cfg)
        for compile in (False, True) if label.startswith("dense") else (True,):
            rate = measure(cfg, batch, seq_len, device, compile, args.steps)
            mfu = {m: rate * flops_per_token(cfg, seq_len, m) / peak for m in ("6N", "exact")}
            exact[label, compile] = mfu["exact"]
            print(
                f"| {label} | {'on' if compile else 'off'} | {counted.total / 1e6:.0f}M / "
                f"{counted.active / 1e6:.0f}M | {rate:,.0f} | {mfu['6N']:.1%} | "
                f"{mfu['exact']:.1%} |",
                flush=True,
            )
    ratio = exact["moe-8x-top2", True] / exact["dense-125M", True]
    print(f"\nMoE / dense per active FLOP (exact MFU, compiled): {ratio:.2f} (target >= 0.6)")


if __name__ == "__main__":
    main()
