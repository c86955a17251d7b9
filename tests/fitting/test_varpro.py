"""Variable projection (``ParametricLaw(solver="varpro")``, ``fitting.varpro``): the optimum
the multistart finds, on Epoch AI's points and on points of a known law, with pins, bounds
and tied exponents; its option through the command line and the fit file."""

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from scaling import published
from scaling.cli import app
from scaling.fitting import FitError, Law, chinchilla, prepare_points, varpro
from scaling.fitting.parametric import ParametricLaw

from ..conftest import scaling
from .conftest import CHINCHILLA, isoflop_points, random_truth


def fit_both(points, **parameters) -> tuple[ParametricLaw, ParametricLaw]:
    return tuple(
        ParametricLaw(solver=solver, **parameters).fit(points)
        for solver in ("multistart", "varpro")
    )


def assert_same_optimum(multistart: ParametricLaw, projected: ParametricLaw, rel: float = 1e-5):
    gap = (projected.objective_ - multistart.objective_) / multistart.objective_
    assert abs(gap) < 1e-8, gap
    for name, value in multistart.params_.items():
        assert projected.params_[name] == pytest.approx(value, rel=rel), name


@pytest.mark.parametrize("drop_highest", [0, 5])
def test_epoch_ais_points_give_the_multistarts_optimum(drop_highest):
    points = prepare_points(published.load("chinchilla"), drop_highest=drop_highest)
    multistart, projected = fit_both(points)
    assert_same_optimum(multistart, projected)
    assert projected.details_["converged"]


@pytest.mark.parametrize(
    "parameters",
    [
        {"pinned": {"E": 1.69}},
        {"pinned": {"alpha": 0.34}},
        {"pinned": {"A": 400.0, "B": 2000.0}},
        {"bounds": {"alpha": (0.0, 0.3)}},
        {"bounds": {"alpha": (0.4, None), "E": (None, 1.7)}},
        {"tie_exponents": True},
        {"objective": "l2"},
    ],
    ids=str,
)
def test_pins_bounds_ties_and_losses_as_the_multistart_keeps_them(parameters):
    points = prepare_points(published.load("chinchilla"), drop_highest=5)
    multistart, projected = fit_both(points, **parameters)
    assert_same_optimum(multistart, projected)
    for name, value in parameters.get("pinned", {}).items():
        assert projected.params_[name] == pytest.approx(value, rel=1e-12)
    for name, (low, high) in parameters.get("bounds", {}).items():
        assert (low or 0) - 1e-12 <= projected.params_[name] <= (high or np.inf) + 1e-12
    if parameters.get("tie_exponents"):
        assert projected.params_["alpha"] == projected.params_["beta"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_known_law_is_recovered(seed):
    rng = np.random.default_rng(seed)
    truth = random_truth(rng)
    budgets = np.logspace(17, 21, 9)
    exact = ParametricLaw(solver="varpro").fit(isoflop_points(truth, budgets=budgets))
    for name, value in truth.items():
        assert exact.params_[name] == pytest.approx(value, rel=1e-4), name
    # with 0.2% noise: the multistart's optimum, and near the truth
    noisy = isoflop_points(truth, budgets=budgets, noise=0.002, seed=seed)
    multistart, projected = fit_both(noisy)
    assert_same_optimum(multistart, projected, rel=1e-4)
    assert projected.params_["E"] == pytest.approx(truth["E"], rel=0.01)
    for name in ("alpha", "beta"):
        assert projected.params_[name] == pytest.approx(truth[name], abs=0.03), name


def test_the_inner_solve_finds_e_a_b_at_given_exponents(monkeypatch):
    """At the true exponents of noise-free points the profile is the law itself; at the
    optimum's exponents of Epoch AI's points, the optimum's objective: within 1e-5 after the
    steps that rank the grid, to round-off after more."""
    problem = chinchilla.Problem(isoflop_points())
    thetas, values = varpro.profile(problem, [np.array([0.34]), np.array([0.28])])
    np.testing.assert_allclose(thetas[0], chinchilla.internal(CHINCHILLA), rtol=1e-9)
    assert values[0] < 1e-20
    points = prepare_points(published.load("chinchilla"), drop_highest=5)
    law = ParametricLaw().fit(points)
    problem = chinchilla.Problem(points.frame)
    best = chinchilla.internal(law.params_)
    exponents = [best[3:4], best[4:5]]
    assert varpro.profile(problem, exponents)[1][0] == pytest.approx(law.objective_, rel=1e-5)
    monkeypatch.setattr(varpro, "ITERATIONS", 80)
    thetas, values = varpro.profile(problem, exponents)
    assert values[0] == pytest.approx(law.objective_, rel=1e-12)
    np.testing.assert_allclose(thetas[0, :3], best[:3], atol=1e-6)


def test_the_solver_is_in_the_fit_file_and_older_files_are_multistart(tmp_path):
    law = ParametricLaw(solver="varpro").fit(isoflop_points(noise=0.01))
    path = tmp_path / "varpro.json"
    law.to_json(path)
    loaded = Law.from_json(path)
    assert loaded.solver == "varpro" and loaded.to_dict() == law.to_dict()
    data = json.loads(path.read_text())
    del data["options"]["solver"]  # a fit file written before the option
    assert Law.from_json(json.dumps(data)).solver == "multistart"
    data["options"]["solver"] = "newton"
    with pytest.raises(FitError, match="solver='newton': must be one of multistart, varpro"):
        Law.from_json(json.dumps(data))


def test_the_multistarts_own_options_are_refused_with_varpro(tmp_path):
    points = isoflop_points()
    for parameters, message in (
        ({"keep": 8}, "keep=8: sets the multistart's starts"),
        ({"starts": "all"}, "starts='all': sets the multistart's starts"),
    ):
        with pytest.raises(FitError, match=message):
            ParametricLaw(solver="varpro", **parameters).fit(points)
    csv = tmp_path / "points.csv"
    points.to_csv(csv, index=False)
    out = tmp_path / "x.json"
    result = CliRunner().invoke(
        app, ["fit", str(csv), "--solver", "varpro", "--keep", "8", "--out", str(out)]
    )
    assert result.exit_code == 2 and "--keep 8: sets the multistart's starts" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_fit_with_varpro_then_predict_in_fresh_processes(tmp_path):
    env = dict(os.environ)
    fit_file = tmp_path / "X.json"
    fitted = scaling(
        "fit", "builtin:chinchilla", "--law", "parametric", "--solver", "varpro",
        "--out", fit_file, "--json", env=env,
    )  # fmt: skip
    report = json.loads(fitted.stdout)
    assert json.loads(fit_file.read_text())["options"]["solver"] == "varpro"
    reference = ParametricLaw().fit(prepare_points(published.load("chinchilla")))
    assert abs(report["objective"] / reference.objective_ - 1) < 1e-8
    predicted = scaling("predict", "--fit", fit_file, "--compute", "5.76e23", "--json", env=env)
    assert json.loads(predicted.stdout)["params"] == pytest.approx(
        reference.predict(compute=5.76e23)["params"], rel=1e-4
    )


@pytest.mark.slow
def test_an_unknown_solver_is_one_line_exit_2(tmp_path):
    out = tmp_path / "X.json"
    done = scaling(
        "fit", "builtin:chinchilla", "--solver", "foo", "--out", out, env=dict(os.environ),
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --solver 'foo': must be one of multistart, varpro"
    assert not out.exists()
