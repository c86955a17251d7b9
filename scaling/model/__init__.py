"""Decoder-only transformers, dense and Mixture-of-Experts, built from one ``ModelConfig``."""

from scaling.config import ModelConfig
from scaling.model.moe import MoE
from scaling.model.transformer import ModelOutput, Transformer, load_pretrained, save_pretrained

__all__ = [
    "ModelConfig",
    "ModelOutput",
    "MoE",
    "Transformer",
    "load_pretrained",
    "save_pretrained",
]
