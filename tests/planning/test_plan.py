import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.config import ConfigError, ModelConfig, RunConfig, load_run_config, run_id_of
from scaling.counting import count_params, flops_per_token
from scaling.fitting.hparams import HparamsLaw
from scaling.fitting.parametric import ParametricLaw
from scaling.planning.plan import plan_sweep
from scaling.planning.shapes import search_shapes
from scaling.planning.spec import ShapeRules, load_spec

SWEEPS = Path(__file__).parents[2] / "sweeps"
runner = CliRunner()

SPEC = """
[sweep]
name = "test"
flop_formula = "{formula}"

[model]
vocab_size = 4096
max_seq_len = 256
head_dim = 32
d_model_multiple = 32
aspect_ratio_range = [16, 128]

[data]
source = "{corpus}"
vocab_size = 4096

[train]
seq_len = 256
batch_tokens = 8192
micro_batch_size = 8
lr = "0.01 * (N / 1e6) ** -0.3"

[[grid]]
kind = "isoflop"
budgets = {budgets}
sizes = 5
spread = 3.0
"""


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("some text for the corpus\n" * 2000)
    return root


def write_spec(tmp_path, corpus, formula="6N", budgets="[1e16, 1e17]", extra=""):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(formula=formula, corpus=corpus, budgets=budgets) + extra)
    return path


@pytest.mark.parametrize("formula", ["6N", "6N_nonembedding", "chinchilla", "exact"])
def test_isoflop_runs_land_on_their_budget(tmp_path, corpus, formula):
    spec_path = write_spec(tmp_path, corpus, formula)
    plan = plan_sweep(load_spec(spec_path), tmp_path)
    assert len(plan.runs) == 10
    for row in plan.runs:
        config = row["config"]
        per_token = flops_per_token(config.model, config.train.seq_len, formula)
        assert config.train.tokens * per_token == pytest.approx(row["budget"], rel=0.02)
        assert row["flops"] == pytest.approx(config.train.tokens * per_token)
        if row["target_params"] > 1e6:
            assert abs(row["size_error"]) < 0.10
        # the learning-rate formula of N was applied to each run's own size
        assert config.train.lr == pytest.approx(0.01 * (row["params"] / 1e6) ** -0.3)


@pytest.mark.parametrize("formula", ["6N", "chinchilla", "exact"])
def test_sizes_spread_around_twenty_tokens_per_parameter(tmp_path, corpus, formula):
    """The centre spends the budget on 20 tokens per parameter under the sweep's own FLOP
    formula, not under 6ND: at 1e16 FLOPs, attention and logits are a third of a step."""
    spec = load_spec(write_spec(tmp_path, corpus, formula, budgets="[1e16]"))
    plan = plan_sweep(spec, tmp_path)
    centre = sorted(plan.runs, key=lambda r: r["params"])[2]
    k = centre["flops"] / (centre["params"] * centre["tokens"])  # FLOPs per parameter-token
    assert k > 6.5 if formula != "6N" else k == pytest.approx(6)
    # the nearest shape and whole optimizer steps move the run a few percent off the target;
    # a 6ND centre would be 6/k, 20-35% off
    assert centre["tokens"] / centre["target_params"] == pytest.approx(20, rel=0.06)
    assert centre["flops"] == pytest.approx(1e16, rel=0.02)
    ratios = sorted(row["tokens_per_param"] for row in plan.runs)
    assert ratios[0] < 5 < 80 < ratios[-1]


def test_shapes_grow_smoothly():
    shapes = search_shapes(list(np.logspace(7, 9.5, 13)), {"vocab_size": 8192}, ShapeRules())
    configs = [shapes[t].config for t in sorted(shapes)]
    for a, b in zip(configs, configs[1:], strict=False):
        # depth and width grow together; a size may trade at most one layer for width
        assert b.n_layers >= a.n_layers - 1 and b.d_model >= a.d_model
        assert b.n_layers * b.d_model**2 > a.n_layers * a.d_model**2
    assert configs[-1].n_layers >= 3 * configs[0].n_layers
    # each size's shape is its own: the same with or without the other sizes
    target = sorted(shapes)[6]
    assert search_shapes([target], {"vocab_size": 8192}, ShapeRules())[target] == shapes[target]
    for target, shape in shapes.items():
        assert abs(shape.error) < 0.10, target
        assert 16 <= shape.config.d_model / shape.config.n_layers <= 256


