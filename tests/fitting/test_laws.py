import json

import numpy as np
import pandas as pd
import pytest

from scaling.fitting import FitError, Law, chinchilla
from scaling.fitting.backtest import backtest
from scaling.fitting.data_constrained import DataConstrainedLaw, fit_data_constrained
from scaling.fitting.downstream import fit_downstream, sigmoid
from scaling.fitting.hparams import fit_hparams
from scaling.fitting.kaplan import fit_kaplan
from scaling.fitting.moe import fit_moe
from scaling.fitting.parametric import ParametricLaw, fit_parametric
from scaling.fitting.points import prepare_points

from .conftest import CHINCHILLA, chinchilla_loss, isoflop_points


def test_kaplan_forms_are_recovered():
    truth = {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095}
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(1e6), np.log(1e9), 60))
    D = np.exp(rng.uniform(np.log(1e8), np.log(1e11), 60))
    loss = ((truth["N_c"] / N) ** (0.076 / 0.095) + truth["D_c"] / D) ** 0.095
    law = fit_kaplan(pd.DataFrame({"params": N, "tokens": D, "loss": loss}))
    for key, value in truth.items():
        assert law.params_[key] == pytest.approx(value, rel=1e-4)
    # the one-variable law alone: L(N) = (N_c/N)^alpha_N on loss-vs-N data
    pure = pd.DataFrame({"params": N, "tokens": D, "loss": (1.3e13 / N) ** 0.07})
    one = fit_kaplan(pure).details_["one_variable"]["L(N)"]
    assert one["alpha_N"] == pytest.approx(0.07) and one["N_c"] == pytest.approx(1.3e13, rel=1e-6)
    assert law.predict(params=1e9, tokens=1e10)["loss"] == pytest.approx(float(law.loss(1e9, 1e10)))


def _repeated_points(truth, sizes=(-1.5, 1.5)):
    """Points drawn from the data-constrained law itself: at each budget, 7 sizes, each trained
    on its tokens seen once and repeated 2 to 40 times."""
    law = DataConstrainedLaw.from_params(truth)
    rows = []
    for C in np.logspace(18, 21, 6):
        for f in np.exp(np.linspace(*sizes, 7)):
            N = np.sqrt(C / 6 / 20) * f
            D = C / (6 * N)
            for repeats in (1, 2, 4, 8, 16, 40):
                U = D / repeats
                rows.append(
                    {
                        "params": N,
                        "tokens": D,
                        "unique_tokens": U,
                        "loss": float(law.loss(N, D, unique_tokens=U)),
                    }
                )
    return pd.DataFrame(rows)


TRUTH_DC = {**CHINCHILLA, "R_D_star": 15.4, "R_N_star": 5.3}


def test_data_constrained_recovers_the_decay_constants(tmp_path):
    law = fit_data_constrained(_repeated_points(TRUTH_DC), base=CHINCHILLA)
    for key, value in TRUTH_DC.items():
        assert law.params_[key] == pytest.approx(value, rel=1e-4), key
    assert "warnings" not in law.details_ and law.details_["base"] == "given"
    # repeating data is worth less than fresh data, more than nothing
    fresh = float(law.loss(1e9, 4e10, unique_tokens=4e10))
    repeated = float(law.loss(1e9, 4e10, unique_tokens=1e10))
    assert fresh < repeated < float(law.loss(1e9, 1e10, unique_tokens=1e10))
    path = tmp_path / "dc.json"
    law.to_json(path)
    assert Law.from_json(path).predict(params=1e9, tokens=4e10, unique_tokens=1e10) == law.predict(
        params=1e9, tokens=4e10, unique_tokens=1e10
    )
    with pytest.raises(FitError, match="unique_tokens"):
        fit_data_constrained(isoflop_points())


def test_data_constrained_bootstrap_refits_the_base_it_fitted():
    law = fit_data_constrained(_repeated_points(TRUTH_DC), bootstrap_samples=8, seed=1)
    assert law.details_["base"] == "fitted on the single-epoch points"
    for name in ("E", "alpha", "beta", "R_D_star", "R_N_star"):
        low, high = law.intervals_[name]
        assert high > low, name  # not held fixed
    given = fit_data_constrained(_repeated_points(TRUTH_DC), base=CHINCHILLA, bootstrap_samples=8)
    assert given.intervals_["E"][0] == given.intervals_["E"][1] == CHINCHILLA["E"]


