"""MFU on one GPU: bf16 autocast, torch.compile per block, SDPA (flash) attention.

    python benchmarks/gpu_mfu.py

Dense models of about 125M and 350M parameters and an MoE (8 experts, top-2) at sequence
1024, trained on random tokens (the data pipeline is measured elsewhere) with AdamW. MFU is
model FLOPs per token × tokens/s over the GPU's peak dense bf16 FLOP/s, under two FLOP
conventions: 6N (N active parameters) and the exact matmul count of our implementation
(attention included). Target: >= 40% for the dense models.
"""

from __future__ import annotations

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


def measure(cfg: ModelConfig, batch: int, seq_len: int, steps: int = 10) -> float:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = Transformer(cfg).to(device)
    for block in model.blocks:
        block.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    idx = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1), device=device)
    times = []
    for step in range(steps + 3):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(idx[:, :-1], idx[:, 1:]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= 3:
            times.append(time.perf_counter() - start)
    return batch * seq_len / statistics.median(times)


def main() -> None:
    name, peak = device_peak_flops(torch.device("cuda"), "bf16")
    print(
        f"device: {name}, peak bf16 {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s, "
        f"torch {torch.__version__}"
    )
    print("| model | params (total / active) | tokens/s | MFU (6N) | MFU (exact) |")
    print("|---|---|---|---|---|")
    for label, shape in SHAPES.items():
        cfg = ModelConfig(vocab_size=50304, max_seq_len=1024, activation="gelu", **shape)
        rate = measure(cfg, batch=16, seq_len=1024)
        counted = count_params(cfg)
        mfu = {m: rate * flops_per_token(cfg, 1024, m) / peak for m in ("6N", "exact")}
        print(
            f"| {label} | {counted.total / 1e6:.0f}M / {counted.active / 1e6:.0f}M | "
            f"{rate:,.0f} | {mfu['6N']:.1%} | {mfu['exact']:.1%} |"
        )


if __name__ == "__main__":
    main()
