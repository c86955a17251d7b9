"""How a model's initialisation, forward multipliers and per-parameter learning rates scale
with its width and depth: the standard parametrization, µP and CompleteP.

µP (Yang et al., Tensor Programs V, arXiv:2203.03466) keeps the optimal learning rate and
initialisation of a model tuned at ``base_width`` as its width grows; CompleteP (Dey et al.
2025, arXiv:2505.01618) does the same across depth from ``base_depth``. The rules are the
nanoGPT-mup / Cerebras convention for Adam, which works with tied embeddings (the readout's
1/m sits on the logits, not on the shared matrix):

- EleutherAI/nanoGPT-mup at b2a5e60, ``model.py``: ``mup_width_multiplier``, hidden init
  std σ/√m, hidden Adam lr η/m, embedding output ×α_in, logits ×α_out/m, attention 1/d_head;
- its ``completep`` branch at 6f8bc3b (the paper's own code): residual branches ×(L0/L)^α,
  α = 1, the GPT-2 depth factor on out-projections dropped, Adam eps ε/(m·(L/L0));
- microsoft/mup at 1981497, ``mup/optim.py`` (MuAdamW: lr/width_mult on matrix-like
  parameters, weight decay ×width_mult so that lr·wd stays the same), ``mup/layer.py``
  (MuReadout: the output's 1/width_mult), which we also apply to the MoE router, a readout.

Every multiplier comes from the config and the parameter's name, never from tags on tensors,
so it survives FSDP2, which replaces every parameter with a sharded one. The rules assume the
hidden sizes grow with ``d_model`` (the shape rules keep ``head_dim`` and the feed-forward
ratio fixed), so one width multiplier m = d_model / base_width serves every hidden matrix.
At the base width and depth every multiplier is 1 and the model is the standard one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling.config import ModelConfig

# Parameter kinds by name: hidden matrices (fan-in grows with width), the in-block vectors
# (norm gains, biases), and everything else (embeddings, readout, router, final norm).
HIDDEN = ("attn.qkv.weight", "attn.out.weight", "w_up.weight", "w_gate.weight", "w_down.weight")
EXPERTS = ("ffn.w_in", "ffn.w_out")
OUT_PROJECTIONS = ("attn.out.weight", "w_down.weight", "ffn.w_out")


@dataclass(frozen=True)
class Multipliers:
    """The numbers a parametrization puts into a model of one width and depth."""

    width: float = 1.0  # m = d_model / base_width
    depth: float = 1.0  # m_L = n_layers / base_depth (CompleteP)
    input: float = 1.0  # on the embedding output
    output: float = 1.0  # on the logits
    residual: float = 1.0  # on each block's two branches
    router: float = 1.0  # on the MoE router's logits
    attention_scale: float | None = None  # SDPA's scale; None: 1/sqrt(head_dim)
    depth_init: bool = True  # the GPT-2 1/sqrt(2·n_layers) on out-projections


def multipliers(cfg: ModelConfig) -> Multipliers:
    if cfg.parametrization == "standard":
        return Multipliers(depth_init=cfg.scaled_residual_init)
    m = cfg.d_model / cfg.base_width
    base_head_dim = cfg.base_head_dim or cfg.head_dim
    common = dict(
        width=m,
        input=cfg.mup_input_alpha,
        output=cfg.mup_output_alpha / m,
        router=1.0 / m,
        attention_scale=math.sqrt(base_head_dim) / cfg.head_dim,
    )
    if cfg.parametrization == "mup":
        return Multipliers(**common, depth_init=cfg.scaled_residual_init)
    depth = cfg.n_layers / cfg.base_depth
    return Multipliers(**common, depth=depth, residual=1.0 / depth, depth_init=False)


def kind_of(name: str) -> str:
    """ "hidden" (a matrix whose fan-in grows with width), "block_vector" (a norm gain or a
    bias inside a block), or "other" (embeddings, readout, router, final norm)."""
    name = name.replace("_orig_mod.", "").removeprefix("module.")
    if name.endswith(HIDDEN) or any(part in name for part in EXPERTS):
        return "hidden"
    if name.startswith("blocks.") and ".router." not in name:
        return "block_vector"
    return "other"


def init_std(cfg: ModelConfig, name: str) -> float:
    """The standard deviation a weight matrix of this name starts from."""
    mult = multipliers(cfg)
    std = cfg.init_std
    if kind_of(name) != "hidden":
        return std
    std /= math.sqrt(mult.width)
    if mult.depth_init and name.endswith(OUT_PROJECTIONS):
        std /= math.sqrt(2 * cfg.n_layers)
    return std


@dataclass(frozen=True)
class GroupScales:
    """An optimizer group's multipliers of the schedule's lr, of Adam's eps, of weight decay."""

    lr: float = 1.0
    eps: float = 1.0
    weight_decay: float = 1.0


def group_scales(cfg: ModelConfig, name: str) -> GroupScales:
    if cfg.parametrization == "standard":
        return GroupScales()
    mult = multipliers(cfg)
    kind = kind_of(name)
    if kind == "other":
        return GroupScales()
    # Adam's update is lr·m̂/(√v̂ + eps): eps shrinks with the gradients of in-block
    # parameters (1/m, and 1/m_L under CompleteP), or it would swamp them at large widths.
    eps = 1.0 / (mult.width * mult.depth)
    if kind == "block_vector":
        return GroupScales(eps=eps)
    # lr·wd stays what it was at the base width (AdamW decays by lr·wd)
    return GroupScales(lr=1.0 / mult.width, eps=eps, weight_decay=mult.width)
