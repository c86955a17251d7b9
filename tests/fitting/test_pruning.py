"""The pruner's forecasts (``scaling.fitting.pruning``): a run's final loss from the first part
of its curve, on curves drawn from a known lr-annealing law, and the rule that prunes."""

import numpy as np
import pytest

from scaling.fitting.curvelaws import s1_at
from scaling.fitting.curves import Curve, LrCurves
from scaling.fitting.errors import FitError
from scaling.fitting.lr_annealing import s2_at
from scaling.fitting.pruning import (
    Forecast,
    forecast_final_losses,
    forecast_group,
    runs_to_prune,
)

STEPS, WARMUP = 1200, 60


def cosine(peak: float) -> np.ndarray:
    step = np.arange(STEPS)
    decay = 0.5 * (1 + np.cos(np.pi * (step - WARMUP) / (STEPS - WARMUP)))
    return np.where(step < WARMUP, peak * (step + 1) / WARMUP, peak * decay)


A, ALPHA = 1.0, 0.2  # about the shape of the benchmark's tiny models (alpha 0.16-0.2)
C = 0.3 / s2_at(cosine(0.01), np.array([STEPS - 1]), 0.999)[0]  # 0.3 of loss at lr 1e-2's end


def true_loss(lr: np.ndarray, steps: np.ndarray, floor: float) -> np.ndarray:
    """The pruner's model: a floor of the run's own, the shape shared."""
    return floor + A * s1_at(lr, steps) ** -ALPHA - C * s2_at(lr, steps, 0.999)


def observed(peak, until, noise, seed, floor=2.0, name=None) -> tuple[Curve, float]:
    lr = cosine(peak)
    steps = np.arange(STEPS)
    loss = true_loss(lr, steps, floor)
    loss = loss * np.exp(np.random.default_rng(seed).normal(0, noise, len(steps)))
    seen = steps < until * STEPS
    final = float(true_loss(lr, np.array([STEPS - 1]), floor)[0])
    return Curve(name or f"lr{peak:g}", lr, steps[seen], loss[seen]), final


# an lr sweep: too high an lr costs a higher floor
SWEEP = {0.0025: 2.0, 0.005: 2.0, 0.01: 2.02, 0.02: 2.1}


def test_half_of_each_curve_forecasts_the_ends_within_their_intervals():
    seen = [
        observed(peak, 0.5, 0.03, seed, floor) for seed, (peak, floor) in enumerate(SWEEP.items())
    ]
    forecasts = forecast_final_losses([curve for curve, _ in seen], samples=30)
    for forecast, (curve, final) in zip(forecasts, seen, strict=True):
        assert forecast.run == curve.name and forecast.steps == STEPS
        assert forecast.step == curve.steps[-1] + 1 == STEPS // 2
        assert forecast.annealing_fitted  # a cosine's second quarter: a fifth of its annealing
        assert forecast.low <= final <= forecast.high, (forecast, final)
        assert abs(forecast.loss / final - 1) < 0.025
        assert forecast.loss < forecast.now  # the cooldown still to come lowers it


def test_before_any_annealing_c_is_held_at_zero_and_a_higher_lr_is_not_pruned_by_a_lower():
    seen = [
        observed(peak, 0.25, 0.03, seed, floor) for seed, (peak, floor) in enumerate(SWEEP.items())
    ]
    forecasts = forecast_final_losses([curve for curve, _ in seen], samples=10)
    assert not any(f.annealing_fitted for f in forecasts)
    by_lr = sorted(forecasts, key=lambda f: f.annealing)
    assert [f.run for f in by_lr] == [f"lr{p:g}" for p in sorted(SWEEP)]  # area grows with lr
    # without C, the annealing still to come is left out: the forecasts lie above the ends
    assert all(f.loss > final for f, (_, final) in zip(forecasts, seen, strict=True))
    low_lr = Forecast("low lr", 100, 400, 3.0, 3.0, 2.9, 3.1, annealing=1.0, annealing_fitted=False)
    high_lr = Forecast(
        "high lr", 100, 400, 3.4, 3.4, 3.2, 3.6, annealing=4.0, annealing_fitted=False
    )
    lower = Forecast(
        "lower lr", 100, 400, 3.4, 3.4, 3.2, 3.6, annealing=0.5, annealing_fitted=False
    )
    # the higher lr may yet gain more from its cooldown than the best: it waits; the lower goes
    assert set(runs_to_prune([low_lr, high_lr, lower])) == {"lower lr"}


