"""A trained model in the format Hugging Face transformers loads without custom code.

Our dense transformer with RoPE (rotate-half layout), SwiGLU, RMSNorm and no biases is
exactly transformers' Llama: the fused q/k/v projection is split into q_proj, k_proj and
v_proj, the rest is renamed. The multipliers of µP and CompleteP (``parametrization``) are
folded into the weights, each into the linear map it multiplies: the logits' into the final
norm's gain, the attention scale (as a ratio to Llama's 1/sqrt(head_dim)) into q_proj (RoPE
rotates q, so the factor passes through it), CompleteP's residual factor into o_proj and
down_proj, the embedding's into the embedding (untied from lm_head when they would differ).
Other architectures (LayerNorm, GELU, learned or sinusoidal positions, QK-norm, biases,
Mixture-of-Experts) have no exact equivalent there and are refused with the reason: a near
equivalent would load and silently compute something else.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from scaling.config import ConfigError, ModelConfig
from scaling.fileio import atomic_folder
from scaling.model.parametrization import multipliers
from scaling.model.transformer import Transformer


def llama_mismatch(cfg: ModelConfig) -> str | None:
    """Why ``cfg`` is not a Llama, or None when it is one."""
    wanted = {
        "position": "rope",
        "activation": "swiglu",
        "norm": "rmsnorm",
        "bias": False,
        "qk_norm": False,
        "n_experts": 0,
    }
    for key, value in wanted.items():
        if getattr(cfg, key) != value:
            return f"model.{key} = {getattr(cfg, key)!r} (a Llama has {value!r})"
    return None


def llama_config(cfg: ModelConfig) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ff_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied_in_export(cfg),
        "torch_dtype": "float32",
    }


def tied_in_export(cfg: ModelConfig) -> bool:
    """A tied embedding stays tied unless µP scales the embedding's output, which the shared
    matrix cannot carry for the embedding without carrying it for the logits too."""
    return cfg.tie_embeddings and multipliers(cfg).input == 1.0


def llama_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    cfg, mult = model.cfg, multipliers(model.cfg)
    q, kv = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    # SDPA's scale against Llama's 1/sqrt(head_dim): the ratio goes into q
    query = 1.0 if mult.attention_scale is None else mult.attention_scale * math.sqrt(cfg.head_dim)
    out = {
        "model.embed_tokens.weight": model.tok_emb.weight * mult.input,
        "model.norm.weight": model.norm.weight * mult.output,
    }
    if not tied_in_export(cfg):
        out["lm_head.weight"] = model.lm_head.weight
    for i, block in enumerate(model.blocks):
        prefix = f"model.layers.{i}."
        wq, wk, wv = block.attn.qkv.weight.split([q, kv, kv], dim=0)
        out.update(
            {
                prefix + "input_layernorm.weight": block.attn_norm.weight,
                prefix + "self_attn.q_proj.weight": wq * query,
                prefix + "self_attn.k_proj.weight": wk,
                prefix + "self_attn.v_proj.weight": wv,
                prefix + "self_attn.o_proj.weight": block.attn.out.weight * mult.residual,
                prefix + "post_attention_layernorm.weight": block.ffn_norm.weight,
                prefix + "mlp.gate_proj.weight": block.ffn.w_gate.weight,
                prefix + "mlp.up_proj.weight": block.ffn.w_up.weight,
                prefix + "mlp.down_proj.weight": block.ffn.w_down.weight * mult.residual,
            }
        )
    return {name: tensor.detach().contiguous().clone() for name, tensor in out.items()}


def export_hf(model: Transformer, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` that ``AutoModelForCausalLM`` loads.
    Raises ConfigError naming the field when the architecture has no exact equivalent."""
    from safetensors.torch import save_file

    reason = llama_mismatch(model.cfg)
    if reason is not None:
        raise ConfigError(f"no transformers architecture computes this model exactly: {reason}")
    directory = Path(directory)
    with atomic_folder(directory) as tmp:  # all of it or, after a failure, nothing new
        save_file(llama_state_dict(model), str(tmp / "model.safetensors"), {"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(llama_config(model.cfg), indent=2) + "\n")
    return directory
