"""Porian et al. (2024)'s per-budget IsoFLOP optimum, computed the way their code computes it
(``IsoFLOPLaw(budget_optimum="akima")``, ``scaling fit --law isoflop --optimum akima``).

Source: github.com/formll/resolving-scaling-law-discrepancies at commit
0dc60d91b8a525858a3067fc9e4a46ff5374cc6f, ``analysis.py`` (unchanged since 859f146, the commit
that wrote their published summaries): ``interp_flop`` (lines 187-284), ``interpolation``
(170-184), ``vectorized_interp_with_seed_noise`` (134-167), ``get_noise_for_loss`` (117-131),
``power_law_fit`` (61-84), ``fit_compute_optimal_power_laws`` (87-114); the noise levels in
``configs.py`` (121-128). This is a reimplementation from a reading of that code, not a copy.

Per budget:

1. Several points of one size: the lowest loss is kept (their ``groupby_action='min'``). Fewer
   than 3 sizes: the budget is left out.
2. An Akima spline (``scipy.interpolate.Akima1DInterpolator``, plain "akima", not "makima")
   of ln loss against ln N through the k sizes, evaluated on ``25·(k-1)`` log-spaced sizes from
   the smallest to the largest (``interp_num_multiplier``). Its argmin on that grid (the first
   of equal values) is the noise-free optimum; at either end of the grid, the budget is left
   out (their line 236: a minimum at the edge is dropped, not clamped; their reported fit
   draws its budgets from the replicates' table instead, which would keep such a budget where
   step 3 succeeds: no published budget is in that case).
3. 1000 replicates (``bootstrap_iters``): each adds N(0, σ²) to every loss (the loss itself,
   not its log) and takes the argmin of the same interpolation on the same grid. A replicate
   whose argmin is at an end of the grid is discarded; when fewer than 500 remain the spread
   cannot be estimated and the budget is left out.
4. The optimum is the median of the kept replicates (``bs_median_as_obs``); its spread is
   ``max(std ln N*, 0.33·25 grid steps) · 1000 / kept`` (``min_std_factor`` times the
   multiplier, as their call on line 179 passes it): about a third of the mean log-spacing of
   the sizes, a floor that decided every spread in their published results.
5. The same for the profile in ln D, with a draw of its own (so D* is not exactly C/(k·N*)).

Then N* = k_N·C^a and D* = k_D·C^b by least squares in ln-ln, each point weighted by
1/spread² (``power_law_fit(weighted=True)`` on the medians, their ``bs_median_weighted``: the
exponent their paper reports). Their interval of a: the weighted fit through the i-th kept
replicate of every budget, for i up to the fewest kept, and its percentiles
(``fit_compute_optimal_power_laws``, ``paper_tables.extract_CI``).

σ: their code adds a constant per dataset. ``get_noise_for_loss`` was meant to ramp the noise
with the loss, but it compares ln L with thresholds written as losses (3 and 7), so for every
loss below e³ ≈ 20 it adds ``noise_low``: 0.002 for RefinedWeb, 0.01 for OpenWebText2
(``RW_SEED_CONFIG``, ``OWT2_SEED_CONFIG``). ``SEED_NOISE`` is the RefinedWeb value, their main
dataset's. Where this module differs from their code, on purpose: the loss at the optimum is
the median of the N profile's replicates (theirs takes the D profile's), the random numbers are
numpy's ``default_rng`` seeded per budget (theirs, one legacy global stream seeded 42, so the
draws differ and a median can land a grid step away), and a replicate whose noisy loss is not
positive is discarded (it has no logarithm; at their noise levels it never happens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.errors import FitError, all_equal
from scaling.fitting.powerlaw import fit_power_law

if TYPE_CHECKING:
    import pandas as pd

    from scaling.fitting.compute import Compute

SEED_NOISE = 0.002  # σ of the loss noise: RefinedWeb's (configs.py), as their code applies it
REPLICATES = 1000  # bootstrap_iters
GRID_MULTIPLIER = 25  # interp_num_multiplier: grid of 25·(k-1) sizes
MIN_STD_FACTOR = 0.33  # min_std_factor; the floor is 0.33·25 grid steps (their line 179)
MIN_SIZES = 3  # fewer distinct sizes at a budget: no optimum (their lines 208-211)


def check_seed_noise(value: Any, optimum: str) -> None:
    """A FitError unless ``value`` will do as the ``seed_noise`` of a law whose
    ``budget_optimum`` is ``optimum``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        problem = "must be a number, the standard deviation of the loss noise (e.g. 0.002)"
    elif not np.isfinite(value) or value < 0:
        problem = "must be 0 or a positive finite number, the standard deviation of the noise"
    elif value != SEED_NOISE and optimum != "akima":
        problem = "only the akima optimum adds seed noise to the losses"
    else:
        return
    raise FitError(problem, param="seed_noise", value=value)


def _budget_rng(seed: int, budget: float) -> np.random.Generator:
    """The replicates' random numbers for one budget: the same whatever other budgets there
    are, and the same for a budget in every resample of ``--bootstrap``."""
    bits = int(np.float64(budget).view(np.uint64))
    return np.random.default_rng(np.random.SeedSequence([int(seed), bits]))


def _spline_values(log_x: np.ndarray, loss: np.ndarray, log_grid: np.ndarray) -> np.ndarray:
    """The Akima spline of ln loss against ``log_x`` (ascending) at ``log_grid``, as losses;
    ``loss`` is (k,) or (k, replicates), one spline per column."""
    from scipy.interpolate import Akima1DInterpolator

    spline = Akima1DInterpolator(log_x, np.log(loss), axis=0)
    return np.exp(spline(log_grid))


