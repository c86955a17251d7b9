import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import (
    FlopCounterMode,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from scaling.config import ModelConfig
from scaling.counting import (
    budget_for_tokens,
    chinchilla_flops_per_sequence,
    count_params,
    flops_per_token,
    matmul_flops_per_token,
    tokens_for_budget,
    tokens_for_budget_6n,
)
from scaling.model import Transformer

aten = torch.ops.aten

# torch counts the fused CUDA attention kernels but not the CPU flash kernel; count the CPU
# one with torch's own formulas so that FlopCounterMode sees the attention matmuls here too.
if aten._scaled_dot_product_flash_attention_for_cpu not in torch.utils.flop_counter.flop_registry:

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _cpu_sdpa_flop(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _cpu_sdpa_backward_flop(grad_out, q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out, q, k, v)


@st.composite
def model_configs(draw):
    head_dim = draw(st.sampled_from([2, 4, 6, 8]))
    n_heads = draw(st.integers(1, 4))
    n_kv_heads = draw(st.sampled_from([h for h in range(1, n_heads + 1) if n_heads % h == 0]))
    n_experts = draw(st.sampled_from([0, 0, 1, 2, 4]))
    n_layers = draw(st.integers(1, 3))
    moe = {}
    if n_experts:
        moe = dict(
            n_experts=n_experts,
            top_k=draw(st.integers(1, n_experts)),
            moe_every=draw(st.integers(1, n_layers)),
            granularity=draw(st.sampled_from([1, 2])),
            n_shared_experts=draw(st.integers(0, 2)),
        )
    return ModelConfig(
        vocab_size=draw(st.integers(5, 80)),
        d_model=head_dim * n_heads,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        d_ff=draw(st.sampled_from([None, 8, 12])),
        d_ff_multiple=draw(st.sampled_from([2, 8])),
        activation=draw(st.sampled_from(["relu", "gelu", "swiglu"])),
        norm=draw(st.sampled_from(["layernorm", "rmsnorm"])),
        position=draw(st.sampled_from(["rope", "sinusoidal", "learned", "none"])),
        max_seq_len=draw(st.integers(4, 32)),
        qk_norm=draw(st.booleans()),
        bias=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
        **moe,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_configs())
def test_param_count_equals_numel(cfg):
    model = Transformer(cfg)
    counted = count_params(cfg)
    assert counted.total == sum(p.numel() for p in model.parameters())
    embedding = sum(
        p.numel()
        for name, p in model.named_parameters()
        if name.split(".")[0] in ("tok_emb", "pos_emb", "lm_head")
    )
    assert counted.embedding == embedding
    assert counted.non_embedding == counted.total - counted.embedding
    # active: the routed experts that a token does not reach are left out
    idle = sum(
        (moe.n_experts - moe.top_k) * (moe.w_in[0].numel() + moe.w_out[0].numel())
        for moe in model.moe_layers()
    )
    assert counted.active == counted.total - idle


FLOP_CASES = {
    "mha-gelu": dict(),
    "gqa-swiglu-rms": dict(n_kv_heads=2, activation="swiglu", norm="rmsnorm"),
    "mqa-relu-learned-bias": dict(n_kv_heads=1, activation="relu", position="learned", bias=True),
    "untied-qknorm-sinusoidal": dict(tie_embeddings=False, qk_norm=True, position="sinusoidal"),
    "moe-top2": dict(n_experts=4, top_k=2, activation="swiglu"),
    "moe-fine-shared-every2": dict(
        n_experts=8, top_k=2, granularity=4, n_shared_experts=1, moe_every=2, n_kv_heads=2
    ),
}


@pytest.mark.parametrize("case", FLOP_CASES)
def test_exact_flops_match_flop_counter(case):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=512, d_model=64, n_layers=2, n_heads=4, max_seq_len=128, **FLOP_CASES[case]
    )
    model = Transformer(cfg)
    batch, seq_len = 3, 96
    idx = torch.randint(0, cfg.vocab_size, (batch, seq_len))
    with FlopCounterMode(display=False) as counter:
        model(idx, torch.randint(0, cfg.vocab_size, (batch, seq_len))).loss.backward()
    measured = counter.get_total_flops() / (batch * seq_len)
    predicted = matmul_flops_per_token(cfg, seq_len)
    assert predicted == pytest.approx(measured, rel=0.01)
    assert flops_per_token(cfg, seq_len, "exact") == predicted


# Hoffmann et al. (2022), Table A4: (layers, d_model, heads) -> forward+backward FLOPs per
# sequence of 2048 tokens, transformer layers only.
CHINCHILLA_TABLE = [
    ((10, 640, 10), 9.2988e11),
    ((20, 1024, 16), 4.1352e12),
    ((24, 1280, 10), 7.3535e12),
    ((26, 1792, 14), 1.4670e13),
    ((28, 2048, 16), 2.0220e13),
    ((40, 3584, 28), 8.3021e13),
]


@pytest.mark.parametrize("shape, expected", CHINCHILLA_TABLE)
def test_chinchilla_appendix_f_table(shape, expected):
    n_layers, d_model, n_heads = shape
    cfg = ModelConfig(
        vocab_size=32000,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        d_ff=4 * d_model,
        max_seq_len=2048,
    )
    layers_only = chinchilla_flops_per_sequence(cfg, 2048, include_embeddings_and_logits=False)
    assert layers_only == pytest.approx(expected, rel=1e-3)
    with_ends = chinchilla_flops_per_sequence(cfg, 2048)
    assert with_ends - layers_only == pytest.approx(3 * 2 * 2 * 2048 * 32000 * d_model)
    assert flops_per_token(cfg, 2048, "chinchilla") == pytest.approx(with_ends / 2048)


def test_chinchilla_generalises_to_gqa_swiglu_and_moe():
    base = dict(vocab_size=1000, d_model=256, n_layers=2, n_heads=8, d_ff=512, max_seq_len=64)
    mha = chinchilla_flops_per_sequence(ModelConfig(**base), 64, False)
    gqa = chinchilla_flops_per_sequence(ModelConfig(**base, n_kv_heads=2), 64, False)
    # k and v projections shrink from 8 heads to 2: 2·T·d·hd·(2·6 heads) per layer, ×3, ×2 layers
    assert mha - gqa == 3 * 2 * (2 * 64 * 256 * 32 * 12)
    swiglu = chinchilla_flops_per_sequence(ModelConfig(**base, activation="swiglu"), 64, False)
    assert swiglu - mha == 3 * 2 * (2 * 64 * 256 * 512)
    moe = ModelConfig(**base, n_experts=8, top_k=2)
    moe_flops = chinchilla_flops_per_sequence(moe, 64, False)
    router = 2 * 64 * 256 * 8
    assert moe_flops - mha == 3 * 2 * (router + 2 * 64 * 2 * 256 * 512)


def test_six_n_uses_active_params():
    dense = ModelConfig(vocab_size=1000, d_model=64, n_layers=2, n_heads=4)
    assert flops_per_token(dense, 32, "6N") == 6 * count_params(dense).total
    assert flops_per_token(dense, 32, "6N_nonembedding") == 6 * count_params(dense).non_embedding
    moe = ModelConfig(vocab_size=1000, d_model=64, n_layers=2, n_heads=4, n_experts=8, top_k=2)
    counted = count_params(moe)
    assert counted.active < counted.total
    assert flops_per_token(moe, 32, "6N") == 6 * counted.active
    with pytest.raises(ValueError, match="method must be one of"):
        flops_per_token(moe, 32, "7N")


@pytest.mark.parametrize("method", ["6N", "6N_nonembedding", "chinchilla", "exact"])
def test_budget_tokens_round_trip(method):
    cfg = ModelConfig(vocab_size=1000, d_model=64, n_layers=2, n_heads=4, max_seq_len=256)
    tokens = tokens_for_budget(cfg, 1e15, 256, method)
    assert budget_for_tokens(cfg, tokens, 256, method) == pytest.approx(1e15)
    assert tokens == pytest.approx(1e15 / flops_per_token(cfg, 256, method))


def test_six_n_helpers():
    assert tokens_for_budget_6n(6e18, 1e8) == pytest.approx(1e10)
    assert math.isclose(6 * 1e8 * tokens_for_budget_6n(1e20, 1e8), 1e20)
