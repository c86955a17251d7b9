import pytest
from pydantic import ValidationError

from scaling.config import ConfigError, ModelConfig, describe_validation_error, load_model_config

BAD_CONFIGS = [
    (dict(d_model=100, n_heads=8), "d_model"),
    (dict(d_model=64, n_heads=8, n_kv_heads=3), "n_kv_heads"),
    (dict(d_model=64, n_heads=4, n_kv_heads=8), "n_kv_heads"),
    (dict(n_experts=4, top_k=5), "top_k"),
    (dict(d_model=24, n_heads=8, position="rope"), "head_dim"),
    (dict(activation="tanh"), "activation"),
    (dict(norm="batchnorm"), "norm"),
    (dict(position="alibi"), "position"),
    (dict(dropout=1.5), "dropout"),
    (dict(n_layers=0), "n_layers"),
    (dict(d_ff=0), "d_ff"),
    (dict(vocab_size=1), "vocab_size"),
    (dict(n_experts=4, d_ff=100, granularity=3), "granularity"),
    (dict(n_experts=4, n_layers=2, moe_every=3), "moe_every"),
    (dict(n_shared_experts=1), "n_shared_experts"),
    (dict(d_modle=128), "d_modle"),
]


@pytest.mark.parametrize("fields, named", BAD_CONFIGS)
def test_bad_config_names_the_field(fields, named):
    with pytest.raises(ValidationError) as info:
        ModelConfig(**fields)
    line = describe_validation_error(info.value, "model.toml")
    assert line.startswith("model.toml: ")
    assert named in line
    assert "\n" not in line


def test_d_ff_defaults_keep_parameter_parity():
    assert ModelConfig(d_model=256, activation="gelu").ff_dim == 1024
    # 8·256/3 = 682.7, rounded up to a multiple of 64
    swiglu = ModelConfig(d_model=256, activation="swiglu")
    assert swiglu.ff_dim == 704
    assert ModelConfig(d_model=256, activation="swiglu", d_ff_multiple=256).ff_dim == 768
    assert ModelConfig(d_model=256, d_ff=300).ff_dim == 300
    # three SwiGLU matrices hold about as many weights as two GELU ones
    assert abs(3 * swiglu.ff_dim - 2 * 1024) / (2 * 1024) < 0.04


def test_moe_layers_and_expert_width():
    cfg = ModelConfig(n_layers=4, n_experts=8, top_k=2, moe_every=2, d_ff=512, granularity=4)
    assert [cfg.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    assert cfg.expert_dim == 128
    assert cfg.kv_heads == cfg.n_heads


def test_load_model_config_from_toml(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[model]\nd_model = 128\nn_heads = 4\nactivation = "swiglu"\n')
    assert load_model_config(path).activation == "swiglu"
    path.write_text("d_model = 128\nn_heads = 3\n")
    with pytest.raises(ConfigError, match=r"m\.toml: d_model \(128\) must be divisible"):
        load_model_config(path)
    path.write_text("[model]\nwidth = 3\n")
    with pytest.raises(ConfigError, match=r"\[model\]: width: unknown key"):
        load_model_config(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_model_config(tmp_path / "missing.toml")