def profile_minimum(
    x: np.ndarray, loss: np.ndarray, sigma: float, rng: np.random.Generator
) -> dict[str, Any]:
    """The optimum of one IsoFLOP profile of loss against ``x`` (N or D, distinct, ascending):
    ``index`` and ``grid`` (the noise-free argmin and the grid), and when at least half the
    replicates have an interior minimum: ``stars`` and ``minima`` (the kept replicates'
    argmins and interpolated losses), ``spread`` and ``loss_spread`` (of ln x* and ln L*)."""
    k = len(x)
    points = GRID_MULTIPLIER * (k - 1)
    grid = np.geomspace(x[0], x[-1], points)  # ends exactly at the sampled sizes
    log_x, log_grid = np.log(x), np.log(grid)
    index = int(np.argmin(_spline_values(log_x, loss, log_grid)))
    noisy = loss[None, :] + sigma * rng.standard_normal((REPLICATES, k))
    finite = (noisy > 0).all(axis=1)  # a loss pushed to 0 or below has no logarithm
    noisy[~finite] = loss
    values = _spline_values(log_x, noisy.T, log_grid)  # (grid points, replicates)
    argmins = values.argmin(axis=0)
    kept = finite & (argmins > 0) & (argmins < points - 1)
    out: dict[str, Any] = {"index": index, "grid": grid, "kept": int(kept.sum())}
    if kept.sum() < REPLICATES // 2:
        return out
    stars = grid[argmins[kept]]
    minima = values[argmins, np.arange(REPLICATES)][kept]
    inflate = REPLICATES / len(stars)
    floor = MIN_STD_FACTOR * GRID_MULTIPLIER * np.log(grid[1] / grid[0])
    # Their floor of the loss's spread is 8.25 times the least step of ln loss in size order,
    # negative wherever a budget has an interior minimum: no floor in effect.
    return {
        **out,
        "stars": stars,
        "minima": minima,
        "spread": float(max(np.std(np.log(stars)), floor) * inflate),
        "loss_spread": float(np.std(np.log(minima)) * inflate),
    }


def budget_optimum(
    group: pd.DataFrame, budget: float, compute: Compute, sigma: float, seed: int
) -> dict[str, Any]:
    """One budget's optimum from its points (columns params, tokens, loss): ``params``,
    ``tokens``, ``loss`` (medians of the replicates), ``log_spread``, ``log_spread_tokens``,
    ``log_spread_loss``, ``grid_params`` (the noise-free argmin), ``replicates`` (kept, of
    ``REPLICATES``) and the kept replicates themselves under ``_stars``; or ``reason``."""
    best = group.sort_values(["params", "loss"]).drop_duplicates("params")  # least loss a size
    params, loss = best["params"].to_numpy(float), best["loss"].to_numpy(float)
    if len(params) < MIN_SIZES:
        return {"reason": f"{len(params)} distinct sizes (the Akima interpolation needs 3)"}
    if all_equal(loss):
        return {"reason": "its losses are all equal (no minimum to find)"}
    rng = _budget_rng(seed, budget)
    by_params = profile_minimum(params, loss, sigma, rng)
    tokens = best["tokens"].to_numpy(float)
    if len(np.unique(tokens)) < len(tokens):  # sizes sharing a token count: D from C = k(N)·N·D
        tokens = compute.tokens(budget, params)
    order = np.argsort(tokens)
    by_tokens = profile_minimum(tokens[order], loss[order], sigma, rng)
    edge = by_params["index"] in (0, len(by_params["grid"]) - 1)
    row: dict[str, Any] = {
        "grid_params": float(by_params["grid"][by_params["index"]]),
        "replicates": by_params["kept"],
    }
    if edge:
        end = "smallest" if by_params["index"] == 0 else "largest"
        return {**row, "reason": f"the interpolated minimum lies at the {end} sampled size"}
    for found, what in ((by_params, "sizes"), (by_tokens, "token counts")):
        if "stars" not in found:
            return {
                **row,
                "reason": f"only {found['kept']} of {REPLICATES} seed-noise replicates have "
                f"their minimum inside the sampled {what} (half are needed for a spread)",
            }
    return {
        **row,
        "params": float(np.median(by_params["stars"])),
        "tokens": float(np.median(by_tokens["stars"])),
        "loss": float(np.median(by_params["minima"])),
        "log_spread": by_params["spread"],
        "log_spread_tokens": by_tokens["spread"],
        "log_spread_loss": by_params["loss_spread"],
        "_stars": (by_params["stars"], by_tokens["stars"]),
    }


def replicate_intervals(used: pd.DataFrame, level: float) -> dict[str, Any]:
    """Their interval of a and b from the budgets ``used`` (rows of ``budget_optimum``): for i
    below the fewest kept replicates of any budget, the weighted fit through every budget's
    i-th kept replicate (the same spreads as weights); the percentiles of those exponents at
    ``level``."""
    budgets, stars = used["budget"].to_numpy(float), list(used["_stars"])
    count = min(min(len(n), len(d)) for n, d in stars)
    sigma_n, sigma_d = used["log_spread"], used["log_spread_tokens"]
    a = [fit_power_law(budgets, [n[i] for n, _ in stars], sigma_n)[1] for i in range(count)]
    b = [fit_power_law(budgets, [d[i] for _, d in stars], sigma_d)[1] for i in range(count)]
    return {
        "a": percentile_interval(np.array(a), level),
        "b": percentile_interval(np.array(b), level),
        "replicates": count,
        "level": level,
    }