def test_data_constrained_ties_exponents_and_warns_when_r_n_is_unidentified():
    tied = {**TRUTH_DC, "alpha": 0.3, "beta": 0.3}
    law = fit_data_constrained(_repeated_points(tied), tie_exponents=True)
    assert law.params_["alpha"] == law.params_["beta"]
    # models no larger than the optimum for their unique tokens: R_N* changes nothing
    points = _repeated_points(TRUTH_DC)
    d = chinchilla.allocation(CHINCHILLA)
    n_opt_u = d["G"] * (points["unique_tokens"] * d["G"]) ** (d["a"] / d["b"])
    small = points[points["params"] <= n_opt_u]  # U_N = N: no parameter is "repeated"
    assert (small["tokens"] > small["unique_tokens"]).sum() > 20
    weak = fit_data_constrained(small, base=CHINCHILLA)
    assert any("R_N_star is barely identified" in w for w in weak.details_["warnings"])
    assert max(weak.details_["profile"]["R_N_star"].values()) < 1e-4
    assert "R_D_star is" not in " ".join(weak.details_["warnings"])


def _moe_points():
    multipliers = {8: 2.5, 32: 4.0}
    granularity = {0: 1, 8: 2, 32: 8}
    rows = []
    for C in np.logspace(18, 21, 5):
        for f in np.exp(np.linspace(-1.5, 1.5, 6)):
            N = np.sqrt(C / 6 / 20) * f
            D = C / (6 * N)
            for experts in (0, 8, 32):
                m = multipliers.get(experts, 1.0)
                rows.append(
                    {
                        "params": N,
                        "tokens": D,
                        "n_experts": experts,
                        "granularity": granularity[experts],
                        "loss": chinchilla_loss(CHINCHILLA, m * N, D),
                    }
                )
    return pd.DataFrame(rows)


def test_moe_multipliers_and_granular_form():
    law = fit_moe(_moe_points(), bootstrap_samples=5)
    assert law.params_["multiplier_8"] == pytest.approx(2.5, rel=1e-5)
    assert law.params_["multiplier_32"] == pytest.approx(4.0, rel=1e-5)
    assert law.details_["per_expert"]["8"]["alpha"] == pytest.approx(0.34, rel=1e-3)
    assert law.details_["granular"]["objective"] < 1e-12
    assert law.predict(params=1e8, tokens=1e10, n_experts=8)["loss"] == pytest.approx(
        chinchilla_loss(CHINCHILLA, 2.5e8, 1e10), rel=1e-5
    )
    with pytest.raises(FitError, match="no multiplier fitted for 16"):
        law.multiplier(16)
    with pytest.raises(FitError, match="n_experts"):
        fit_moe(isoflop_points())


