"""Causal self-attention: MHA, GQA and MQA through ``n_kv_heads``; optional QK-norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config import ModelConfig
from scaling.model.layers import apply_rope, make_norm
from scaling.model.parametrization import multipliers


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        qkv_dim = (cfg.n_heads + 2 * cfg.kv_heads) * cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, qkv_dim, bias=cfg.bias)
        self.out = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=cfg.bias)
        self.q_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else None
        self.k_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else None
        self.attn_dropout = cfg.attn_dropout
        self.scale = multipliers(cfg).attention_scale  # None: SDPA's 1/sqrt(head_dim)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(
            [
                self.n_heads * self.head_dim,
                self.n_kv_heads * self.head_dim,
                self.n_kv_heads * self.head_dim,
            ],
            dim=-1,
        )
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        gqa = self.n_kv_heads != self.n_heads
        if gqa and q.is_cuda and q.dtype == torch.float32:
            # CUDA's GQA runs in the flash kernel (bf16/fp16 only) or the math one, which keeps
            # the (B, H, T, T) scores: in fp32, repeat the shared heads and take the
            # memory-efficient kernel instead.
            k, v = repeat_kv_heads(k, v, self.n_heads // self.n_kv_heads)
            gqa = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=True,
            dropout_p=self.attn_dropout if self.training else 0.0,
            enable_gqa=gqa,
            scale=self.scale,
        )
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.resid_dropout(self.out(y))


def repeat_kv_heads(
    k: torch.Tensor, v: torch.Tensor, groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, n_kv_heads, T, d) keys and values as (B, n_kv_heads * groups, T, d): query head h
    reads shared head h // groups, as ``enable_gqa`` does."""
    return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
