import json
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scaling import plotting
from scaling.cli import app
from scaling.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from scaling.fitting import (
    LRAnnealingLaw,
    LrCurves,
    MultiPowerLaw,
    fit_parametric,
    prepare_points,
)
from scaling.fitting.curves import Curve
from scaling.fitting.hparams import fit_hparams
from scaling.fitting.isoflop import fit_isoflop
from scaling.rundir import RunsDir
from scaling.schedules import lr_schedule

from .conftest import scaling
from .fitting.conftest import isoflop_points
from .fitting.test_laws import _hparam_points

runner = CliRunner()


def test_plot_a_csv_of_published_style_points(tmp_path):
    csv = tmp_path / "points.csv"
    isoflop_points(noise=0.01).drop(columns=["budget"]).to_csv(csv, index=False)
    result = runner.invoke(
        app, ["plot", str(csv), "--out", str(tmp_path / "figs"), "--format", "png,pdf"]
    )
    assert result.exit_code == 0, result.output
    for name in ("isoflop_profiles", "allocation", "parametric_contours", "residuals"):
        for ext in ("png", "pdf"):
            path = tmp_path / "figs" / f"{name}.{ext}"
            assert path.stat().st_size > 5000, path  # a drawn figure, not an empty canvas
    assert (tmp_path / "figs" / "isoflop_profiles.png").read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["plot", str(csv), "--format", "gif"])
    assert bad.exit_code == 2 and "--format" in bad.output


def test_figures_from_the_library(tmp_path):
    points = prepare_points(isoflop_points(noise=0.01)).frame
    laws = {
        "parametric": fit_parametric(points, bootstrap_samples=10, keep=8),
        "isoflop": fit_isoflop(points, bootstrap_samples=10),
    }
    curves = pd.DataFrame(
        [
            {
                "run_id": f"r{i}",
                "params": n,
                "tokens": d,
                "flops": 6 * n * d,
                "loss": 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28,
            }
            for i, n in enumerate(np.logspace(7, 9, 5))
            for d in np.logspace(8, 11, 20)
        ]
    )
    summary = {
        "budget": 1e23,
        "predicted_loss": 2.0,
        "predicted_interval": [1.9, 2.1],
        "measured_loss": 2.05,
    }
    figures = plotting.figures_for(points, laws, curves, summary)
    assert set(figures) == {
        "isoflop_profiles",
        "allocation",
        "loss_curves",
        "parametric_contours",
        "residuals",
        "holdout",
    }
    hp = prepare_points(_hparam_points()).frame
    figures["hparams"] = plotting.hparams(hp, fit_hparams(hp))
    for name, figure in figures.items():
        figure.savefig(tmp_path / f"{name}.png")
        assert figure.axes and (tmp_path / f"{name}.png").stat().st_size > 5000
    json.dumps(summary)


# -- loss-curve laws: each run's measured curve beside the law's prediction for its schedule --
MPL = {"L0": 3.0, "A": 0.5, "alpha": 0.5, "B": 400.0, "C": 2.0, "beta": 0.6, "gamma": 0.6}
KINDS = ("constant", "cosine", "wsd")


def _train(kind: str, steps: int) -> TrainConfig:
    return TrainConfig(
        schedule=kind, lr=3e-4, warmup_steps=20, tokens=steps * 256, batch_tokens=256, seq_len=32
    )


def _drawn_curves(law, steps=400, every=5, noise=0.01) -> LrCurves:
    """Curves of a known law under three schedules, logged every ``every`` steps with noise."""
    rng = np.random.default_rng(0)
    curves = []
    for kind in KINDS:
        lr = np.array(lr_schedule(_train(kind, steps), steps))
        logged = np.arange(every - 1, steps, every)
        loss = law.curve(lr, logged) * np.exp(rng.normal(0, noise, len(logged)))
        curves.append(Curve(kind, lr, logged, loss))
    return LrCurves(curves, "drawn")


def _lines(ax) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata(), float) for line in ax.get_lines()}