def test_run_ids_are_stable(tmp_path, corpus):
    spec = load_spec(write_spec(tmp_path, corpus))
    first = [row["run_id"] for row in plan_sweep(spec, tmp_path).runs]
    assert first == [row["run_id"] for row in plan_sweep(spec, tmp_path).runs]
    # the id hashes the config alone, so any machine computes the same one
    config = RunConfig(model=ModelConfig(d_model=64, n_layers=2, n_heads=2))
    assert run_id_of(config) == run_id_of(RunConfig.model_validate_json(config.model_dump_json()))
    assert run_id_of(config) == "af67df4d27d2"
    # a field a later version adds, with its default, changes no earlier run's id
    extended = config.model_dump(mode="json")
    extended["train"]["collective_timeout_s"] = 1800.0  # added after this id was pinned
    assert run_id_of(RunConfig.model_validate(extended)) == "af67df4d27d2"


def test_a_run_planned_under_the_full_hash_is_still_its_own(tmp_path):
    """Runs planned before the id skipped defaults (every field hashed) are not taken for
    edited ones."""
    from scaling.config import full_run_id_of
    from scaling.rundir import RunDir

    config = RunConfig(model=ModelConfig(d_model=64, n_layers=2, n_heads=2))
    written = {k: v for k, v in config.model_dump(mode="json").items()}
    # the file as the earlier version wrote it, without the fields added since
    del written["train"]["collective_timeout_s"]
    for field in ("parametrization", "base_width", "base_depth", "base_head_dim"):
        del written["model"][field]
    del written["model"]["mup_input_alpha"], written["model"]["mup_output_alpha"]
    run = RunDir(tmp_path / "old")
    run.path.mkdir()
    run.config_path.write_text(json.dumps(written))
    assert full_run_id_of(written) == "17ed02b3ec8e"  # its id then, pinned above before
    assert run.read_planned_config("17ed02b3ec8e") == config
    with pytest.raises(ConfigError, match="changed since it was planned"):
        run.read_planned_config("af67df4d27d3")


