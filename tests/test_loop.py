"""The whole loop as a user runs it, every stage a fresh process through the CLI:
plan → launch → fit every law the runs support → predict from every fit file → plan again
with fit: rules for lr, batch and centre → plot with every fit file present."""

import json
import os

import pytest

from .conftest import scaling

SPEC = """
[sweep]
name = "loop"
min_steps = 5
tokens_per_param_range = [1, 5000]

[model]
head_dim = 8
d_model_multiple = 8
aspect_ratio_range = [8, 32]

[data]
source = "builtin:python-stdlib"
max_bytes = 1_500_000
val_fraction = 0.05
tokenizer = "bytes"

[train]
seq_len = 64
batch_tokens = {batch}
micro_batch_size = 16
lr = {lr}
schedule = "wsd"
branches = [0.5]
eval_interval = 0
eval_windows = 32
log_interval = 5
checkpoint_interval = 1000

[[grid]]
kind = "isoflop"
name = "isoflop"
budgets = [6e9, 1.2e10, 2.4e10]
sizes = 3
spread = 3.0
centre = {centre}

[[grid]]
kind = "hparams"
name = "hp"
budgets = [7e9, 1.4e10]
centre = "100"
lr = [1e-2, 3e-2]
batch_tokens = [1024, 2048]
"""


@pytest.mark.slow
@pytest.mark.e2e
def test_plan_train_fit_predict_replan_plot(tmp_path):
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache")}
    spec = tmp_path / "loop.toml"
    spec.write_text(SPEC.format(batch=1024, lr=1e-2, centre='"100"'))
    runs = tmp_path / "RUNS"
    first = json.loads(scaling("plan", spec, "--out", runs, "--json", env=env).stdout)
    assert first["summary"]["runs"] == 9 + 8

    launched = scaling("launch", runs, "--no-progress", "--max-parallel", "2", env=env)
    assert "all done" in launched.stdout

    fitted = json.loads(
        scaling("fit", runs, "--law", "all", "--bootstrap", "10", "--json", env=env).stdout
    )
    names = {fit["law"] for fit in fitted["fits"]}
    assert names >= {"parametric", "isoflop", "envelope", "kaplan", "hparams"}
    skipped = {entry["law"]: entry["reason"] for entry in fitted["skipped"]}
    assert "repeat data" in skipped["data-constrained"]
    assert "n_experts" in skipped["moe"] and "accuracy" in skipped["downstream"]
    # WSD branches: points of their own compute, every one used by the parametric law
    parametric = next(fit for fit in fitted["fits"] if fit["law"] == "parametric")
    assert parametric["n_points"] == 2 * 17
    # the audit on a runs directory: refits under each choice, bootstrap by runs too
    audited = json.loads(
        scaling("fit", runs, "--audit", "--bootstrap", "10", "--json", env=env).stdout
    )
    assert audited["choices"][0]["n_points"] == 2 * 17
    assert {"points", "runs", "budgets"} <= set(audited["bootstrap_intervals"]) | set(
        audited["bootstrap_notes"]
    )
    assert "runs" in audited["bootstrap_intervals"]
    # the hyperparameter law from the hparams grid alone
    scaling("fit", runs, "--law", "hparams", "--exclude", "kind != 'hparams'", env=env)

    questions = {
        "parametric": ["--compute", "1e11"],
        "isoflop": ["--compute", "1e11"],
        "envelope": ["--compute", "1e11"],
        "kaplan": ["--params", "3e4", "--tokens", "1e6"],
        "hparams": ["--compute", "1e11"],
    }
    fits = runs / "fits"
    assert sorted(p.stem for p in fits.glob("*.json")) == sorted(questions)
    for name, question in questions.items():
        answer = json.loads(
            scaling("predict", "--fit", fits / f"{name}.json", *question, "--json", env=env).stdout
        )
        assert answer["lr" if name == "hparams" else "loss"] > 0, name
    combined = json.loads(scaling("predict", runs, "--compute", "1e11", "--json", env=env).stdout)
    assert {"params", "tokens", "loss", "lr", "batch_tokens"} <= set(combined)

    # the closed loop: the fitted laws set the next plan's lr, batch and centre
    spec.write_text(
        SPEC.format(
            batch=f'"fit:{fits / "hparams.json"}"',
            lr=f'"fit:{fits / "hparams.json"}"',
            centre=f'"fit:{fits / "isoflop.json"}"',
        )
    )
    second = json.loads(scaling("plan", spec, "--dry-run", "--json", env=env).stdout)
    law = json.loads((fits / "hparams.json").read_text())["params"]
    iso = json.loads((fits / "isoflop.json").read_text())["params"]
    for before, after in zip(_isoflop_rows(first), _isoflop_rows(second), strict=True):
        lr = law["k_lr"] * after["budget"] ** law["e_lr"]
        assert after["lr"] == pytest.approx(lr, rel=1e-9) and after["lr"] != before["lr"]
        batch = law["k_batch"] * after["budget"] ** law["e_batch"]
        assert after["batch_tokens"] == max(1024, round(batch / 1024) * 1024)
    centres = [r for r in _isoflop_rows(second) if r["target_params"] == _middle(second, r)]
    for row in centres:
        assert row["target_params"] == pytest.approx(
            iso["k_N"] * row["budget"] ** iso["a"], abs=0.5
        )
    assert {r["target_params"] for r in _isoflop_rows(first)} != {
        r["target_params"] for r in _isoflop_rows(second)
    }

    plotted = scaling("plot", runs, env=env)
    for figure in ("isoflop_profiles", "allocation", "loss_curves", "residuals", "hparams"):
        assert (runs / "figures" / f"{figure}.png").stat().st_size > 5000, figure
    assert "no fit files" not in plotted.stdout


def _isoflop_rows(plan):
    return sorted(
        (r for r in plan["runs"] if r["grid"] == "isoflop"),
        key=lambda r: (r["budget"], r["target_params"]),
    )


def _middle(plan, row):
    sizes = sorted(r["target_params"] for r in _isoflop_rows(plan) if r["budget"] == row["budget"])
    return sizes[len(sizes) // 2]
