import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from scaling import plotting
from scaling.cli import app
from scaling.fitting import fit_parametric, prepare_points
from scaling.fitting.hparams import fit_hparams
from scaling.fitting.isoflop import fit_isoflop

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