def test_replanning_keeps_results_and_lists_dropped_runs(tmp_path, corpus):
    out = tmp_path / "RUNS"
    spec_path = write_spec(tmp_path, corpus, budgets="[1e16, 1e17]")
    result = runner.invoke(app, ["plan", str(spec_path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    first = pd.read_csv(out / "plan.csv", dtype={"run_id": str})
    kept_id = first["run_id"].iloc[0]
    (out / "runs" / kept_id / "result.json").write_text('{"status": "done"}')
    assert (out / "sweep.toml").is_file()
    spec_path = write_spec(tmp_path, corpus, budgets="[1e17, 1e18]")
    result = runner.invoke(app, ["plan", str(spec_path), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    changes = json.loads(result.output)["changes"]
    assert len(changes["kept"]) == 5 and len(changes["new"]) == 5
    assert set(changes["dropped"]) == set(first["run_id"][first["budget"] == 1e16])
    assert (out / "runs" / kept_id / "result.json").read_text() == '{"status": "done"}'
    assert all((out / "runs" / run_id).is_dir() for run_id in first["run_id"])


def test_every_example_spec_plans():
    for path in sorted(SWEEPS.glob("*.toml")):
        result = runner.invoke(app, ["plan", str(path), "--dry-run", "--json"])
        assert result.exit_code == 0, (path, result.output)
        # enough points for a law: a run, and each of its WSD branches, is one
        points = 1 + len(load_spec(path).train.branches)
        assert json.loads(result.output)["summary"]["runs"] * points >= 10


def test_moe_grid_holds_active_parameters_equal():
    plan = plan_sweep(load_spec(SWEEPS / "moe.toml"), SWEEPS)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "config"} for r in plan.runs])
    for _, group in frame.groupby(["budget", "target_params"]):
        assert sorted(group["n_experts"]) == [0, 4, 8, 16]
        assert (abs(group["params_active"] / group["target_params"] - 1) < 0.1).all()
        assert group["params"].max() > group["params_active"].max()


def test_rules_from_fit_files(tmp_path, corpus):
    ParametricLaw.from_params(
        {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    ).to_json(tmp_path / "law.json")
    HparamsLaw.from_params({"k_lr": 0.3, "e_lr": -0.1, "k_batch": 0.25, "e_batch": 0.3}).to_json(
        tmp_path / "hp.json"
    )
    spec_path = write_spec(tmp_path, corpus, budgets="[1e18]")
    text = spec_path.read_text().replace('lr = "0.01 * (N / 1e6) ** -0.3"', 'lr = "fit:hp.json"')
    text = text.replace("batch_tokens = 8192", 'batch_tokens = "fit:hp.json"')
    spec_path.write_text(text.replace("spread = 3.0", 'spread = 3.0\ncentre = "fit:law.json"'))
    plan = plan_sweep(load_spec(spec_path), tmp_path)
    centre = sorted(plan.runs, key=lambda r: r["params"])[2]
    optimum = ParametricLaw.from_json(tmp_path / "law.json").optimum(1e18)["params"]
    assert centre["target_params"] == pytest.approx(optimum, rel=1e-6)
    assert centre["config"].train.lr == pytest.approx(0.3 * 1e18**-0.1)
    assert centre["config"].train.batch_tokens == pytest.approx(0.25 * 1e18**0.3, rel=0.05)


BAD = [
    ("[sweep\nname = 'x'", "not valid TOML"),
    ("", "grid: Field required"),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[model]\nd_model = 512\n",
        "model.d_model is chosen by the shape search",
    ),
    ("[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[model]\nwidth = 3\n", "width"),
    ("[[grid]]\nkind = 'spiral'\n", "'spiral'"),
    ("[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[sweeep]\nname = 'x'\n", "sweeep"),
    ("[[grid]]\nkind = 'isoflop'\nbudgets = [1e5]\n", "less than one optimizer step"),
    ("[[grid]]\nkind = 'grid'\naxes = {}\n", "axes must name at least one field"),
    ("[[grid]]\nkind = 'grid'\naxes = { 'model.n_experts' = [0, 4] }\n", "give no run"),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[model]\naspect_ratio = 500\n",
        "aspect_ratio (500.0) lies outside aspect_ratio_range",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\ncentre = 'fit:nope.json'\n",
        "no such fit file",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\ncentre = 'fit:law.json'\n",
        "holds a kaplan law",
    ),
    ("[[grid]]\nkind = 'fixed'\nparams = [1e6]\n", "give exactly one of tokens"),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[train]\ntokens = 5\n",
        "train.tokens is set per run",
    ),
    ("[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[train]\nlr = 'N ** '\n", "cannot evaluate"),
    ("[[grid]]\nkind = 'grid'\naxes = { 'n_experts' = [0] }\n", "name fields as model.X"),
    # every section is typed: file, section and key in the message, at load
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[train]\nlrr = 1e-2\n",
        "bad.toml: train.lrr: unknown key",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[train]\nseq_len = 'long'\n",
        "bad.toml: train.seq_len",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[model]\nactivaton = 'gelu'\n",
        "bad.toml: model.activaton: unknown key",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[launch.slurm]\npartitio = 'gpu'\n",
        "bad.toml: launch.slurm.partitio: unknown key",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[launch.slurm]\nnodes = 0\n",
        "launch.slurm.nodes",
    ),
    # a formula is arithmetic, never code: opening someone else's sweep runs nothing
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[train]\n"
        "lr = \"__import__('os').system('touch pwned')\"\n",
        "is not allowed",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[train]\nlr = \"().__class__\"\n",
        "is not allowed",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[train]\nlr = '10 ** 10 ** 10'\n",
        "cannot evaluate",
    ),
    # seq_len and vocab_size have one place each; a contradicting copy is refused
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[model]\nmax_seq_len = 64\n"
        "[train]\nseq_len = 128\n",
        "it follows train.seq_len",
    ),
    (
        "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n[model]\nvocab_size = 300\n",
        "smaller than the tokenizer's (4096)",
    ),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_specs_exit_2_and_write_nothing(tmp_path, text, message):
    from scaling.fitting.kaplan import KaplanLaw

    KaplanLaw.from_params({"N_c": 1e13, "alpha_N": 0.07, "D_c": 1e13, "alpha_D": 0.09}).to_json(
        tmp_path / "law.json"
    )
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "RUNS"
    result = runner.invoke(app, ["plan", str(spec), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not Path("pwned").exists()


def test_seq_len_and_vocab_size_are_set_in_one_place(tmp_path, corpus):
    text = SPEC.format(formula="6N", corpus=corpus, budgets="[1e16]")
    text = text.replace("vocab_size = 4096\nmax_seq_len = 256\n", "")
    text = text.replace("[data]\n", '[data]\ntokenizer = "bytes"\n')
    path = tmp_path / "one.toml"
    path.write_text(text)
    spec = load_spec(path)
    for row in plan_sweep(spec, tmp_path).runs:
        assert row["config"].model.vocab_size == 256  # the byte tokenizer's
        assert row["config"].model.max_seq_len == 256  # train.seq_len


def test_resolve_run_is_one_run_as_the_planner_makes_it(tmp_path, corpus):
    from scaling.planning.plan import resolve_run

    spec_path = write_spec(tmp_path, corpus, "exact", budgets="[1e16]")
    spec = load_spec(spec_path)
    planned = sorted(plan_sweep(spec, tmp_path).runs, key=lambda r: r["params"])[2]
    again = resolve_run(spec, tmp_path, planned["target_params"], budget=1e16, grid="isoflop")
    assert again == planned["config"]  # same shape, tokens, lr formula: the same run id
    bigger = resolve_run(spec, tmp_path, 4e6, budget=4e17)
    assert bigger.train.lr == pytest.approx(0.01 * (count_params(bigger.model).total / 1e6) ** -0.3)
    assert bigger.train.flop_formula == "exact"
    moe = resolve_run(spec, tmp_path, 4e6, budget=4e17, overrides={"model.n_experts": 4})
    assert moe.model.n_experts == 4
    with pytest.raises(ConfigError, match="exactly one of budget and tokens"):
        resolve_run(spec, tmp_path, 4e6)


def test_fixed_grid_with_corpus_fractions(tmp_path, corpus):
    spec_path = tmp_path / "fixed.toml"
    spec_path.write_text(
        SPEC.split("[[grid]]")[0].format(formula="6N", corpus=corpus, budgets="[]")
        + """
[[grid]]
kind = "fixed"
params = [1e6, 4e6]
tokens_per_param = [10, 40]
corpus_fractions = [1.0, 0.1]
"""
    )
    plan = plan_sweep(load_spec(spec_path), tmp_path)
    assert len(plan.runs) == 8
    limited = [r for r in plan.runs if r["config"].data.max_bytes]
    assert len(limited) == 4
    corpus_bytes = sum(p.stat().st_size for p in corpus.iterdir())
    assert limited[0]["config"].data.max_bytes == int(0.1 * corpus_bytes)
    for row in plan.runs:
        assert row["tokens"] == pytest.approx(row["tokens_per_param"] * row["params"], rel=1e-9)


def test_wall_time_estimate_slows_small_models_on_cpu_only():
    def estimate(*options):
        result = runner.invoke(
            app, ["plan", str(SWEEPS / "demo.toml"), "--dry-run", "--json", *options]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["summary"]

    cpu, gpu = estimate("--device", "cpu"), estimate("--device", "h100")
    # the demo's 7k-120k parameter models run at a fraction of the 10M-parameter CPU rate
    assert 1e10 < cpu["assumed_flops_per_s"] < 0.5 * 1.1e11
    assert cpu["estimated_wall_s"] == pytest.approx(cpu["total_flops"] / cpu["assumed_flops_per_s"])
    assert gpu["assumed_flops_per_s"] == pytest.approx(989e12 * 0.4)


def test_plan_json_carries_each_configs_lr_to_full_precision(tmp_path):
    """`--json` is for machines: its numbers are the configs' own, not rounded to 10 digits
    (pandas' default), which once made a replanned lr differ from its law by 1e-9."""
    out = tmp_path / "RUNS"
    result = runner.invoke(
        app, ["plan", str(SWEEPS / "chinchilla.toml"), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["runs"]
    for row in rows:
        config = load_run_config(out / "runs" / row["run_id"] / "config.json")
        assert row["lr"] == pytest.approx(config.train.lr, rel=1e-14, abs=0)
    assert len({row["lr"] for row in rows}) > 1  # a formula of N: no round numbers


@pytest.mark.parametrize(
    "lr, batch, message",
    [
        ('"1e400"', "8192", "train.lr: '1e400' gives inf"),
        ('"-0.01 * (N / 1e6) ** -0.3"', "8192", "must be a positive, finite number"),
        ('"0.01"', '"-D / 1e3"', "train.batch_tokens: '-D / 1e3' gives -"),  # was 4096, silently
        ('"' + "N" + " + N" * 5000 + '"', "8192", "a formula has at most 2,000"),
        ('"N' + " * 1" * 150 + ' * 1e-9"', "8192", "nested more than 100 deep"),
        # a law that says -0.25 C^0.3 (planned as 4096 tokens once): refused as it loads
        ('"fit:hp.json"', '"fit:hp.json"', "k_batch: -0.25 must be positive"),
    ],
)
@pytest.mark.slow
def test_rules_that_give_no_usable_value_are_one_line(tmp_path, corpus, lr, batch, message):
    import subprocess
    import sys

    HparamsLaw.from_params({"k_lr": 0.3, "e_lr": -0.1, "k_batch": -0.25, "e_batch": 0.3}).to_json(
        tmp_path / "hp.json"
    )
    spec = write_spec(tmp_path, corpus)
    text = spec.read_text().replace('lr = "0.01 * (N / 1e6) ** -0.3"', f"lr = {lr}")
    spec.write_text(text.replace("batch_tokens = 8192", f"batch_tokens = {batch}"))
    out = tmp_path / "RUNS"
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "plan", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and len(lines[0]) < 400, lines
    assert not out.exists()


def test_the_plans_total_counts_its_wsd_branches_cooldowns(tmp_path):
    """plan.csv's flops are each run's own; the summary's total adds what its branches'
    cooldowns will spend (each trains its cooldown alone, from a checkpoint of the run)."""
    spec = tmp_path / "spec.toml"
    text = (SWEEPS / "demo.toml").read_text()
    spec.write_text(text.replace('schedule = "wsd"', 'schedule = "wsd"\nbranches = [0.25, 0.5]'))
    result = runner.invoke(app, ["plan", str(spec), "--dry-run", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    own = sum(row["flops"] for row in report["runs"])
    # cooldown_fraction 0.2 of branches ending at 1/4 and 1/2 of a run: 15% more, to rounding
    assert report["summary"]["branch_flops"] == pytest.approx(0.15 * own, rel=0.02)
    assert report["summary"]["total_flops"] == pytest.approx(
        own + report["summary"]["branch_flops"]
    )
    plain = runner.invoke(app, ["plan", str(SWEEPS / "demo.toml"), "--dry-run", "--json"])
    assert json.loads(plain.output)["summary"]["branch_flops"] == 0


def test_the_wsd_design_spends_a_third_of_the_demos_flops_on_its_shapes():
    """sweeps/demo_wsd.toml (the demo's study at a third of the compute): its runs and their
    branches' cooldowns plan at most a third of demo.toml's FLOPs (and within 1% of it), on
    shapes of the demo's own IsoFLOP grid, tokens falling as N^-1/2."""

    def planned(name):
        result = runner.invoke(app, ["plan", str(SWEEPS / name), "--dry-run", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    demo, wsd = planned("demo.toml"), planned("demo_wsd.toml")
    share = wsd["summary"]["total_flops"] / demo["summary"]["total_flops"]
    assert 0.33 < share <= 1 / 3
    assert {row["params"] for row in wsd["runs"]} <= {row["params"] for row in demo["runs"]}
    runs = sorted(wsd["runs"], key=lambda row: row["params"])
    ratios = [row["tokens"] * row["params"] ** 0.5 for row in runs]
    assert max(ratios) / min(ratios) < 1.01
