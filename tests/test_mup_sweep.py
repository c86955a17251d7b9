"""A µP sweep through the CLI, each stage a fresh process: plan (one learning rate for every
size, each run's config carrying the parametrization), launch, fit, export; the exported model
(its µP multipliers folded into the weights) gives our logits in transformers."""

import json
import os

import pytest
import torch

from .conftest import scaling

SPEC = """
[sweep]
name = "mup"
min_steps = 5
tokens_per_param_range = [1, 5000]

[model]
parametrization = "mup"
base_width = 16
mup_output_alpha = 2.0
activation = "swiglu"  # a Llama, for the export
norm = "rmsnorm"
head_dim = 8
d_model_multiple = 8
aspect_ratio = 16
aspect_ratio_range = [4, 32]

[data]
source = "builtin:python-stdlib"
max_bytes = 1_000_000
val_fraction = 0.05
tokenizer = "bytes"

[train]
seq_len = 64
batch_tokens = 1024
micro_batch_size = 16
lr = 1e-2
eval_interval = 0
eval_windows = 16
log_interval = 5
checkpoint_interval = 1000

[[grid]]
kind = "isoflop"
budgets = [1e10, 4e10]
sizes = 3
spread = 3.0
centre = "100"
"""


@pytest.mark.slow
@pytest.mark.e2e
def test_a_mup_sweep_plans_launches_fits_and_exports(tmp_path):
    transformers = pytest.importorskip("transformers")
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache")}
    spec = tmp_path / "mup.toml"
    spec.write_text(SPEC)
    runs = tmp_path / "RUNS"
    plan = json.loads(scaling("plan", spec, "--out", runs, "--json", env=env).stdout)
    assert plan["summary"]["runs"] == 6
    assert {row["lr"] for row in plan["runs"]} == {1e-2}  # one lr for every size

    configs = [json.loads(p.read_text()) for p in (runs / "runs").glob("*/config.json")]
    widths = {config["model"]["d_model"] for config in configs}
    assert len(widths) >= 3
    for config in configs:
        assert config["model"]["parametrization"] == "mup"
        assert config["model"]["base_width"] == 16

    launched = scaling("launch", runs, "--no-progress", "--max-parallel", "2", env=env)
    assert "all done" in launched.stdout
    results = [json.loads(p.read_text()) for p in (runs / "runs").glob("*/result.json")]
    assert len(results) == 6 and all(r["status"] == "done" for r in results)
    # trained: the uniform guess is ln 256 = 5.5
    assert all(r["final_eval_loss"] < 5.0 for r in results)

    fitted = json.loads(scaling("fit", runs, "--law", "parametric", "--json", env=env).stdout)
    assert fitted["law"] == "parametric" and fitted["n_points"] == 6
    fit_file = runs / "fits" / "parametric.json"
    answer = scaling("predict", "--fit", fit_file, "--compute", "1e11", "--json", env=env)
    assert json.loads(answer.stdout)["params"] > 0

    widest = max(
        (runs / "runs").glob("*/config.json"),
        key=lambda p: json.loads(p.read_text())["model"]["d_model"],
    ).parent
    scaling("export", widest, tmp_path / "hf", env=env)
    from scaling.model import load_pretrained

    ours = load_pretrained(widest / "export").eval()
    assert ours.mult.output == pytest.approx(2.0 * 16 / ours.cfg.d_model)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (ours(idx).logits - theirs(idx).logits).abs().max()
    assert difference < 1e-4
