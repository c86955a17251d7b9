"""A law the points cannot identify is refused in one line (or flagged), never reported with
round-off for parameters and zero-width intervals as if fitted (#26)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scaling.fitting import FitError, fit_parametric
from scaling.fitting.data_constrained import fit_data_constrained
from scaling.fitting.downstream import fit_downstream, sigmoid
from scaling.fitting.envelope import fit_envelope
from scaling.fitting.hparams import fit_hparams
from scaling.fitting.kaplan import fit_kaplan
from scaling.fitting.moe import fit_moe

from .conftest import CHINCHILLA, chinchilla_loss, isoflop_points
from .test_isoflop import _curves
from .test_laws import TRUTH_DC, _hparam_points, _moe_points, _repeated_points


def scaling(*args):
    return subprocess.run(
        [sys.executable, "-m", "scaling", *map(str, args)], capture_output=True, text=True
    )


def assert_one_line(done, message):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.fixture
def equal_losses(tmp_path):
    """4 budgets of 5 sizes, every loss 3.0: nothing depends on size or tokens."""
    frame = isoflop_points(budgets=np.logspace(18, 21, 4), per_budget=5).assign(loss=3.0)
    path = tmp_path / "equal.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "law, message",
    [
        (["parametric"], "all 20 losses are equal (3), so they cannot identify E, A, alpha"),
        (["isoflop"], "1e+18, 1e+19, 1e+20, 1e+21: its losses are all equal"),
        (["isoflop", "--optimum", "bootstrap"], "its losses are all equal"),
        (["kaplan"], "all 20 losses are equal (3), so they cannot identify the kaplan law's"),
    ],
)
def test_equal_losses_are_refused_not_fitted(tmp_path, equal_losses, law, message):
    # before: the parametric law reported a fit (alpha = beta = 0, a = nan), the IsoFLOP law
    # an allocation exponent from parabolas fitted through round-off, Kaplan an overflow
    out = tmp_path / "fit.json"
    done = scaling("fit", equal_losses, "--law", *law, "--bootstrap", "10", "--out", out)
    assert_one_line(done, message)
    assert not out.exists()


@pytest.mark.slow
def test_fit_all_exits_2_with_each_laws_reason_when_none_fits(tmp_path, equal_losses):
    # before: exit 0 and, here, three fit files of round-off
    out = tmp_path / "fits"
    done = scaling("fit", equal_losses, "--law", "all", "--out", out)
    assert_one_line(done, f"no law could be fitted to {equal_losses}, nothing written (")
    for law in ("parametric", "isoflop", "envelope", "kaplan", "data-constrained", "moe"):
        assert f"{law}: " in done.stderr, law
    assert "hparams: the hparams law needs runs that vary 'lr'" in done.stderr
    assert not out.exists()


def _grid(sizes, tokens, loss):
    N, D = (a.ravel() for a in np.meshgrid(sizes, tokens))
    return pd.DataFrame({"params": N, "tokens": D, "loss": loss(N, D)})


def test_parametric_needs_three_sizes_unless_a_pin_leaves_one_parameter():
    # A/N^alpha through 2 sizes: one difference of loss for two parameters. Before: fitted.
    two_sizes = _grid(
        [1e8, 1e9], [1e9, 3e9, 1e10, 3e10], lambda N, D: chinchilla_loss(CHINCHILLA, N, D)
    )
    with pytest.raises(FitError, match="3 or more distinct sizes .* got 8 points, 2 sizes"):
        fit_parametric(two_sizes)
    pinned = fit_parametric(two_sizes, pinned={"alpha": 0.34})
    assert pinned.params_["A"] == pytest.approx(CHINCHILLA["A"], rel=1e-6)


def test_parametric_refuses_a_term_the_points_do_not_show():
    sizes, tokens = np.logspace(7.5, 9.5, 4), np.logspace(9, 11, 5)
    p = CHINCHILLA
    flat_in_n = _grid(sizes, tokens, lambda N, D: p["E"] + p["B"] / D ** p["beta"])
    with pytest.raises(FitError, match="term A/N\\^alpha changes the loss by .* identify A and"):
        fit_parametric(flat_in_n)  # before: A and alpha of whatever the optimiser stopped at
    rising = _grid(sizes, tokens, lambda N, D: p["E"] + p["B"] / D ** p["beta"] + 0.02 * np.log(N))
    with pytest.raises(FitError, match="alpha = -0.0\\d+: the loss does not fall with model size"):
        fit_parametric(rising)  # before: a negative alpha and an optimum of NaN


def test_parametric_resamples_that_cannot_identify_the_law_are_not_refitted():
    # 3 sizes × 3 token counts: a resample of the 9 points can miss a size; it is skipped
    frame = _grid(
        [1e8, 3e8, 1e9], [1e9, 1e10, 1e11], lambda N, D: chinchilla_loss(CHINCHILLA, N, D)
    )
    frame["loss"] *= np.exp(np.random.default_rng(0).normal(0, 0.005, len(frame)))
    law = fit_parametric(frame, bootstrap_samples=40, seed=0)
    assert 20 <= len(law.samples_) < 40  # before: 40, some from two sizes


def test_kaplan_flags_a_term_that_vanishes():
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e6), np.log(1e9), 60))
    D = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 60))
    law = fit_kaplan(pd.DataFrame({"params": N, "tokens": D, "loss": (1.3e13 / N) ** 0.07}))
    (warning,) = law.details_["warnings"]  # before: alpha_D reported as if fitted
    assert "the loss does not depend on D in these points, and D_c and alpha_D are not" in warning


def test_hparams_budgets_of_equal_losses_have_no_optimum():
    frame = _hparam_points()
    budgets = sorted(frame["budget"].unique())
    flat = frame.assign(loss=np.where(frame["budget"] == budgets[0], 3.0, frame["loss"]))
    law = fit_hparams(flat)  # the others still fix the laws
    first = law.details_["budgets"][0]
    assert np.isnan(first["lr"]) and "losses are all equal" in first["lr_reason"]
    assert law.params_["e_lr"] == pytest.approx(-0.1, abs=1e-6)
    with pytest.raises(FitError, match="fewer than 2 budgets have an optimum"):
        fit_hparams(frame.assign(loss=3.0))  # before: the centre of the grid swept, fitted


def test_downstream_envelope_and_data_constrained_refuse_equal_values():
    points = isoflop_points()
    with pytest.raises(FitError, match="all 63 accuracy values are equal"):
        fit_downstream(points.assign(accuracy=0.5))
    curves = _curves().assign(loss=2.5)
    with pytest.raises(FitError, match="losses are equal .* the envelope law"):
        fit_envelope(curves)
    repeated = _repeated_points(TRUTH_DC).assign(loss=3.0)
    with pytest.raises(FitError, match="losses are equal .* the data-constrained law"):
        fit_data_constrained(repeated, base=CHINCHILLA)
    # the sigmoid link still fits where the metric varies
    points["accuracy"] = sigmoid(points["loss"], 0.25, 0.8, 6.0, 2.4)
    assert fit_downstream(points).params_["k"] == pytest.approx(6.0, rel=1e-4)


def test_moe_multiplier_on_the_edge_of_its_range_is_refused():
    frame = _moe_points()
    moe = frame["n_experts"] == 8
    # far better than any multiplier can explain: the search stops on its edge (before: a
    # multiplier of 22,000 reported as fitted)
    better = chinchilla_loss(CHINCHILLA, 1e6 * frame["params"], frame["tokens"])
    frame["loss"] = frame["loss"].where(~moe, better)
    with pytest.raises(FitError, match="multiplier_8 = 2.203e\\+04 lies on the edge of its"):
        fit_moe(frame)


def test_a_pinned_parameter_is_shown_as_pinned_not_as_a_zero_width_interval(tmp_path):
    from typer.testing import CliRunner

    from scaling.cli import app

    csv = tmp_path / "points.csv"
    isoflop_points(noise=0.01).to_csv(csv, index=False)
    args = ["fit", str(csv), "--pin", "E=1.69", "--bootstrap", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ E "))
    assert "pinned" in row and "[1.69, 1.69]" not in row  # before: [1.69, 1.69]
