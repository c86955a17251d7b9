"""`scaling coord-check` in a fresh process: under µP every layer's activations keep their
size across an 8x range of widths; under the standard parametrization (the negative control)
the logits and blocks grow with width. And its bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch

SPEC = """
[sweep]
name = "coord"

[model]
parametrization = "mup"
base_width = 64
head_dim = 16
d_model_multiple = 16

[data]
source = "builtin:python-stdlib"
max_bytes = 1_000_000
val_fraction = 0.05
tokenizer = "bytes"

[train]
seq_len = 64
lr = 2e-3
weight_decay = 0.1

[[grid]]
kind = "isoflop"
budgets = [1e11]
"""


def coord_check(spec, *args, cache):
    return subprocess.run(
        [sys.executable, "-m", "scaling", "coord-check", str(spec), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SCALING_CACHE": str(cache)},
        timeout=1200,
    )


@pytest.mark.slow
def test_mup_keeps_every_layer_flat_and_the_standard_one_does_not(tmp_path):
    spec = tmp_path / "coord.toml"
    spec.write_text(SPEC)
    figure = tmp_path / "coord.png"
    widths = "64,128,256,512"
    runs = {}
    for parametrization in ("mup", "standard"):
        done = coord_check(
            spec,
            "--widths", widths,
            "--steps", "10",
            "--parametrization", parametrization,
            # four initialisations: the slopes' noise at these small widths is about 0.05
            "--seeds", "4" if parametrization == "mup" else "1",
            "--json",
            *(["--plot", str(figure)] if parametrization == "mup" else []),
            cache=tmp_path / "cache",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        runs[parametrization] = json.loads(done.stdout)
    mup, standard = runs["mup"], runs["standard"]
    assert mup["widths"] == [64, 128, 256, 512] and mup["parametrization"] == "mup"
    layers = {"embedding", "block0.attn", "block0.ffn", "block1.attn", "block1.ffn", "logits"}
    assert set(mup["slopes"]) == layers
    for layer, slope in mup["slopes"].items():
        assert abs(slope) <= 0.1, (layer, mup["slopes"])
    # the negative control: Adam's width-independent updates summed over a wider fan-in
    assert standard["slopes"]["logits"] > 0.3, standard["slopes"]
    for layer in layers - {"embedding", "logits"}:
        assert standard["slopes"][layer] > 1.0, standard["slopes"]
    assert figure.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--widths", "64"], "two or more different positive widths"),
        (["--widths", "64,abc"], "expected integers"),
        (["--widths", "64,72"], "72 is not a multiple of head_dim (16)"),
        (["--steps", "0"], "--steps 0"),
        (["--parametrization", "mup2", "--widths", "64,128"], "parametrization"),
        (["--device", "tpu"], "--device 'tpu': cpu or cuda"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: no GPU visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    spec = tmp_path / "coord.toml"
    spec.write_text(SPEC)
    done = coord_check(spec, *args, cache=tmp_path / "cache")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.slow  # trains, briefly
def test_the_library_call_and_a_run_config(tmp_path):
    """What the CLI builds on, in this process: a run's config.json gives the model to check
    (its depth kept, the parametrization overridden), and the result's shape."""
    import numpy as np

    from scaling.cli.coord_check import _configs
    from scaling.training.coord_check import at_width, coord_check

    from .conftest import tiny_run

    path = tmp_path / "config.json"
    path.write_text(tiny_run(model={"n_layers": 3}).model_dump_json())
    model, data, train = _configs(path, {"parametrization": "mup", "base_width": 32}, None, 1e-2)
    assert (model.n_layers, model.parametrization, train.lr) == (3, "mup", 1e-2)
    assert at_width(model, 128).n_heads == 8  # heads of 16, as in the config
    tokens = np.arange(10_000) % 251
    result = coord_check(model, train, tokens, [32, 64], steps=2, batch=2, seeds=1)
    assert result.widths == [32, 64] and result.steps == 2
    assert set(result.rms) == {"embedding", "logits"} | {
        f"block{i}.{part}" for i in range(3) for part in ("attn", "ffn")
    }
    assert all(len(steps) == 2 and len(steps[0]) == 2 for steps in result.rms.values())
    assert set(result.to_dict()["slopes"]) == set(result.rms)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_measures_what_the_cpu_measures():
    """The check on a GPU (fp32) reads the same RMS as on the CPU: the initialisation is drawn
    on the CPU, so only rounding in the kernels differs."""
    import numpy as np

    from scaling.training.coord_check import coord_check

    from .conftest import tiny_run

    run = tiny_run(model={"parametrization": "mup", "base_width": 32})
    tokens = np.arange(10_000) % 251
    cpu, cuda = (
        coord_check(run.model, run.train, tokens, [32, 64], 3, 2, 1, device=device)
        for device in ("cpu", "cuda")
    )
    for layer, values in cpu.rms.items():
        np.testing.assert_allclose(cuda.rms[layer], values, rtol=1e-3, err_msg=layer)
