"""``IsoFLOPLaw(budget_optimum="akima")``: Porian et al.'s per-budget optimum as their code
computes it (``scaling.fitting.akima``)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.fitting import FitError, Law
from scaling.fitting.akima import GRID_MULTIPLIER, MIN_STD_FACTOR, REPLICATES
from scaling.fitting.isoflop import fit_isoflop

from .conftest import CHINCHILLA, chinchilla_loss, isoflop_points

TRUE_A = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
DATA = Path(__file__).parent / "data"


def ladder(noise=0.0, seed=0, half=2.5, drift=1.2):
    """IsoFLOP points from the Chinchilla law on one ladder of sizes (8 a decade), as a sweep
    trains them: each budget takes the sizes within ``half`` (in ln N) of a centre that drifts
    from ``-drift`` to ``+drift`` off the true optimum across the budgets (a sweep centred by a
    wrong guess of a); ``noise``: the standard deviation of a Gaussian added to each loss."""
    p = CHINCHILLA
    rng = np.random.default_rng(seed)
    sizes = 10 ** np.arange(6, 12, 1 / 8)
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    rows, budgets = [], np.logspace(18, 21, 7)
    for C, shift in zip(budgets, np.linspace(-drift, drift, len(budgets)), strict=True):
        centre = np.log(G * (C / 6) ** TRUE_A) + shift
        for N in sizes[np.abs(np.log(sizes) - centre) <= half]:
            loss = chinchilla_loss(p, N, C / (6 * N)) + rng.normal(0, noise)
            rows.append({"params": N, "tokens": C / (6 * N), "flops": C, "budget": C, "loss": loss})
    return pd.DataFrame(rows)


def test_akima_recovers_a_from_points_of_a_known_law():
    # a wide sweep whose centre drifts off the optimum: the parabola's vertex moves with where
    # the profile was cut, the interpolation's minimum does not
    points = ladder()
    akima = fit_isoflop(points, budget_optimum="akima")
    parabola = fit_isoflop(points)
    assert akima.params_["a"] == pytest.approx(TRUE_A, abs=0.001)
    assert akima.params_["b"] == pytest.approx(1 - TRUE_A, abs=0.001)
    assert abs(parabola.params_["a"] - TRUE_A) > 5 * abs(akima.params_["a"] - TRUE_A)
    assert all(row["used"] for row in akima.details_["budgets"])
    # with noise on the losses well below the rise of a profile over one size step
    for seed in range(3):
        noisy = fit_isoflop(ladder(noise=0.0005, seed=seed), budget_optimum="akima")
        assert noisy.params_["a"] == pytest.approx(TRUE_A, abs=0.01)
    # points centred on the optimum (the other tests' profiles)
    centred = fit_isoflop(isoflop_points(), budget_optimum="akima")
    assert centred.params_["a"] == pytest.approx(TRUE_A, abs=0.01)


def test_without_seed_noise_the_optimum_is_the_grid_argmin_and_the_spread_its_floor():
    points = isoflop_points(per_budget=7)
    law = fit_isoflop(points, budget_optimum="akima", seed_noise=0.0)
    for row in law.details_["budgets"]:
        sizes = points[np.isclose(points["budget"], row["budget"])]["params"]
        step = np.log(sizes.max() / sizes.min()) / (GRID_MULTIPLIER * (7 - 1) - 1)  # grid step
        assert row["params"] == row["grid_params"] and row["replicates"] == REPLICATES
        assert row["log_spread"] == pytest.approx(MIN_STD_FACTOR * GRID_MULTIPLIER * step)
        assert "parabola" not in row  # the figure draws no curve the law did not fit


def test_edge_minima_and_unestimable_spreads_leave_the_budget_out():
    # every size above the optimum: the minimum is at the smallest size, so the budget is
    # dropped (Porian et al.'s rule), where the parabola bootstrap keeps it
    edge = isoflop_points(noise=0.0, skew=1.3, spread=1.2, per_budget=7)
    with pytest.raises(FitError, match="interpolated minimum lies at the smallest sampled size"):
        fit_isoflop(edge, budget_optimum="akima")
    assert fit_isoflop(edge, budget_optimum="bootstrap").params_
    # 3 sizes whose profile is shallower than the noise: most replicates' minimum is at an end
    shallow = isoflop_points(per_budget=5)
    budget = shallow["budget"].max()
    mask = np.isclose(shallow["budget"], budget)
    sizes = shallow[mask].iloc[[0, 2, 4]].assign(loss=[3.01, 3.0, 3.01])
    points = pd.concat([shallow[~mask], sizes])
    law = fit_isoflop(points, budget_optimum="akima", seed_noise=0.2)
    row = next(r for r in law.details_["budgets"] if r["budget"] == budget)
    assert not row["used"] and row["replicates"] < REPLICATES // 2
    assert "seed-noise replicates have their minimum inside the sampled sizes" in row["reason"]
    # fewer than 3 sizes
    two = fit_isoflop(pd.concat([shallow[~mask], sizes.iloc[:2]]), budget_optimum="akima")
    reason = two.details_["budgets"][-1]["reason"]
    assert "2 distinct sizes (the Akima interpolation needs 3)" in reason


def test_seed_noise_is_checked_and_saved_in_the_fit_file(tmp_path):
    points = isoflop_points(per_budget=7, noise=0.001)
    for bad in (-1, float("nan"), float("inf"), "0.01", True):
        with pytest.raises(FitError, match="seed_noise="):
            fit_isoflop(points, budget_optimum="akima", seed_noise=bad)
    with pytest.raises(FitError, match="only the akima optimum adds seed noise"):
        fit_isoflop(points, seed_noise=0.01)
    law = fit_isoflop(points, budget_optimum="akima", seed_noise=0.004, seed=3)
    again = fit_isoflop(points, budget_optimum="akima", seed_noise=0.004, seed=3)
    assert law.params_ == again.params_  # the replicates' draws follow the seed
    assert law.details_["seed_noise_intervals"]["a"][0] < law.params_["a"]
    assert law.details_["seed_noise_intervals"]["a"][1] > law.params_["a"]
    path = tmp_path / "isoflop.json"
    law.to_json(path)
    loaded = Law.from_json(path)
    assert loaded.seed_noise == 0.004 and loaded.budget_optimum == "akima"
    assert loaded.predict(compute=1e22) == law.predict(compute=1e22)
    data = json.loads(path.read_text())
    data["options"]["seed_noise"] = -0.5
    with pytest.raises(FitError, match=r"options: seed_noise=-0.5: must be 0 or a positive"):
        Law.from_dict(data, str(path))


def test_bootstrap_resamples_refit_the_akima_optima():
    law = fit_isoflop(
        isoflop_points(per_budget=7, noise=0.001),
        budget_optimum="akima",
        bootstrap_samples=8,
        bootstrap_unit="budgets",
    )
    # each resample of budgets is refitted the same way (its budgets' draws follow the seed)
    assert len(law.samples_) == 8 and set(law.intervals_) == set(law.params_)
    assert law.samples_[0]["a"] != law.samples_[1]["a"]
    assert "intervals" in law.predict(compute=1e22)


# Porian et al.'s published optima for rw/tuned/short/const/standard/val (their
# data/summary_df.pickle.xz at 0dc60d91, the row's 'data' frame: n_stars' median, n_star_std)
# and its exponents (fit_results['bs_median_weighted'], CI from 'bootstrap_weighted').
PUBLISHED_OPTIMA = [  # (budget, N*, spread of ln N*); N* is also their noise-free grid argmin
    (1.25e16, 12535565, 0.114091),
    (2.5e16, 16148597, 0.115941),
    (5e16, 26050613, 0.112071),
    (1e17, 31264444, 0.113204),
    (2e17, 43659153, 0.115116),
    (4e17, 66621093, 0.111946),
    (8e17, 92528428, 0.111145),
    (1.6e18, 1.2802301e08, 0.117554),
    (3.2e18, 1.7127811e08, 0.114195),
    (6.4e18, 2.9194821e08, 0.112094),
    (1.28e19, 3.7354288e08, 0.117267),
    (2.56e19, 5.347036e08, 0.119762),
]
PUBLISHED = {"a": 0.496895, "b": 0.503105, "a_interval": (0.490682, 0.504524)}


def test_porians_published_points_give_their_optima_and_exponent():
    table = pd.read_csv(DATA / "porian_rw_tuned_short_const_val.csv", comment="#")
    points = pd.DataFrame(
        {
            "params": table["n"],
            "tokens": table["flops"] / (6 * table["n"]),
            "flops": table["flops"],
            "budget": table["flops"],
            "loss": table["loss"],
        }
    )
    law = fit_isoflop(points, budget_optimum="akima")  # the default noise is their RefinedWeb σ
    rows = pd.DataFrame(law.details_["budgets"]).set_index("budget")
    assert rows["used"].all() and len(rows) == len(PUBLISHED_OPTIMA)
    for budget, n_star, spread in PUBLISHED_OPTIMA:
        row = rows.loc[budget]
        assert row["grid_params"] == pytest.approx(n_star, rel=1e-7)  # their printed digits
        assert row["params"] == pytest.approx(n_star, rel=0.01)
        assert row["log_spread"] == pytest.approx(spread, rel=0.01)
    assert law.params_["a"] == pytest.approx(PUBLISHED["a"], abs=1e-3)
    assert law.params_["b"] == pytest.approx(PUBLISHED["b"], abs=1e-3)
    low, high = law.details_["seed_noise_intervals"]["a"]
    assert low == pytest.approx(PUBLISHED["a_interval"][0], abs=2e-3)
    assert high == pytest.approx(PUBLISHED["a_interval"][1], abs=2e-3)


def scaling(*args):
    return subprocess.run(
        [sys.executable, "-m", "scaling", *map(str, args)], capture_output=True, text=True
    )


def assert_one_line(done, message):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_fits_akima_and_predict_reads_the_file_in_a_fresh_process(tmp_path):
    csv = tmp_path / "points.csv"
    ladder(noise=0.0005).drop(columns="budget").to_csv(csv, index=False)
    out = tmp_path / "isoflop.json"
    done = scaling(
        "fit", csv, "--law", "isoflop", "--optimum", "akima", "--seed-noise", "0.001",
        "--out", out, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["options"]["budget_optimum"] == "akima"  # --optimum: its parameter renamed
    assert report["options"]["seed_noise"] == 0.001
    assert report["a"] == pytest.approx(TRUE_A, abs=0.01)
    assert "seed_noise_intervals" in report["details"]
    done = scaling("predict", "--fit", out, "--compute", "1e22", "--json")
    assert done.returncode == 0, done.stderr
    expected = Law.from_json(out).predict(compute=1e22)
    assert json.loads(done.stdout)["params"] == pytest.approx(expected["params"], rel=1e-12)


@pytest.mark.slow
def test_cli_bad_akima_values_are_one_line(tmp_path):
    csv = tmp_path / "points.csv"
    isoflop_points(per_budget=7).to_csv(csv, index=False)
    akima = ("--law", "isoflop", "--optimum", "akima")
    assert_one_line(
        scaling("fit", csv, *akima, "--seed-noise", "-1"),
        "--seed-noise -1.0: must be 0 or a positive finite number",
    )
    assert_one_line(
        scaling("fit", csv, "--law", "isoflop", "--seed-noise", "0.01"),
        "--seed-noise 0.01: only the akima optimum adds seed noise",
    )
    two_sizes = tmp_path / "two.csv"
    points = isoflop_points(per_budget=7)
    points[points.index % 7 < 2].to_csv(two_sizes, index=False)
    assert_one_line(
        scaling("fit", two_sizes, *akima),
        "2 distinct sizes (the Akima interpolation needs 3)",
    )
