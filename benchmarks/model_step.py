"""Forward+backward throughput of our Transformer against a plain PyTorch GPT of the same shape.

    python benchmarks/model_step.py [--steps 6] [--device cpu] [--bf16]

Prints tokens/s of: the plain reference (written below, nanoGPT style), our dense model of
the same shape, and an MoE (8 experts, top-2, each expert half the dense width, so the same
active FLOPs per token). Ratios: dense / reference (target >= 0.95) and MoE / dense per
active FLOP (target >= 0.6). Timings interleave the models round by round and take medians,
so a machine that speeds up or slows down during the run affects all of them alike.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch

torch.set_flush_denormal(True)  # before torch starts its threads (see README, CPU speed)

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from scaling.config import ModelConfig  # noqa: E402
from scaling.counting import count_params, flops_per_token  # noqa: E402
from scaling.model import Transformer  # noqa: E402


class PlainBlock(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.out = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    """The reference: a minimal GPT with learned positions and tied embeddings."""

    def __init__(self, vocab: int, d: int, n_layers: int, n_heads: int, seq_len: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(PlainBlock(d, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight
        for p in self.parameters():
            nn.init.normal_(p, std=0.02) if p.dim() > 1 else None

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def step_seconds(loss_fn, model: nn.Module, device: torch.device, bf16: bool) -> float:
    """One forward and backward, timed to the end of its kernels: CUDA returns from
    backward() once they are queued, so the clock stops after a synchronize."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn()
    loss.backward()
    model.zero_grad(set_to_none=True)
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed rounds (after 2 warm-up)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="under bf16 autocast (GPUs)")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)

    shape = dict(vocab_size=8192, d_model=288, n_layers=8, n_heads=6, max_seq_len=args.seq_len)
    dense_cfg = ModelConfig(**shape, position="learned", activation="gelu", norm="layernorm")
    moe_cfg = dense_cfg.model_copy(update=dict(n_experts=8, top_k=2, granularity=2))
    moe_cfg = ModelConfig.model_validate(moe_cfg.model_dump())  # re-run the validators

    models = {
        "plain reference": PlainGPT(8192, 288, 8, 6, args.seq_len).to(device),
        "scaling dense": Transformer(dense_cfg).to(device),
        "scaling MoE 8x top-2": Transformer(moe_cfg).to(device),
    }
    idx = torch.randint(0, 8192, (args.batch, args.seq_len), device=device)
    targets = torch.randint(0, 8192, (args.batch, args.seq_len), device=device)
    loss_fns = {
        "plain reference": lambda: models["plain reference"](idx, targets),
        "scaling dense": lambda: models["scaling dense"](idx, targets).loss,
        "scaling MoE 8x top-2": lambda: models["scaling MoE 8x top-2"](idx, targets).loss,
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.steps + 2):
        for name, model in models.items():
            seconds = step_seconds(loss_fns[name], model, device, args.bf16)
            if round_ >= 2:
                times[name].append(seconds)

    tokens = args.batch * args.seq_len
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    flops = {
        "plain reference": flops_per_token(dense_cfg, args.seq_len, "exact"),
        "scaling dense": flops_per_token(dense_cfg, args.seq_len, "exact"),
        "scaling MoE 8x top-2": flops_per_token(moe_cfg, args.seq_len, "exact"),
    }
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, device {device}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(f"batch {args.batch} x seq {args.seq_len}, {args.steps} timed rounds (median)\n")
    print("| model | params (total / active) | tokens/s | GFLOP/s (exact) |")
    print("|---|---|---|---|")
    for name, model_rate in rate.items():
        cfg = moe_cfg if "MoE" in name else dense_cfg
        counted = count_params(cfg)
        print(
            f"| {name} | {counted.total / 1e6:.2f}M / {counted.active / 1e6:.2f}M "
            f"| {model_rate:,.0f} | {model_rate * flops[name] / 1e9:.1f} |"
        )
    dense_ratio = rate["scaling dense"] / rate["plain reference"]
    moe_ratio = (rate["scaling MoE 8x top-2"] * flops["scaling MoE 8x top-2"]) / (
        rate["scaling dense"] * flops["scaling dense"]
    )
    print(f"\ndense / plain reference (tokens/s): {dense_ratio:.3f}  (target >= 0.95)")
    print(f"MoE / dense (per active FLOP):       {moe_ratio:.3f}  (target >= 0.6)")
    assert math.isfinite(dense_ratio) and math.isfinite(moe_ratio)


if __name__ == "__main__":
    main()
