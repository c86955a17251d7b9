import itertools
import math

import pytest
import torch

from scaling.model import ModelConfig, Transformer
from scaling.model.layers import apply_rope, rope_cos_sin

TINY = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [dict(), dict(n_kv_heads=2, position="learned"), dict(n_experts=4, top_k=2, position="none")],
)
def test_causal(overrides):
    torch.manual_seed(0)
    model = Transformer(tiny(**overrides)).eval()
    idx = torch.randint(0, 64, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = torch.randint(0, 64, (2, 6))
    a, b = model(idx).logits, model(changed).logits
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_gqa_equals_mha_with_repeated_kv_heads():
    torch.manual_seed(0)
    gqa = Transformer(tiny(n_heads=4, n_kv_heads=2)).eval()
    mha = Transformer(tiny(n_heads=4)).eval()
    state = gqa.state_dict()
    hd, h, kv = 8, 4, 2
    for layer in range(2):
        key = f"blocks.{layer}.attn.qkv.weight"
        q, k, v = state[key].split([h * hd, kv * hd, kv * hd])
        # query head i reads kv head i // (h / kv)
        k = k.view(kv, hd, -1).repeat_interleave(h // kv, dim=0).reshape(h * hd, -1)
        v = v.view(kv, hd, -1).repeat_interleave(h // kv, dim=0).reshape(h * hd, -1)
        state[key] = torch.cat([q, k, v])
    mha.load_state_dict(state)
    idx = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(gqa(idx).logits, mha(idx).logits, rtol=1e-5, atol=1e-5)


def test_mha_is_gqa_with_as_many_kv_heads():
    torch.manual_seed(0)
    explicit = Transformer(tiny(n_kv_heads=4)).eval()
    implicit = Transformer(tiny()).eval()
    implicit.load_state_dict(explicit.state_dict())
    idx = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(explicit(idx).logits, implicit(idx).logits)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    cos, sin = rope_cos_sin(64, 16, 10000.0, torch.device("cpu"))
    q, k = torch.randn(16), torch.randn(16)

    def score(m: int, n: int) -> torch.Tensor:
        qm = apply_rope(q.expand(64, 16).clone(), cos, sin)[m]
        kn = apply_rope(k.expand(64, 16).clone(), cos, sin)[n]
        return qm @ kn

    for m, n, shift in [(5, 2, 7), (30, 30, 11), (3, 9, 40)]:
        torch.testing.assert_close(score(m, n), score(m + shift, n + shift), rtol=1e-4, atol=1e-4)
    assert not torch.isclose(score(5, 2), score(5, 3))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(activation="swiglu", norm="rmsnorm"),
        dict(n_experts=8, top_k=2, tie_embeddings=False),
    ],
)
def test_initial_loss_is_log_vocab(overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=4096, d_model=128, n_layers=4, n_heads=4, max_seq_len=64, **overrides
    )
    model = Transformer(cfg)
    idx = torch.randint(0, 4096, (4, 64))
    out = model(idx, torch.randint(0, 4096, (4, 64)))
    assert abs(out.ce_loss.item() - math.log(4096)) < 0.15


VARIANTS = list(
    itertools.product(
        [4, 2, 1],  # n_kv_heads: MHA, GQA, MQA
        ["relu", "gelu", "swiglu"],
        ["rope", "sinusoidal", "learned", "none"],
        [0, 4],  # dense, MoE
    )
)


@pytest.mark.slow
@pytest.mark.parametrize("n_kv_heads, activation, position, n_experts", VARIANTS)
def test_every_variant_overfits_a_tiny_batch(n_kv_heads, activation, position, n_experts):
    torch.manual_seed(0)
    cfg = tiny(
        n_kv_heads=n_kv_heads,
        activation=activation,
        position=position,
        n_experts=n_experts,
        top_k=2,
        n_layers=1,
        qk_norm=n_kv_heads == 2,
    )
    model = Transformer(cfg)
    idx = torch.randint(0, 64, (2, 16))
    targets = torch.randint(0, 64, (2, 16))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        out = model(idx, targets)
        first = first if first is not None else out.ce_loss.item()
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.ce_loss.item() < 0.1 * first


def test_ignore_index_and_max_seq_len():
    model = Transformer(tiny())
    idx = torch.randint(0, 64, (1, 8))
    targets = torch.full((1, 8), -1)
    targets[0, 0] = 3
    loss = model(idx, targets).ce_loss
    expected = torch.nn.functional.cross_entropy(model(idx).logits[0, :1], targets[0, :1])
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_tied_embeddings_share_storage_and_residual_init_is_scaled():
    torch.manual_seed(0)
    model = Transformer(tiny(n_layers=8, d_model=256, n_heads=4))
    assert model.lm_head.weight is model.tok_emb.weight
    untied = Transformer(tiny(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.tok_emb.weight
    qkv_std = model.blocks[0].attn.qkv.weight.std().item()
    out_std = model.blocks[0].attn.out.weight.std().item()
    assert qkv_std == pytest.approx(0.02, rel=0.05)
    assert out_std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_same_seed_same_model_and_dropout_only_in_training():
    torch.manual_seed(3)
    a = Transformer(tiny(dropout=0.5, attn_dropout=0.5, embed_dropout=0.5))
    torch.manual_seed(3)
    b = Transformer(tiny(dropout=0.5, attn_dropout=0.5, embed_dropout=0.5))
    idx = torch.randint(0, 64, (2, 16))
    a.eval(), b.eval()
    torch.testing.assert_close(a(idx).logits, b(idx).logits)
    a.train()
    assert not torch.allclose(a(idx).logits, b(idx).logits)


def test_repeated_kv_heads_attend_as_grouped_query_attention():
    """The fp32 CUDA path of GQA (shared heads repeated) gives what enable_gqa gives."""
    import torch.nn.functional as F

    from scaling.model.attention import repeat_kv_heads

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 8, 16, 8), torch.randn(2, 2, 16, 8), torch.randn(2, 2, 16, 8)
    grouped = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, *repeat_kv_heads(k, v, 4), is_causal=True), grouped
    )
