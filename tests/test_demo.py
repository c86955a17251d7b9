import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaling import results
from scaling.cli import app
from scaling.config import ConfigError, load_run_config
from scaling.counting import count_params
from scaling.demo import describe
from scaling.fitting import Law
from scaling.fitting.averaging import paired_intervals


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spec", "missing.toml"], "missing.toml: no such file"),
        (["--spec", "bad.toml"], "bad.toml: sweep.bogus: unknown key"),
        (["--tiny", "--spec", "bad.toml"], "--tiny shrinks the packaged demo spec"),
    ],
)
def test_bad_demo_arguments_are_one_line_and_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text('[sweep]\nname = "x"\nbogus = 1\n')
    result = CliRunner().invoke(app, ["demo", "--out", "runs", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.e2e
def test_tiny_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--tiny", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "holdout at" in result.output and "predicted" in result.output
    assert "the holdout's loss, by law: parametric" in result.output
    frame = results.load(out)
    assert len(frame) >= 6 and set(frame["status"]) == {"done"}
    law = Law.from_json(out / "fits" / "parametric.json")
    assert law.n_points_ == len(frame) and law.samples_
    summary = json.loads((out / "summary.json").read_text())
    assert summary["measured_status"] == "done"
    assert summary["budget"] == pytest.approx(4 * max(summary["fitted_budgets"]))
    assert summary["measured_loss"] > 0 and summary["predicted_loss"] > 0
    low, high = summary["predicted_interval"]
    low_80, high_80 = summary["predicted_interval_80"]
    assert low <= low_80 <= summary["predicted_loss"] <= high_80 <= high
    # the loss laws, weighted by their backtests (the better one weighs more), predict the
    # holdout together, and the holdout, trained after the fit, lands inside their interval
    errors, weights = summary["backtest_loss_errors"], summary["loss_law_weights"]
    assert set(errors) == set(weights) == {"parametric", "kaplan"}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert max(weights, key=weights.get) == min(errors, key=errors.get)
    by_law = summary["predicted_by_law"]
    assert summary["predicted_loss"] == pytest.approx(sum(weights[n] * by_law[n] for n in weights))
    assert low <= summary["measured_loss"] <= high, summary
    # the printed intervals are the averaged prediction's own, from the laws' bootstraps paired
    # resample by resample: recomputed here from the fit files as written
    assert summary["interval_kind"] == "paired"
    fits = {name: Law.from_json(out / "fits" / f"{name}.json") for name in weights}
    holdout = load_run_config(out / "holdout" / summary["holdout_run"] / "config.json")
    counts = count_params(holdout.model)
    sizes = {"params": counts.total, "params_nonembedding": counts.non_embedding}
    paired = paired_intervals(fits, weights, sizes, summary["holdout_tokens"])
    assert paired[0.95] == pytest.approx([low, high]) and paired[0.8] == pytest.approx(
        [low_80, high_80]
    )
    assert summary["mixture_interval"] != summary["predicted_interval"]
    mixture = {**summary, "interval_kind": "mixture"}
    assert "could not be paired" in describe(mixture) and "paired" not in describe(summary)
    # the holdout run is never among the fitted points
    assert summary["holdout_run"] not in set(frame["run_id"])
    for name in (
        "isoflop_profiles",
        "allocation",
        "loss_curves",
        "parametric_contours",
        "residuals",
        "holdout",
    ):
        path = out / "figures" / f"{name}.png"
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000, name
    # a second run resumes: nothing is trained or fitted again, the same summary comes back
    fitted = {path.name: path.stat().st_mtime_ns for path in (out / "fits").glob("*.json")}
    again = CliRunner().invoke(app, ["demo", "--tiny", "--out", str(out), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "fits").glob("*.json")} == fitted
    assert json.loads((out / "summary.json").read_text()) == summary


def test_demo_spec_is_the_packaged_one_or_the_given_file(tmp_path):
    from scaling.demo import demo_spec

    packaged = demo_spec(tiny=False)
    assert packaged.data.tokenizer == "bytes" and packaged.grid[0].budgets == [1e11, 3e11, 1e12]
    root = Path(__file__).parents[1]
    shipped = (root / "sweeps" / "demo.toml").read_text()
    assert shipped == (root / "scaling" / "specs" / "demo.toml").read_text()
    mine = tmp_path / "mine.toml"
    mine.write_text(shipped.replace("lr = 1e-2", "lr = 3e-3"))
    assert demo_spec(tiny=False, path=mine).train.lr == 3e-3


SWEEPS = Path(__file__).parents[1] / "sweeps"
REFUSED = {
    "hparams.toml": "needs an isoflop grid",
    "moe.toml": "grid 'experts' (grid) adds runs",
    "demo_wsd.toml": "needs an isoflop grid",
}


@pytest.mark.parametrize("name", sorted(p.name for p in SWEEPS.glob("*.toml")))
def test_demo_spec_on_every_example_sweep_plans_and_resolves_its_holdout(
    name, tmp_path, monkeypatch
):
    """Without training: the study is refused in one line, or its plan and its holdout (the
    spec's own architecture and lr rule, at 4x the largest budget) resolve."""
    from scaling.demo import HOLDOUT_FACTOR, check_study, demo_spec, holdout_config
    from scaling.planning.plan import plan_sweep

    monkeypatch.chdir(tmp_path)
    spec = demo_spec(tiny=False, path=SWEEPS / name)
    if name in REFUSED:
        with pytest.raises(ConfigError, match=re.escape(REFUSED[name])):
            check_study(spec, name)
        result = CliRunner().invoke(app, ["demo", "--spec", str(SWEEPS / name), "--out", "x"])
        assert result.exit_code == 2 and REFUSED[name] in result.output
        assert len(result.output.strip().splitlines()) == 1 and not Path("x").exists()
        return
    check_study(spec, name)
    runs = plan_sweep(spec, SWEEPS).runs
    largest = max(row["budget"] for row in runs)
    best = max((r for r in runs if r["budget"] == largest), key=lambda r: r["params"])
    config = holdout_config(spec, SWEEPS, best["params"] * 2, HOLDOUT_FACTOR * largest)
    planned = best["config"]
    assert config.model.model_dump(exclude=SIZES) == planned.model.model_dump(exclude=SIZES)
    assert config.train.flop_formula == spec.sweep.flop_formula
    assert config.train.tokens > planned.train.tokens
    if name == "chinchilla.toml":  # its lr is a formula of N: the holdout's own N
        n = count_params(config.model).total
        assert config.train.lr == pytest.approx(0.003 * (n / 1e8) ** -0.25)


def test_an_moe_study_gets_an_moe_holdout(tmp_path):
    from scaling.demo import check_study, demo_spec, holdout_config

    text = (
        (SWEEPS / "demo.toml")
        .read_text()
        .replace('position = "rope"', 'position = "rope"\nn_experts = 4\ntop_k = 2')
    )
    path = tmp_path / "moe_demo.toml"
    path.write_text(text)
    spec = demo_spec(tiny=False, path=path)
    check_study(spec, str(path))
    config = holdout_config(spec, tmp_path, 1e5, 4e12)
    assert config.model.n_experts == 4 and config.model.top_k == 2


SIZES = {"d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff"}
