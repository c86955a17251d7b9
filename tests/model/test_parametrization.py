"""µP and CompleteP: at the base width and depth the model is the standard one; away from it
each weight starts, moves and is multiplied as the references say; bad settings are one line."""

import math
import subprocess
import sys

import pytest
import torch

from scaling.config import ModelConfig, TrainConfig
from scaling.model import Transformer
from scaling.model.parametrization import group_scales, kind_of, multipliers
from scaling.training.optimizer import build_optimizer, set_learning_rate

BASE = dict(vocab_size=97, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)
TRAIN = TrainConfig(lr=1e-3, eps=1e-8, weight_decay=0.1)


def wide(**changes) -> ModelConfig:
    """Four times the base width, heads of the same size."""
    return ModelConfig(**{**BASE, "d_model": 128, "n_heads": 16, **changes})


@pytest.mark.parametrize("kind", ["mup", "completep"])
def test_at_the_base_width_and_depth_the_model_is_the_standard_one(kind):
    extra = {"base_depth": 2} if kind == "completep" else {}
    standard, scaled = (
        ModelConfig(**BASE),
        ModelConfig(**BASE, parametrization=kind, base_width=32, **extra),
    )
    idx = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(0))
    outputs, lrs = [], []
    for cfg in (standard, scaled):
        torch.manual_seed(0)
        model = Transformer(cfg)
        outputs.append(model(idx).logits)
        optimizer = build_optimizer(model, TRAIN, cfg)
        set_learning_rate(optimizer, 1e-3)
        lrs.append(
            sorted(
                (g["lr"], g["eps"], g["weight_decay"], len(g["params"]))
                for g in optimizer.param_groups
            )
        )
    # CompleteP drops GPT-2's depth factor on out-projections: its init differs, not its sizes
    if kind == "mup":
        assert torch.equal(outputs[0], outputs[1])
    assert {lr for lr, *_ in lrs[1]} == {1e-3}
    assert {eps for _, eps, *_ in lrs[1]} == {1e-8}


def test_mup_away_from_the_base_width():
    cfg = wide(parametrization="mup", base_width=32, mup_input_alpha=2.0, mup_output_alpha=3.0)
    mult = multipliers(cfg)
    assert (mult.width, mult.input, mult.output, mult.router) == (4.0, 2.0, 0.75, 0.25)
    assert mult.attention_scale == pytest.approx(1 / math.sqrt(cfg.head_dim))  # head_dim kept
    torch.manual_seed(0)
    model = Transformer(cfg)
    std = {name: p.std().item() for name, p in model.named_parameters() if p.ndim == 2}
    # hidden matrices at init_std / sqrt(m) (out-projections also / sqrt(2 L)); the embedding
    # at init_std
    assert std["blocks.0.attn.qkv.weight"] == pytest.approx(0.02 / 2, rel=0.05)
    assert std["blocks.0.ffn.w_down.weight"] == pytest.approx(0.02 / 2 / 2, rel=0.05)
    assert std["tok_emb.weight"] == pytest.approx(0.02, rel=0.05)

    optimizer = build_optimizer(model, TRAIN, cfg)
    set_learning_rate(optimizer, 1e-3)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    hidden = group_of[id(named["blocks.1.attn.out.weight"])]
    assert (hidden["lr"], hidden["eps"], hidden["weight_decay"]) == pytest.approx(
        (2.5e-4, 2.5e-9, 0.4)
    )
    gain = group_of[id(named["blocks.1.ffn_norm.weight"])]
    assert (gain["lr"], gain["eps"], gain["weight_decay"]) == pytest.approx((1e-3, 2.5e-9, 0.0))
    embedding = group_of[id(named["tok_emb.weight"])]
    assert (embedding["lr"], embedding["eps"]) == pytest.approx((1e-3, 1e-8))
    # the schedule multiplies each group's own scale, never overwrites it
    set_learning_rate(optimizer, 2e-3)
    assert hidden["lr"] == pytest.approx(5e-4) and embedding["lr"] == pytest.approx(2e-3)