def test_curve_fits_draw_each_runs_measured_curve_beside_the_laws_prediction(tmp_path):
    truth = MultiPowerLaw.from_params(MPL)
    curves = _drawn_curves(truth)
    other = LRAnnealingLaw.from_params({"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.3})
    # one law for every curve, and one given per curve (a held-out fit): cosine has none
    laws = {"multi-power": truth, "held out": {"constant": other, "wsd": other}}
    figure = plotting.curve_fits(curves, laws, titles={"wsd": "wsd (held out)"})
    panels = [ax for ax in figure.axes if ax.get_xlabel() == "step"]
    assert [ax.get_title() for ax in panels] == ["constant", "cosine", "wsd (held out)"]
    for ax, curve in zip(panels, curves.curves, strict=True):
        lines = _lines(ax)
        np.testing.assert_array_equal(lines["measured"], curve.loss)
        # the predicted curve is the law's own along this run's schedule, at every step
        np.testing.assert_allclose(lines["multi-power"], truth.curve(curve.lr), rtol=1e-12)
        if curve.name == "cosine":
            assert "held out" not in lines
        else:
            np.testing.assert_allclose(lines["held out"], other.curve(curve.lr), rtol=1e-12)
        # the binned measured curve follows the law within the noise left after binning
        binned = lines["measured, binned"]
        assert len(binned) == len(curve.loss) // 2
        late = truth.curve(curve.lr, curve.steps)[: len(binned) * 2].reshape(-1, 2).mean(1)
        assert np.max(np.abs(binned / late - 1)) < 0.03
    # the loss axis shows the curves after their first fast drop, not the untrained model
    low, high = panels[0].get_ylim()
    assert low < min(c.loss.min() for c in curves.curves)
    assert high < 0.5 * max(c.loss.max() for c in curves.curves)
    figure.savefig(tmp_path / "curve_fits.png")
    assert (tmp_path / "curve_fits.png").stat().st_size > 5000
    plt.close("all")


def test_a_curve_law_beside_point_laws_draws_its_figure_and_breaks_none(tmp_path):
    points = prepare_points(isoflop_points(noise=0.01)).frame
    laws = {"parametric": fit_parametric(points), "isoflop": fit_isoflop(points)}
    alone = plotting.figures_for(points, laws)
    truth = MultiPowerLaw.from_params(MPL)
    curves = _drawn_curves(truth)
    both = plotting.figures_for(points, {**laws, "multi-power": truth}, lr_curves=curves)
    assert set(both) == set(alone) | {"curve_fits"}
    # without curves a curve law draws nothing; with no points, the curve figure alone
    assert set(plotting.figures_for(points, {**laws, "multi-power": truth})) == set(alone)
    only = plotting.figures_for(points.iloc[0:0], {"multi-power": truth}, lr_curves=curves)
    assert set(only) == {"curve_fits"}
    plt.close("all")


def _runs_of_one_model(path, law, steps=200) -> RunsDir:
    """A runs directory as the trainer leaves it, its losses drawn from ``law`` (through the
    owners' writers: plan.csv, each run's config.json and metrics.jsonl)."""
    runs = RunsDir(path)
    model = ModelConfig(vocab_size=256, d_model=32, n_layers=2, n_heads=2, max_seq_len=32)
    data = DataConfig(tokenizer="bytes")
    rows, rng = [], np.random.default_rng(1)
    for kind in KINDS:
        run_id = f"run-{kind}"
        config = RunConfig(run_id=run_id, model=model, data=data, train=_train(kind, steps))
        run = runs.run(run_id)
        run.write_config(config)
        lr = np.array(lr_schedule(config.train, steps))
        loss = law.curve(lr) * np.exp(rng.normal(0, 0.01, steps))
        for step in range(2, steps + 1, 2):  # a line per 2 steps done: step s logs s - 1's loss
            tokens = step * 256
            run.append_metrics(
                {"step": step, "tokens": tokens, "flops": 6 * 30_000 * tokens,
                 "lr": lr[step - 1], "train_loss": loss[step - 1]}
            )  # fmt: skip
        rows.append({"run_id": run_id, "grid": "grid", "kind": "grid", "budget": float("nan"),
                     "params": 30_000, "tokens": tokens, "flops": 6 * 30_000 * tokens})  # fmt: skip
    runs.write_plan(pd.DataFrame(rows))
    return runs


@pytest.mark.slow
def test_plot_draws_a_curve_fit_of_a_runs_directory_in_a_fresh_process(tmp_path):
    runs = _runs_of_one_model(tmp_path / "RUNS", MultiPowerLaw.from_params(MPL))
    fit = tmp_path / "multi-power.json"
    MultiPowerLaw.from_params(MPL).to_json(fit)
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache")}
    done = scaling("plot", runs.path, "--fit", fit, "--out", tmp_path / "figs", env=env)
    assert done.stdout.splitlines() == [f"wrote {tmp_path / 'figs' / 'curve_fits.png'}"]
    assert (tmp_path / "figs" / "curve_fits.png").stat().st_size > 5000
    # found in RUNS/fits/ as `scaling fit` leaves it: drawn into RUNS/figures/
    MultiPowerLaw.from_params(MPL).to_json(runs.fit_path("multi-power"))
    done = scaling("plot", runs.path, env=env)
    assert (runs.figures / "curve_fits.png").stat().st_size > 5000, done.stdout


def test_a_curve_law_with_a_source_of_no_curves_is_one_line_and_exit_2(tmp_path):
    csv = tmp_path / "points.csv"
    isoflop_points(noise=0.01).to_csv(csv, index=False)
    fit = tmp_path / "multi-power.json"
    MultiPowerLaw.from_params(MPL).to_json(fit)
    done = runner.invoke(app, ["plot", str(csv), "--fit", str(fit), "--out", str(tmp_path / "f")])
    assert done.exit_code == 2, done.output
    assert done.output.startswith(f"error: --fit {fit}: a multi-power law draws loss curves")
    assert "points.csv has none of one model: " in done.output and "no 'run' column" in done.output
    assert len(done.output.strip().splitlines()) == 1
    assert not (tmp_path / "f").exists()  # nothing drawn
