"""The optimizer of a run: AdamW over parameter groups, each with its own learning-rate scale.

The schedule gives one learning rate per step; each group trains at that rate times its
``lr_scale`` (1 under the standard parametrization). Groups are found by parameter name, so
they survive FSDP2, which replaces every parameter with a sharded one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from scaling.config import TrainConfig


def parameter_groups(model: nn.Module, train: TrainConfig) -> list[dict[str, Any]]:
    """Weight decay on matrices; norms, biases and embeddings excluded unless
    ``train.decay_norms_and_embeddings``."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_embedding = "tok_emb" in name or "pos_emb" in name
        if train.decay_norms_and_embeddings or (param.ndim >= 2 and not is_embedding):
            decay.append(param)
        else:
            no_decay.append(param)
    return [
        {"params": decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
    ]


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        [group for group in parameter_groups(model, train) if group["params"]],
        lr=train.lr,
        betas=train.betas,
        eps=train.eps,
        weight_decay=train.weight_decay,
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's ``lr`` for this step, times each group's own scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
