"""Exact parameter counts and training FLOPs per token, from a ``ModelConfig`` alone.

No model is built and torch is not imported: the planner calls these thousands of times
during shape search. The tests hold every count equal to ``sum(p.numel())`` of the built
model, and the ``"exact"`` FLOPs equal to what ``torch.utils.flop_counter`` counts.

Conventions
- Embedding parameters (Kaplan et al. exclude them from N): the token embedding, a learned
  position table, and the output projection when it is not tied to the token embedding.
- Active parameters: what one token uses. An MoE layer contributes its router, ``top_k`` of
  its routed experts and all of its shared experts.
- Training FLOPs = 3 × forward FLOPs (the backward pass computes two matmuls for each
  forward one: the gradient of the input and of the weight).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from scaling.config import ModelConfig

FlopMethod = Literal["6N", "6N_nonembedding", "chinchilla", "exact"]
FLOP_METHODS: tuple[str, ...] = ("6N", "6N_nonembedding", "chinchilla", "exact")


@dataclass(frozen=True)
class ParamCount:
    total: int
    embedding: int
    non_embedding: int
    active: int
    active_non_embedding: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _norm_params(cfg: ModelConfig, dim: int) -> int:
    with_bias = cfg.norm == "layernorm" and cfg.bias
    return dim * (2 if with_bias else 1)


def _n_in_matrices(cfg: ModelConfig) -> int:
    """Input projections of an MLP: SwiGLU has a gate and an up matrix."""
    return 2 if cfg.activation == "swiglu" else 1


def _mlp_params(cfg: ModelConfig, width: int) -> int:
    d, n_in = cfg.d_model, _n_in_matrices(cfg)
    weights = (n_in + 1) * d * width
    biases = n_in * width + d if cfg.bias else 0
    return weights + biases


def _expert_params(cfg: ModelConfig) -> int:
    """One routed expert; experts carry no biases."""
    return (_n_in_matrices(cfg) + 1) * cfg.d_model * cfg.expert_dim


def _attention_params(cfg: ModelConfig) -> int:
    d, hd = cfg.d_model, cfg.head_dim
    qkv_out = (cfg.n_heads + 2 * cfg.kv_heads) * hd
    params = d * qkv_out + cfg.n_heads * hd * d
    if cfg.bias:
        params += qkv_out + d
    if cfg.qk_norm:
        params += 2 * _norm_params(cfg, hd)
    return params


def _layer_params(cfg: ModelConfig, layer: int) -> tuple[int, int]:
    """(total, active) parameters of one transformer block."""
    common = 2 * _norm_params(cfg, cfg.d_model) + _attention_params(cfg)
    if not cfg.is_moe_layer(layer):
        mlp = _mlp_params(cfg, cfg.ff_dim)
        return common + mlp, common + mlp
    router = cfg.d_model * cfg.n_experts
    shared = _mlp_params(cfg, cfg.n_shared_experts * cfg.expert_dim) if cfg.n_shared_experts else 0
    total = common + router + shared + cfg.n_experts * _expert_params(cfg)
    active = common + router + shared + cfg.top_k * _expert_params(cfg)
    return total, active


def count_params(cfg: ModelConfig) -> ParamCount:
    """Exact parameter counts of ``Transformer(cfg)`` without building it."""
    embedding = cfg.vocab_size * cfg.d_model
    if cfg.position == "learned":
        embedding += cfg.max_seq_len * cfg.d_model
    if not cfg.tie_embeddings:
        embedding += cfg.vocab_size * cfg.d_model
    layers = [_layer_params(cfg, i) for i in range(cfg.n_layers)]
    final_norm = _norm_params(cfg, cfg.d_model)
    non_embedding = sum(total for total, _ in layers) + final_norm
    active_non_embedding = sum(active for _, active in layers) + final_norm
    return ParamCount(
        total=embedding + non_embedding,
        embedding=embedding,
        non_embedding=non_embedding,
        active=embedding + active_non_embedding,
        active_non_embedding=active_non_embedding,
    )


def _ffn_forward_flops_per_token(cfg: ModelConfig, layer: int) -> int:
    """Matmul FLOPs of one block's feed-forward for one token (forward only)."""
    d, mats = cfg.d_model, _n_in_matrices(cfg) + 1
    if not cfg.is_moe_layer(layer):
        return 2 * mats * d * cfg.ff_dim
    routed = cfg.top_k + cfg.n_shared_experts
    return 2 * d * cfg.n_experts + 2 * mats * d * cfg.expert_dim * routed


