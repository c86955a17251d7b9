"""Mixture-of-Experts feed-forward: token-choice top-k routing, dropless.

Every token reaches exactly ``top_k`` routed experts (no capacity, nothing dropped) plus the
shared experts. Tokens are sorted by expert and each expert multiplies only its own tokens,
so the work is ``top_k`` expert MLPs per token, never all experts for all tokens.

Expert weights are 3-D tensors (experts × in × out), which is what ``torch._grouped_mm``
takes and what a future expert-parallel sharding splits along dim 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from scaling.config import ModelConfig
from scaling.model.layers import MLP, activation_fn
from scaling.model.parametrization import multipliers


@dataclass
class RoutingStats:
    aux_loss: torch.Tensor  # Switch/GShard load balance: n_experts · Σ f_i · P_i (1 when uniform)
    z_loss: torch.Tensor  # mean squared log-sum-exp of the router logits (ST-MoE)
    load: torch.Tensor  # fraction of routed token slots per expert, shape (n_experts,)


def expert_impl_for(device: str, bf16: bool, d_model: int, expert_dim: int) -> str:
    """How the experts multiply their tokens. ``grouped_mm`` on CUDA for bf16 runs whose shapes
    its kernel takes: bf16 only, every row stride a multiple of 16 bytes, so ``d_model`` and
    ``expert_dim`` multiples of 8 (``GroupedMMUtils.h``; ``d_model=512, granularity=32`` gives
    44 and fails). Otherwise a loop over experts, exact in fp32: an fp32 run's experts are
    then fp32 like the rest of it, not silently bf16. On CPU the loop is also the faster
    (torch 2.13: 7.5 ms against 12.8 ms for 8 experts, 4096 tokens)."""
    aligned = d_model % 8 == 0 and expert_dim % 8 == 0
    if device == "cuda" and bf16 and aligned and hasattr(torch, "_grouped_mm"):
        return "grouped_mm"
    return "loop"


class MoE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_experts, self.top_k = cfg.n_experts, cfg.top_k
        self.gated = cfg.activation == "swiglu"
        self.act = activation_fn(cfg.activation)
        self.expert_dim = cfg.expert_dim
        n_in = 2 if self.gated else 1
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        # w_in holds [gate | up] side by side for SwiGLU, so one matmul serves both.
        self.w_in = nn.Parameter(torch.empty(cfg.n_experts, cfg.d_model, n_in * cfg.expert_dim))
        self.w_out = nn.Parameter(torch.empty(cfg.n_experts, cfg.expert_dim, cfg.d_model))
        self.shared = (
            MLP(cfg, cfg.n_shared_experts * cfg.expert_dim) if cfg.n_shared_experts else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.bias_rate = cfg.router_bias_rate
        self.router_mult = multipliers(cfg).router
        # Aux-loss-free balancing (DeepSeek-V3): a bias that only steers the top-k choice.
        self.register_buffer("expert_bias", torch.zeros(cfg.n_experts))
        self.register_buffer("load_since_update", torch.zeros(cfg.n_experts), persistent=False)
        self.expert_impl: str = "auto"  # "auto" | "grouped_mm" | "loop"
        self.init_std = cfg.init_std
        self.resid_std = (
            cfg.init_std / math.sqrt(2 * cfg.n_layers) if cfg.scaled_residual_init else cfg.init_std
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(
        self,
        router_std: float | None = None,
        in_std: float | None = None,
        out_std: float | None = None,
    ) -> None:
        """Router and expert inputs at init_std; expert outputs, being residual-branch
        projections, at the GPT-2 scaled std (as Transformer does for dense blocks). The
        Transformer gives the stds its parametrization sets."""
        nn.init.normal_(self.router.weight, std=router_std or self.init_std)
        nn.init.normal_(self.w_in, std=in_std or self.init_std)
        nn.init.normal_(self.w_out, std=out_std or self.resid_std)
        self.expert_bias.zero_()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, RoutingStats]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        n_tokens = flat.shape[0]

        # The router runs in fp32 whatever the autocast: small logits differences flip top-k.
        # Called as a module, so that under FSDP its own unit (fp32) gathers its weight.
        with torch.autocast(device_type=flat.device.type, enabled=False):
            logits = self.router(flat.float())
            if self.router_mult != 1.0:  # µP: a readout's 1/m
                logits = logits * self.router_mult
        probs = logits.softmax(dim=-1)
        choice = probs + self.expert_bias if self.bias_rate else probs
        top_idx = choice.topk(self.top_k, dim=-1).indices
        top_w = probs.gather(-1, top_idx)
        top_w = top_w / top_w.sum(dim=-1, keepdim=True)

        slots = top_idx.reshape(-1)  # (n_tokens * top_k,), expert of each (token, slot)
        order = slots.argsort(stable=True)
        token_of = order // self.top_k
        # scatter_add, not bincount: a shape known before the data, so no graph break
        # under torch.compile
        counts = torch.zeros(self.n_experts, dtype=torch.long, device=slots.device)
        counts.scatter_add_(0, slots, torch.ones_like(slots))
        ys = self._experts(flat[token_of], counts)
        ys = ys * top_w.reshape(-1)[order, None].to(ys.dtype)
        out = torch.zeros_like(flat).index_add_(0, token_of, ys.to(flat.dtype))
        out = self.dropout(out.view(shape))
        if self.shared is not None:
            out = out + self.shared(x)

        load = counts.float() / (n_tokens * self.top_k)
        if self.training and self.bias_rate:
            self.load_since_update += counts.detach().float()
        stats = RoutingStats(
            aux_loss=self.n_experts * (load * probs.mean(dim=0)).sum(),
            z_loss=torch.logsumexp(logits, dim=-1).square().mean(),
            load=load.detach(),
        )
        return out, stats

    def _experts(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Expert MLPs on tokens already sorted by expert; ``counts`` tokens per expert."""
        impl = self.expert_impl
        if impl == "auto":
            bf16 = xs.dtype == torch.bfloat16 or (
                torch.is_autocast_enabled(xs.device.type)
                and torch.get_autocast_dtype(xs.device.type) == torch.bfloat16
            )
            impl = expert_impl_for(xs.device.type, bf16, xs.shape[-1], self.expert_dim)
        if impl == "grouped_mm":
            offs = counts.cumsum(0).to(torch.int32)
            h = self._grouped_mm(xs, self.w_in, offs)
            h = self._activate(h)
            return self._grouped_mm(h, self.w_out, offs)
        return self._expert_loop(xs, counts)

    # Eager even inside a compiled block: each expert's token count is data, so dynamo would
    # break the graph at ``tolist`` and recompile the slices for every new count until its
    # recompile limit (8, seen on an H200 in benchmarks/gpu_check.sh), then run them eagerly.
    @torch.compiler.disable
    def _expert_loop(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        outputs, start = [], 0
        for expert, n in enumerate(counts.tolist()):
            part = xs[start : start + n]
            outputs.append(self._activate(part @ self.w_in[expert]) @ self.w_out[expert])
            start += n
        return torch.cat(outputs)

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = h.split(self.expert_dim, dim=-1)
            return self.act(gate) * up
        return self.act(h)

    @staticmethod
    def _grouped_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:  # the CUDA kernel takes bf16 only (expert_impl_for picks it for bf16 runs)
            w = w.to(torch.bfloat16)
            return torch._grouped_mm(x.to(torch.bfloat16), w, offs=offs).to(x.dtype)
        return torch._grouped_mm(x, w.to(x.dtype), offs=offs)

    @torch.no_grad()
    def update_bias(self) -> None:
        """Raise the bias of under-loaded experts, lower it for over-loaded ones."""
        load = self.load_since_update
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(load)
        if load.sum() > 0:
            self.expert_bias += self.bias_rate * torch.sign(load.mean() - load)
        load.zero_()
