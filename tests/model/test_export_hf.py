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


@pytest.mark.parametrize("tie", [True, False])
def test_transformers_loads_the_export_and_computes_our_logits(tmp_path, tie):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**LLAMA, tie_embeddings=tie)).eval()
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
