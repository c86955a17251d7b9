"""The small pieces of a block: norms, position encodings, the dense MLP."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config import ModelConfig


def make_norm(cfg: ModelConfig, dim: int) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=cfg.norm_eps)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.bias)


def activation_fn(name: str):
    return {"relu": F.relu, "gelu": F.gelu, "swiglu": F.silu}[name]


class MLP(nn.Module):
    """Feed-forward block. SwiGLU: down(silu(gate(x)) * up(x)); otherwise down(act(up(x)))."""

    def __init__(self, cfg: ModelConfig, width: int):
        super().__init__()
        self.gated = cfg.activation == "swiglu"
        self.act = activation_fn(cfg.activation)
        self.w_up = nn.Linear(cfg.d_model, width, bias=cfg.bias)
        self.w_gate = nn.Linear(cfg.d_model, width, bias=cfg.bias) if self.gated else None
        self.w_down = nn.Linear(width, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            h = self.act(self.w_gate(x)) * self.w_up(x)
        else:
            h = self.act(self.w_up(x))
        return self.dropout(self.w_down(h))


def rope_cos_sin(
    seq_len: int, head_dim: int, theta: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, head_dim), fp32, in the rotate-half layout.

    Computed per forward pass rather than stored as buffers: they cost a few microseconds
    and a model without buffers initialises cleanly on the meta device under FSDP.
    """
    inv_freq = theta ** (
        -torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim
    )
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) queries or keys by position."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def sinusoidal_positions(seq_len: int, dim: int, device: torch.device) -> torch.Tensor:
    """The fixed encoding of Vaswani et al. (2017), shape (seq_len, dim)."""
    position = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(seq_len, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table
