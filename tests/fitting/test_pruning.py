"""The pruner's forecasts (``scaling.fitting.pruning``): a run's final loss from the first part
of its curve, on curves drawn from a known lr-annealing law, and the rule that prunes."""

import numpy as np
import pytest

from scaling.fitting.curvelaws import s1_at
from scaling.fitting.curves import Curve, LrCurves
from scaling.fitting.errors import FitError
from scaling.fitting.lr_annealing import s2_at
from scaling.fitting.pruning import Forecast, forecast_final_loss, runs_to_prune

STEPS, WARMUP = 1200, 60


def cosine(peak: float) -> np.ndarray:
    step = np.arange(STEPS)
    decay = 0.5 * (1 + np.cos(np.pi * (step - WARMUP) / (STEPS - WARMUP)))
    return np.where(step < WARMUP, peak * (step + 1) / WARMUP, peak * decay)


def true_loss(lr: np.ndarray, steps: np.ndarray) -> np.ndarray:
    # an annealing term worth 0.3 of loss at the end of the lr = 0.01 cosine
    c = 0.3 / s2_at(cosine(0.01), np.array([STEPS - 1]), 0.999)[0]
    return 2.0 + 3.0 * s1_at(lr, steps) ** -0.5 - c * s2_at(lr, steps, 0.999)


def observed(peak: float, until: float, noise: float, seed: int) -> tuple[Curve, float]:
    lr = cosine(peak)
    steps = np.arange(9, STEPS, 10)
    loss = true_loss(lr, steps) * np.exp(np.random.default_rng(seed).normal(0, noise, len(steps)))
    seen = steps < until * STEPS
    final = float(true_loss(lr, np.array([STEPS - 1]))[0])
    return Curve(f"lr{peak:g}", lr, steps[seen], loss[seen]), final


@pytest.mark.parametrize("peak", [0.005, 0.02])
def test_half_a_curve_forecasts_its_end_within_its_interval(peak):
    curve, final = observed(peak, until=0.5, noise=0.003, seed=1)
    forecast = forecast_final_loss(curve, samples=30)
    assert forecast.step == curve.steps[-1] + 1 and forecast.steps == STEPS
    assert forecast.low <= final <= forecast.high
    assert abs(forecast.loss / final - 1) < 0.02
    # the cooldown still to come: the forecast lies well below the loss now
    assert forecast.loss < forecast.now - 0.1


def test_the_steps_bootstrap_keeps_the_schedule_and_draws_logged_points():
    curve, _ = observed(0.01, until=1.0, noise=0.003, seed=0)
    drawn = LrCurves([curve]).resample("steps", np.random.default_rng(0)).curves[0]
    assert drawn.lr is curve.lr and len(drawn.steps) == len(curve.steps)
    assert (np.diff(drawn.steps) >= 0).all() and set(drawn.steps) < set(curve.steps)
    at = {int(s): float(v) for s, v in zip(curve.steps, curve.loss, strict=True)}
    assert all(at[int(s)] == v for s, v in zip(drawn.steps, drawn.loss, strict=True))


def test_too_few_logged_steps_is_one_clear_error():
    curve, _ = observed(0.01, until=0.05, noise=0.003, seed=0)
    with pytest.raises(FitError, match="a forecast needs 8"):
        forecast_final_loss(Curve(curve.name, curve.lr, curve.steps[:5], curve.loss[:5]))


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


@pytest.mark.slow  # four forecasts: about 15 s
def test_a_hopeless_learning_rate_is_pruned_at_half_and_the_best_kept():
    forecasts = []
    for seed, peak in enumerate((0.0005, 0.005, 0.01, 0.02)):
        curve, _ = observed(peak, until=0.5, noise=0.003, seed=seed)
        forecasts.append(forecast_final_loss(curve, samples=30))
    pruned = runs_to_prune(forecasts)
    assert "lr0.0005" in pruned and "lr0.02" not in pruned