def _hparam_points():
    rows = []
    for C in np.logspace(18, 21, 5):
        lr_opt, batch_opt = 0.3 * C**-0.1, 1e-3 * C**0.3
        for lr in lr_opt * np.exp(np.linspace(-1, 1, 5)):
            for batch in batch_opt * np.exp(np.linspace(-1, 1, 5)):
                loss = 3 + 0.05 * np.log(lr / lr_opt) ** 2 + 0.03 * np.log(batch / batch_opt) ** 2
                rows.append(
                    {
                        "params": 1e8,
                        "tokens": C / 6e8,
                        "budget": C,
                        "lr": lr,
                        "batch_tokens": batch,
                        "loss": loss,
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", ["near-optimal", "parabola"])
def test_hparam_laws(method, tmp_path):
    law = fit_hparams(_hparam_points(), method=method, bootstrap_samples=10)
    assert law.params_["e_lr"] == pytest.approx(-0.1, abs=1e-6)
    assert law.params_["k_lr"] == pytest.approx(0.3, rel=1e-5)
    assert law.params_["e_batch"] == pytest.approx(0.3, abs=1e-6)
    prediction = law.predict(compute=1e22)
    assert prediction["lr"] == pytest.approx(0.3 * 1e22**-0.1, rel=1e-5)
    path = tmp_path / "hparams.json"
    law.to_json(path)
    assert Law.from_json(path).predict(compute=1e22)["batch_tokens"] == prediction["batch_tokens"]
    with pytest.raises(FitError, match="vary 'lr'"):
        fit_hparams(isoflop_points())


def test_downstream_two_step():
    df = isoflop_points(noise=0.0)
    df["accuracy"] = sigmoid(df["loss"], 0.25, 0.8, 6.0, 2.4)
    law = fit_downstream(df, bootstrap_samples=5)
    for key, value in {"low": 0.25, "high": 0.8, "k": 6.0, "L0": 2.4}.items():
        assert law.params_[key] == pytest.approx(value, rel=1e-4)
    prediction = law.predict(compute=1e23)
    assert prediction["metric"] == pytest.approx(sigmoid(prediction["loss"], 0.25, 0.8, 6.0, 2.4))
    with pytest.raises(FitError, match="task-metric column 'mmlu'"):
        fit_downstream(df, metric="mmlu")


def test_backtest_reports_held_out_errors():
    points = prepare_points(isoflop_points(noise=0.005))
    report = backtest(points, lambda p: fit_parametric(p, keep=16), "largest")
    assert report["n_held_out"] == 9 and report["n_fit"] == 54
    assert report["loss_mean_abs_rel_error"] < 0.01
    assert abs(report["params_opt_rel_error"]) < 0.2
    by_size = backtest(points, lambda p: fit_parametric(p, keep=16), "largest-params")
    assert by_size["n_held_out"] == 1
    with pytest.raises(FitError, match="holdout=.smallest.: must be one of"):
        backtest(points, fit_parametric, "smallest")


def test_hparam_joint_law_in_n_and_d():
    rows = []
    for i, C in enumerate(np.logspace(18, 21, 5)):
        N = 1e7 * 3**i * (1.5 if i % 2 else 1.0)  # N and D not tied to C alone
        D = C / (6 * N)
        lr_opt = 2.0 * N**-0.3 * D**0.05
        for lr in lr_opt * np.exp(np.linspace(-1, 1, 5)):
            rows.append(
                {
                    "params": N,
                    "tokens": D,
                    "budget": C,
                    "lr": lr,
                    "loss": 3 + 0.05 * np.log(lr / lr_opt) ** 2,
                }
            )
    joint = fit_hparams(pd.DataFrame(rows)).details_["joint"]["lr"]
    assert joint["p_N"] == pytest.approx(-0.3, abs=1e-6)
    assert joint["q_D"] == pytest.approx(0.05, abs=1e-6)
    assert joint["k"] == pytest.approx(2.0, rel=1e-5)


def test_parquet_points(tmp_path):
    from typer.testing import CliRunner

    from scaling.cli import app

    path = tmp_path / "points.parquet"
    isoflop_points(noise=0.005).to_parquet(path)
    result = CliRunner().invoke(app, ["fit", str(path), "--law", "isoflop", "--json"])
    assert result.exit_code == 0, result.output
    assert abs(json.loads(result.output)["a"] - 0.28 / 0.62) < 0.02


def test_the_largest_budget_backtest_holds_out_branch_points_beyond_the_budget_below():
    """WSD branch points of the largest budget's runs that spent more than the second-largest
    budget are held out too (nothing fitted reaches the compute asked about); those below it
    are fitted."""
    frame = isoflop_points(budgets=[1e19, 3e19, 1e20], per_budget=7)
    finals = frame[frame["budget"] == 1e20]
    branches = []
    for fraction in (0.25, 0.5):  # 2.5e19 (below 3e19) and 5e19 (beyond it)
        part = finals.assign(
            tokens=finals["tokens"] * fraction, flops=finals["flops"] * fraction, budget=np.nan
        )
        part["loss"] = chinchilla_loss(CHINCHILLA, part["params"], part["tokens"])
        branches.append(part)
    points = prepare_points(pd.concat([frame, *branches], ignore_index=True))
    report = backtest(points, lambda p: fit_parametric(p, keep=16), "largest")
    assert report["n_held_out"] == 14 and report["n_fit"] == 21
    assert report["loss_max_abs_rel_error"] < 1e-3
    assert abs(report["params_opt_rel_error"]) < 0.05  # the optimum of the final runs only


def test_kaplan_backtests_and_predicts_with_non_embedding_sizes():
    truth = {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095}
    frame = isoflop_points(per_budget=7)
    frame["params_nonembedding"] = frame["params"] * 0.7  # the law's N
    N, D = frame["params_nonembedding"], frame["tokens"]
    frame["loss"] = ((truth["N_c"] / N) ** (0.076 / 0.095) + truth["D_c"] / D) ** 0.095
    points = prepare_points(frame)
    law = fit_kaplan(points.frame)
    assert law.sizes(frame).equals(frame["params_nonembedding"])
    assert law.sizes({"params": 10.0, "params_nonembedding": 7.0}) == 7.0
    report = backtest(points, fit_kaplan, "largest")
    assert report["loss_max_abs_rel_error"] < 1e-4  # with total N it would miss
    assert ParametricLaw.from_params(CHINCHILLA).sizes(frame).equals(frame["params"])
