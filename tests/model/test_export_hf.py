"""The Hugging Face export: transformers loads it without custom code, and its logits equal
ours; an architecture without an exact transformers equivalent is refused in one line."""

import pytest
import torch
from typer.testing import CliRunner

from scaling.cli import app
from scaling.config import ConfigError, ModelConfig
from scaling.model import Transformer, save_pretrained
from scaling.model.export_hf import export_hf

LLAMA = dict(
    vocab_size=97,
    d_model=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    activation="swiglu",
    norm="rmsnorm",
    position="rope",
    max_seq_len=32,
)


# every multiplier away from 1: width 64 against 32 (logits /2, attention scale 1/16 where
# Llama's is 1/4), the embedding x1.5 (so a tied matrix must be untied), CompleteP's 1/2
MUP = dict(parametrization="mup", base_width=32, base_head_dim=8, mup_output_alpha=3.0)
COMPLETEP = dict(MUP, parametrization="completep", base_depth=1, mup_input_alpha=1.5)


@pytest.mark.parametrize(
    "tie, parametrization",
    [(True, {}), (False, {}), (True, MUP), (True, COMPLETEP), (False, COMPLETEP)],
    ids=["tied", "untied", "mup-tied", "completep-tied", "completep-untied"],
)
def test_transformers_loads_the_export_and_computes_our_logits(tmp_path, tie, parametrization):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**LLAMA, tie_embeddings=tie, **parametrization)).eval()
    with torch.no_grad():  # trained-like weights: norm gains away from 1
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    export_hf(model, tmp_path / "hf")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(theirs).__name__ == "LlamaForCausalLM"
    idx = torch.randint(0, 97, (2, 32))
    with torch.no_grad():
        ours = model(idx).logits
        other = theirs(idx).logits
    assert torch.allclose(ours, other, atol=1e-4), (ours - other).abs().max()


def test_an_architecture_without_an_equivalent_is_refused(tmp_path):
    model = Transformer(ModelConfig(**{**LLAMA, "norm": "layernorm"}))
    with pytest.raises(ConfigError, match="model.norm = 'layernorm'"):
        export_hf(model, tmp_path / "hf")
    save_pretrained(
        Transformer(ModelConfig(**{**LLAMA, "n_experts": 4})), tmp_path / "run" / "export"
    )
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), str(tmp_path / "out")])
    assert result.exit_code == 2 and "model.n_experts = 4" in result.output
    assert not (tmp_path / "out").exists()