def test_the_forward_multipliers_are_the_ones_applied():
    """The logits of a µP model equal a standard model's with the same weights, its
    embedding output times α_in, its logits times α_out/m and its attention scaled as set."""
    cfg = wide(parametrization="mup", base_width=32, base_head_dim=4, mup_input_alpha=2.0)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    standard = Transformer(wide()).eval()
    standard.load_state_dict(model.state_dict())
    idx = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        # fold what µP multiplies into the standard model's weights
        standard.tok_emb.weight.mul_(2.0)  # tied: this also doubles the readout ...
        standard.norm.weight.mul_(0.5 / 4)  # ... which the final gain undoes, then 1/m
        q = cfg.n_heads * cfg.head_dim
        ratio = (math.sqrt(4) / cfg.head_dim) * math.sqrt(cfg.head_dim)
        for block in standard.blocks:
            block.attn.qkv.weight[:q].mul_(ratio)
        assert torch.allclose(model(idx).logits, standard(idx).logits, atol=1e-5)


def test_completep_scales_the_residual_branches_and_eps_with_depth():
    cfg = wide(parametrization="completep", base_width=32, n_layers=8, base_depth=2)
    mult = multipliers(cfg)
    assert (mult.depth, mult.residual, mult.depth_init) == (4.0, 0.25, False)
    assert group_scales(cfg, "blocks.3.attn.qkv.weight").eps == pytest.approx(1 / 16)
    assert group_scales(cfg, "blocks.3.attn.qkv.weight").lr == pytest.approx(1 / 4)
    torch.manual_seed(0)
    model = Transformer(cfg)
    assert model.blocks[5].attn.out.weight.std().item() == pytest.approx(0.02 / 2, rel=0.05)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("blocks.0.attn.qkv.weight", "hidden"),
        ("_orig_mod.blocks.0.ffn.w_in", "hidden"),  # experts, compiled
        ("module.blocks.1.ffn.w_out", "hidden"),
        ("blocks.1.attn_norm.weight", "block_vector"),
        ("blocks.1.ffn.router.weight", "other"),
        ("tok_emb.weight", "other"),
        ("norm.weight", "other"),
    ],
)
def test_kinds_come_from_names(name, kind):
    assert kind_of(name) == kind


def test_moe_router_is_a_readout():
    cfg = wide(parametrization="mup", base_width=32, n_experts=4, top_k=2)
    torch.manual_seed(0)
    model = Transformer(cfg)
    assert model.blocks[0].ffn.router_mult == 0.25
    assert model.blocks[0].ffn.w_in.std().item() == pytest.approx(0.01, rel=0.05)
    assert model.blocks[0].ffn.router.weight.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.slow  # starts interpreters
@pytest.mark.parametrize(
    "setting, message",
    [
        (["parametrization=mup"], "parametrization 'mup' needs base_width"),
        (["parametrization=mup", "base_width=0"], "base_width"),
        (["parametrization=mup", "base_width=-64"], "base_width"),
        (["parametrization=mup", "base_width=64.5"], "base_width"),
        (["parametrization=completep", "base_width=64"], "needs base_depth"),
        (["parametrization=mup2"], "parametrization"),
        (["base_width=64"], "base_width is set but parametrization is 'standard'"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(setting, message):
    args = [arg for item in setting for arg in ("--set", item)]
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "count", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert done.stdout == ""


def test_counts_and_flops_do_not_change_with_the_parametrization():
    from scaling.counting import FLOP_METHODS, count_params, flops_per_token

    standard = wide()
    for scaled in (
        wide(parametrization="mup", base_width=32, mup_output_alpha=3.0),
        wide(parametrization="completep", base_width=32, base_depth=1),
    ):
        assert count_params(scaled) == count_params(standard)
        assert sum(p.numel() for p in Transformer(scaled).parameters()) == (
            count_params(standard).total
        )
        for method in FLOP_METHODS:
            assert flops_per_token(scaled, 16, method) == flops_per_token(standard, 16, method)