def test_the_steps_bootstrap_keeps_the_schedule_and_draws_logged_points():
    curve, _ = observed(0.01, until=1.0, noise=0.003, seed=0)
    drawn = LrCurves([curve]).resample("steps", np.random.default_rng(0)).curves[0]
    assert drawn.lr is curve.lr and len(drawn.steps) == len(curve.steps)
    assert (np.diff(drawn.steps) >= 0).all() and set(drawn.steps) < set(curve.steps)
    at = {int(s): float(v) for s, v in zip(curve.steps, curve.loss, strict=True)}
    assert all(at[int(s)] == v for s, v in zip(drawn.steps, drawn.loss, strict=True))


def test_too_few_logged_steps_is_one_clear_error():
    curve, _ = observed(0.01, until=0.005, noise=0.003, seed=0)
    with pytest.raises(FitError, match="fewer than 8 logged losses; log every step"):
        forecast_final_losses([curve])


def forecast(run, loss, low, high):
    return Forecast(run=run, step=100, steps=400, now=loss + 0.2, loss=loss, low=low, high=high)


def test_only_runs_wholly_above_the_best_interval_are_pruned():
    pruned = runs_to_prune(
        [
            forecast("best", 3.0, 2.9, 3.1),
            forecast("overlaps", 3.2, 3.05, 3.4),
            forecast("above", 3.5, 3.3, 3.7),
            forecast("touching", 3.3, 3.1, 3.5),
        ]
    )
    assert set(pruned) == {"above"}
    assert "3.5000 [3.3000, 3.7000]" in pruned["above"] and "run best" in pruned["above"]
    assert runs_to_prune([forecast("alone", 9.0, 8.0, 10.0)]) == {}


def test_the_best_is_the_run_surest_to_be_low_not_a_wild_point_forecast():
    wild = forecast("wild", -5.0, -9.0, 3.4)  # seen too briefly: anything is possible
    pruned = runs_to_prune([wild, forecast("sure", 3.0, 2.9, 3.1), forecast("bad", 3.5, 3.2, 3.8)])
    assert set(pruned) == {"bad"} and "run sure's" in pruned["bad"]
    # an interval reaching 0 says nothing: never the best, never pruned by another's
    nothing = forecast("nothing", -1.0, -4.0, 1.0)
    assert runs_to_prune([nothing, forecast("bad", 3.5, 3.2, 3.8)]) == {}


def test_a_hopeless_learning_rate_is_pruned_across_batch_sizes_and_the_best_kept():
    """Two families (two batch sizes: other step counts), each fitted on its own; the rule
    runs across both."""
    small = [observed(p, 0.25, 0.03, i, f) for i, (p, f) in enumerate(SWEEP.items())]
    hopeless, _ = observed(0.0002, 0.25, 0.03, 9, 2.0, name="other batch lr0.0002")
    good, _ = observed(0.01, 0.25, 0.03, 10, 2.02, name="other batch lr0.01")
    forecasts, pruned, failed = forecast_group(
        [[c for c, _ in small], [hopeless, good]], samples=30
    )
    assert len(forecasts) == 6 and not failed
    assert "other batch lr0.0002" in pruned
    best = min(small, key=lambda pair: pair[1])[0].name
    assert best not in pruned and "other batch lr0.01" not in pruned


def test_a_run_pruned_before_teaches_the_shape_but_is_neither_forecast_nor_pruned_again():
    family = [observed(p, 0.25, 0.03, i, f)[0] for i, (p, f) in enumerate(SWEEP.items())]
    cut = family[0]
    family[0] = Curve(cut.name, cut.lr, cut.steps[:100], cut.loss[:100])  # pruned at step 100
    competing = {c.name for c in family[1:]}
    forecasts, pruned, failed = forecast_group([family], competing, samples=10)
    assert {f.run for f in forecasts} == competing and not set(pruned) - competing