def matmul_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Training matmul FLOPs per token of our implementation at ``seq_len``.

    Attention scores and the weighted values are counted over the full seq_len × seq_len
    square, as ``scaled_dot_product_attention`` computes them (and as ``FlopCounterMode``
    counts them), not the causal half. The fused attention kernels recompute the scores in
    the backward pass: five matmuls there against two forward, so attention costs 3.5×
    its forward FLOPs where every other matmul costs 3×.
    """
    d, hd = cfg.d_model, cfg.head_dim
    attn_dim = cfg.n_heads * hd
    forward = 2 * d * cfg.vocab_size  # output logits
    attention_forward = 0
    for layer in range(cfg.n_layers):
        forward += 2 * d * (cfg.n_heads + 2 * cfg.kv_heads) * hd  # q, k, v projections
        attention_forward += 2 * 2 * seq_len * attn_dim  # q·kᵀ and softmax·v
        forward += 2 * attn_dim * d  # output projection
        forward += _ffn_forward_flops_per_token(cfg, layer)
    return 3 * forward + (7 * attention_forward) // 2


def chinchilla_flops_per_sequence(
    cfg: ModelConfig, seq_len: int, include_embeddings_and_logits: bool = True
) -> float:
    """Training FLOPs of one sequence by Hoffmann et al. (2022), Appendix F.

    Generalised beyond the paper: k and v projections scale with n_kv_heads (GQA), SwiGLU
    has three matrices, an MoE block counts its router, top_k routed and its shared experts.
    The paper's table counts only the transformer layers; pass
    ``include_embeddings_and_logits=False`` to reproduce it.
    """
    T, d, hd, h = seq_len, cfg.d_model, cfg.head_dim, cfg.n_heads
    attn_dim = h * hd
    per_layer_attention = (
        2 * T * d * hd * (h + 2 * cfg.kv_heads)  # key, query and value projections
        + 2 * T * T * attn_dim  # key @ query logits
        + 3 * h * T * T  # softmax
        + 2 * T * T * attn_dim  # softmax @ value reductions
        + 2 * T * attn_dim * d  # final linear
    )
    forward = sum(
        per_layer_attention + T * _ffn_forward_flops_per_token(cfg, i) for i in range(cfg.n_layers)
    )
    if include_embeddings_and_logits:
        forward += 2 * T * cfg.vocab_size * d  # embeddings (as the paper counts them)
        forward += 2 * T * d * cfg.vocab_size  # final logits
    return 3.0 * forward


def flops_per_token(cfg: ModelConfig, seq_len: int, method: FlopMethod = "6N") -> float:
    """Training (forward + backward) FLOPs per token.

    - ``"6N"``: 6 × active parameters (all parameters for a dense model);
    - ``"6N_nonembedding"``: 6 × active non-embedding parameters (Kaplan's N);
    - ``"chinchilla"``: Appendix F accounting with embeddings and logits, per token;
    - ``"exact"``: the matmul FLOPs this implementation executes.
    """
    if method == "6N":
        return 6.0 * count_params(cfg).active
    if method == "6N_nonembedding":
        return 6.0 * count_params(cfg).active_non_embedding
    if method == "chinchilla":
        return chinchilla_flops_per_sequence(cfg, seq_len) / seq_len
    if method == "exact":
        return float(matmul_flops_per_token(cfg, seq_len))
    raise ValueError(f"method must be one of {', '.join(FLOP_METHODS)}; got {method!r}")


def tokens_for_budget(
    cfg: ModelConfig, budget: float, seq_len: int, method: FlopMethod = "6N"
) -> float:
    """Tokens that spend ``budget`` training FLOPs: C / flops_per_token."""
    return budget / flops_per_token(cfg, seq_len, method)


def budget_for_tokens(
    cfg: ModelConfig, tokens: float, seq_len: int, method: FlopMethod = "6N"
) -> float:
    """Training FLOPs of ``tokens`` tokens: D × flops_per_token."""
    return tokens * flops_per_token(cfg, seq_len, method)


def params_for_budget_6n(budget: float, tokens: float) -> float:
    """N from C = 6·N·D (the convention of published scaling tables)."""
    return budget / (6.0 * tokens)


def tokens_for_budget_6n(budget: float, params: float) -> float:
    """D from C = 6·N·D."""
    return budget / (6.0 * params)
