"""The optimizer of a run: AdamW over parameter groups, each with its own learning-rate scale.

The schedule gives one learning rate per step; each group trains at that rate times its
``lr_scale`` (1 under the standard parametrization). Groups are found by parameter name, so
they survive FSDP2, which replaces every parameter with a sharded one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from scaling.config import ModelConfig, TrainConfig
from scaling.model.parametrization import GroupScales, group_scales


def parameter_groups(
    model: nn.Module, train: TrainConfig, cfg: ModelConfig
) -> list[dict[str, Any]]:
    """Weight decay on matrices (norms, biases and embeddings excluded unless
    ``train.decay_norms_and_embeddings``); each group with the lr, eps and weight-decay
    multipliers its parameters' parametrization gives (all 1 under the standard one)."""
    groups: dict[tuple[bool, GroupScales], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        is_embedding = "tok_emb" in name or "pos_emb" in name
        decays = train.decay_norms_and_embeddings or (param.ndim >= 2 and not is_embedding)
        scales = group_scales(cfg, name)
        group = groups.setdefault(
            (decays, scales),
            {
                "params": [],
                "lr_scale": scales.lr,
                "eps": train.eps * scales.eps,
                "weight_decay": train.weight_decay * scales.weight_decay if decays else 0.0,
            },
        )
        group["params"].append(param)
    # decaying groups first: the order the optimizer's state had before the parametrizations
    return [groups[key] for key in sorted(groups, key=lambda key: not key[0])]


def build_optimizer(model: nn.Module, train: TrainConfig, cfg: ModelConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        parameter_groups(model, train, cfg),
        lr=train.lr,
        betas=train.betas,
        eps=train.eps,
        weight_decay=train.weight_decay,
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's ``lr`` for this step, times each group's own scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
