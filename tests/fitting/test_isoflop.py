import numpy as np
import pandas as pd
import pytest

from scaling.fitting import FitError, Law
from scaling.fitting.envelope import fit_envelope
from scaling.fitting.isoflop import fit_isoflop
from scaling.fitting.parametric import ParametricLaw

from .conftest import CHINCHILLA, chinchilla_loss, isoflop_points

TRUE_A = 0.28 / 0.62


def test_approach_2_recovers_a_with_symmetric_sampling(chinchilla_points):
    law = fit_isoflop(chinchilla_points)
    assert law.params_["a"] == pytest.approx(TRUE_A, abs=0.02)
    assert law.params_["b"] == pytest.approx(1 - TRUE_A, abs=0.02)
    assert all(b["used"] for b in law.details_["budgets"])
    # N_opt · D_opt · 6 = C along the fitted laws
    best = law.optimum(1e20)
    assert 6 * best["params"] * best["tokens"] == pytest.approx(1e20, rel=0.02)


def test_parametric_optimum_variant_removes_the_asymmetry_bias():
    skewed = isoflop_points(skew=0.8, spread=1.2, noise=0.0)
    parabola = fit_isoflop(skewed)
    variant = fit_isoflop(skewed, budget_optimum="parametric")
    truth = ParametricLaw.from_params(CHINCHILLA).optimum(1e20)["params"]
    assert variant.optimum(1e20)["params"] == pytest.approx(truth, rel=1e-6)
    # an asymmetric profile pulls each parabola's vertex off the true optimum
    parabola_error = abs(parabola.optimum(1e20)["params"] / truth - 1)
    assert parabola_error > 100 * abs(variant.optimum(1e20)["params"] / truth - 1)


def test_bad_budgets_are_left_out_with_a_reason():
    df = isoflop_points()
    budgets = sorted(df["budget"].unique())
    # budget 0 keeps 2 points; budget 1 only samples sizes left of its optimum
    df = df[~((df["budget"] == budgets[0]) & (df.index % 9 > 1))]
    df = df[~((df["budget"] == budgets[1]) & (df.index % 9 >= 4))]
    law = fit_isoflop(df)
    reasons = {round(np.log10(b["budget"]), 2): b["reason"] for b in law.details_["budgets"]}
    assert "a parabola needs 3" in reasons[round(np.log10(budgets[0]), 2)]
    assert "outside the sampled sizes" in reasons[round(np.log10(budgets[1]), 2)]
    assert law.params_["a"] == pytest.approx(TRUE_A, abs=0.02)


def test_single_budget_is_a_clear_error():
    df = isoflop_points(budgets=[1e19])
    with pytest.raises(FitError, match="at least 2 budgets"):
        fit_isoflop(df)


def test_bootstrap_intervals_and_round_trip(tmp_path):
    law = fit_isoflop(isoflop_points(noise=0.01), bootstrap_samples=50, bootstrap_unit="budgets")
    low, high = law.intervals_["a"]
    assert low < law.params_["a"] < high
    prediction = law.predict(compute=1e23)
    assert prediction["intervals"]["params"][0] < prediction["params"]
    path = tmp_path / "isoflop.json"
    law.to_json(path)
    assert Law.from_json(path).predict(compute=1e23) == prediction


def _curves():
    """Training curves of runs of several sizes: loss at D tokens is L(N, D)."""
    rows = []
    for i, N in enumerate(np.logspace(7, 9, 9)):
        for D in np.logspace(8, 11.5, 60):
            rows.append(
                {
                    "run_id": f"r{i}",
                    "params": N,
                    "tokens": D,
                    "flops": 6 * N * D,
                    "loss": chinchilla_loss(CHINCHILLA, N, D),
                }
            )
    return pd.DataFrame(rows)


def test_approach_1_envelope_from_curves():
    law = fit_envelope(_curves(), n_grid=25, bootstrap_samples=20)
    # a frontier picked among 9 discrete sizes: the exponent is close, not exact
    assert law.params_["a"] == pytest.approx(TRUE_A, abs=0.06)
    assert len(law.details_["optima"]) >= 10
    assert "a" in law.intervals_
    with pytest.raises(FitError, match="missing"):
        fit_envelope(_curves().drop(columns="flops"))


def test_derived_allocation_of_the_parametric_law_agrees_with_isoflop(chinchilla_points):
    parametric = ParametricLaw.from_params(CHINCHILLA)
    iso = fit_isoflop(chinchilla_points)
    for C in (1e19, 1e21):
        assert iso.optimum(C)["params"] == pytest.approx(parametric.optimum(C)["params"], rel=0.05)


def test_no_intervals_when_most_resamples_cannot_be_fitted(tmp_path):
    # two budgets of three sizes: a resample of points rarely keeps three distinct sizes in both
    law = fit_isoflop(isoflop_points(budgets=[1e19, 1e20], per_budget=3), bootstrap_samples=40)
    assert law.intervals_ == {} and law.samples_ == []
    assert "of 40 resamples could be fitted" in law.details_["bootstrap"]
    assert "intervals" not in law.predict(compute=1e22)
    law.to_json(tmp_path / "law.json")
    assert Law.from_json(tmp_path / "law.json").details_["bootstrap"] == law.details_["bootstrap"]


def test_porian_optima_keep_edge_budgets_and_weigh_them_by_their_spread():
    true_a = 0.28 / 0.62
    # minima just past the largest sampled size: the parabola keeps 2 of 7 budgets
    edge = isoflop_points(noise=0.002, skew=1.3, spread=1.2, per_budget=7)
    parabola = fit_isoflop(edge)
    porian = fit_isoflop(edge, budget_optimum="bootstrap")
    assert sum(row["used"] for row in parabola.details_["budgets"]) == 2
    assert sum(row["used"] for row in porian.details_["budgets"]) == 7
    assert porian.params_["a"] == pytest.approx(true_a, abs=0.02)
    assert all(row["log_spread"] > 0 for row in porian.details_["budgets"])
    # on noisy, centred profiles both land near the truth
    for seed in range(3):
        noisy = isoflop_points(noise=0.01, seed=seed, per_budget=7)
        assert fit_isoflop(noisy, budget_optimum="bootstrap").params_["a"] == pytest.approx(
            true_a, abs=0.04
        )
    with pytest.raises(FitError, match="budget_optimum='magic': must be one of parabola"):
        fit_isoflop(edge, budget_optimum="magic")
