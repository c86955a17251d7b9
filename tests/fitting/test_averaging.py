import numpy as np
import pytest

from scaling.fitting import FitError
from scaling.fitting.averaging import (
    averaged_loss,
    backtest_weights,
    bootstrap_paired,
    paired_intervals,
    shared_resamples,
)
from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.compute import Compute
from scaling.fitting.kaplan import KaplanLaw
from scaling.fitting.parametric import ParametricLaw

from .conftest import CHINCHILLA, isoflop_points


def test_weights_are_inverse_backtest_errors():
    assert backtest_weights({"a": 0.01, "b": 0.03}) == pytest.approx({"a": 0.75, "b": 0.25})
    assert backtest_weights({"a": 0.02}) == {"a": 1.0}
    with pytest.raises(FitError, match="finite and non-negative"):
        backtest_weights({"a": float("nan")})
    with pytest.raises(FitError):
        backtest_weights({})


def _law_with_samples(shift: float, n: int = 400, seed: int = 0) -> ParametricLaw:
    rng = np.random.default_rng(seed)
    samples = [{**CHINCHILLA, "E": CHINCHILLA["E"] + shift + e} for e in rng.normal(0, 0.02, n)]
    return ParametricLaw.from_params({**CHINCHILLA, "E": CHINCHILLA["E"] + shift}, samples)


def test_one_law_alone_gives_its_own_prediction_and_interval():
    law = _law_with_samples(0.0)
    sizes = {"params": 1e9, "params_nonembedding": 9e8}
    got = averaged_loss({"p": law}, {"p": 1.0}, sizes, 2e10)
    draws = np.array([float(law.loss(1e9, 2e10, sample=s)) for s in law.samples_])
    assert got["loss"] == pytest.approx(float(law.loss(1e9, 2e10)))
    for level in (0.8, 0.95):
        assert got["intervals"][level] == pytest.approx(percentile_interval(draws, level), abs=2e-3)


def test_two_laws_that_disagree_widen_the_interval_to_cover_both():
    low, high = _law_with_samples(-0.1, seed=1), _law_with_samples(+0.1, seed=2)
    sizes = {"params": 1e9}
    got = averaged_loss({"low": low, "high": high}, {"low": 0.5, "high": 0.5}, sizes, 2e10)
    centre = float(ParametricLaw.from_params(CHINCHILLA).loss(1e9, 2e10))
    assert got["loss"] == pytest.approx(centre, abs=1e-9)
    lo95, hi95 = got["intervals"][0.95]
    assert lo95 < got["by_law"]["low"] and hi95 > got["by_law"]["high"]
    # the weights move the mean towards the better law
    tilted = averaged_loss({"low": low, "high": high}, {"low": 0.9, "high": 0.1}, sizes, 2e10)
    assert tilted["loss"] == pytest.approx(centre - 0.08, abs=1e-9)


def test_each_law_takes_the_size_it_counts():
    kaplan = KaplanLaw.from_params(
        {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095},
        compute=Compute(size="non_embedding"),  # as a fit on points that carry that count
    )
    got = averaged_loss(
        {"k": kaplan}, {"k": 1.0}, {"params": 1e9, "params_nonembedding": 5e8}, 1e10
    )
    assert got["loss"] == pytest.approx(float(kaplan.loss(5e8, 1e10)))


def _fitted(name: str, frame, **settings):
    from scaling.fitting.api import law_class

    return law_class(name)(**{"bootstrap_samples": 40, "seed": 0, **settings}).fit(frame)


def test_paired_intervals_are_the_weighted_mean_on_each_shared_resample():
    frame = isoflop_points(budgets=np.logspace(18, 20, 3), per_budget=5, noise=0.01, seed=3)
    laws = {"parametric": _fitted("parametric", frame), "kaplan": _fitted("kaplan", frame)}
    weights = {"parametric": 0.3, "kaplan": 0.7}
    sizes, tokens = {"params": 3e9}, 6e10
    got = paired_intervals(laws, weights, sizes, tokens, levels=(0.8,))
    by_draw = sum(
        w * np.array([float(laws[n].loss(3e9, tokens, sample=s)) for s in laws[n].samples_])
        for n, w in weights.items()
    )
    assert got == {0.8: pytest.approx(percentile_interval(by_draw, 0.8))}
    # the forms disagree out there: the mixture spans both, the paired interval only the
    # averaged prediction's own noise
    mixture = averaged_loss(laws, weights, sizes, tokens, levels=(0.8,))["intervals"][0.8]
    assert got[0.8][1] - got[0.8][0] < mixture[1] - mixture[0]


def test_samples_that_do_not_share_their_resamples_are_not_paired():
    frame = isoflop_points(budgets=np.logspace(18, 20, 3), per_budget=5, noise=0.01, seed=3)
    one = _fitted("parametric", frame)
    weights, sizes = {"a": 0.5, "b": 0.5}, {"params": 3e9}
    other_seed = _fitted("kaplan", frame, seed=1)
    other_points = _fitted("kaplan", frame.iloc[1:])
    unsampled = _fitted("kaplan", frame, bootstrap_samples=0)
    for other in (other_seed, other_points, unsampled):
        assert paired_intervals({"a": one, "b": other}, weights, sizes, 6e10) is None
    assert bootstrap_paired([one, _fitted("kaplan", frame)])
    one.samples_ = one.samples_[:-1]  # a resample it could not fit, and no record of which
    one.resamples_ = None  # (as a fit file of format 2 may say)
    assert not bootstrap_paired([one, _fitted("kaplan", frame)])
    # ... unless the fit recorded which resamples its samples are: then the shared ones pair
    kaplan, one = _fitted("kaplan", frame), _fitted("parametric", frame)
    one.samples_ = one.samples_[:3] + one.samples_[4:]  # resample 3 could not be fitted
    one.resamples_ = [i for i in range(len(kaplan.samples_)) if i != 3]
    shared = shared_resamples([one, kaplan])
    assert shared == one.resamples_
    got = paired_intervals({"a": one, "b": kaplan}, weights, sizes, 6e10)
    pairs = [
        0.5 * one.loss(3e9, 6e10, sample=s)
        + 0.5 * kaplan.loss(3e9, 6e10, sample=kaplan.samples_[i])
        for s, i in zip(one.samples_, shared, strict=True)
    ]
    assert got[0.95] == pytest.approx(percentile_interval(np.array(pairs), 0.95))


def test_a_fit_records_the_resamples_it_could_not_fit():
    """A parametric fit skips resamples that cannot identify it; the record of the rest keeps
    its samples paired with another law's (the demo's averaged interval needs it)."""
    frame = isoflop_points(budgets=np.logspace(18, 20, 3), per_budget=3, noise=0.01, seed=5)
    law = _fitted("parametric", frame, bootstrap_samples=40, bootstrap_unit="budgets")
    indices = law.resamples_
    assert len(indices) == len(law.samples_) and indices == sorted(indices)
    loaded = type(law).from_json(law.to_json())
    assert loaded.resamples_ == law.resamples_
