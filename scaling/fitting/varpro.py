"""Variable projection for the Chinchilla problem (``ParametricLaw(solver="varpro")``).

The idea is Golub & Pereyra's (1973, "The differentiation of pseudo-inverses and nonlinear
least squares problems whose variables separate"): for fixed exponents α, β the law
E + A/N^α + B/D^β is linear in E, A, B, so only the exponents need a global search. The
objective here is Huber on log loss, so the inner problem over (e, a, b) = log(E, A, B) is not
a (non-negative) least-squares problem but a smooth one of three parameters; it is solved for
a whole grid of (α, β) at once, vectorised over (grid point, data point):

1. start: non-negative least squares of E, A, B on the relative residuals L̂/L − 1 (what the
   log residuals are to first order), exact for three unknowns by trying every support;
2. Gauss-Newton steps with Huber's reweighting (each residual weighted by ρ'(r)/r, as
   iteratively reweighted least squares does), damped as Levenberg-Marquardt: a step is taken
   only where it lowers the objective, else the damping grows;
3. a finer grid around the best point of the profiled objective (the inner optimum at each
   (α, β)); its best points and the coarse grid's best local minima are polished over all
   five parameters by the L-BFGS the multistart runs (``Problem.minimize``), so that both
   solvers stop by the same test, and the best is kept.

Pins and bounds are kept as the multistart keeps them: a pinned (e, a, b) is not stepped, a
bounded one is clipped into its box, pinned or tied exponents shrink the grid to one axis or
to one point, and bounded ones span their bounds.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from scaling.fitting.chinchilla import BLOCK, Problem
from scaling.fitting.objectives import rho

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

# Exponents searched when unbounded: the range of the paper's 4500 starts. A fitted exponent
# beyond it is still found: the polish is unbounded where the user set no bound.
SPAN = (0.0, 2.0)
COUNT = 21  # grid values per free exponent: a step of 0.1 over SPAN
FINE = 11  # values per free exponent of the finer grid: a step of 0.02 about the best point
ITERATIONS = 10  # inner steps: they rank grid points; the polish sets the answer's precision
POLISH = 4  # polished by L-BFGS: the fine grid's best points, the coarse one's minima


def fit(problem: Problem) -> OptimizeResult | None:
    """The best L-BFGS result polished from the profiled objective's best points and local
    minima on the exponent grid (the free parameters, as ``Problem.minimize`` returns them);
    None where no polish ends finite."""
    axes = exponent_axes(problem)
    thetas, values = profile(problem, axes)
    minima = local_minima(values.reshape([len(a) for a in axes]))
    if not len(minima):
        return None
    # Where the noise is small and a term large, the profile is sharp: a step of 0.1 in an
    # exponent can miss the basin of the optimum. A finer grid around the best point finds it.
    fine_thetas, fine_values = profile(problem, zoomed(axes, thetas[minima[0], 3:]))
    # Near-L1 Huber has kinks on which one L-BFGS run can stop short of the minimum (by 2e-7
    # of the objective on 30 noisy points): the best few points, each polished, reach it.
    starts = np.concatenate(
        [fine_thetas[np.argsort(fine_values, kind="stable")[:POLISH]], thetas[minima[:POLISH]]]
    )
    best = None
    for start in starts:
        result = problem.minimize(start[problem.free])
        if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
            best = result
    return best


def exponent_axes(problem: Problem) -> list[np.ndarray]:
    """The grid's values of α and of β: ``COUNT`` over ``SPAN`` or the bounds of a free one,
    the pinned value of a pinned one, and NaN for a β tied to α (``profile`` copies α)."""
    box = _box(problem)
    axes = []
    for i in (3, 4):
        if problem.tie and i == 4:
            axes.append(np.array([np.nan]))
        elif not problem.free[i]:
            axes.append(problem.fixed[i : i + 1])
        else:
            low = box[0][i] if np.isfinite(box[0][i]) else min(SPAN[0], box[1][i])
            high = box[1][i] if np.isfinite(box[1][i]) else max(low, SPAN[0]) + SPAN[1]
            axes.append(np.linspace(low, high, COUNT))
    return axes


def zoomed(axes: list[np.ndarray], center: np.ndarray) -> list[np.ndarray]:
    """Axes of ``FINE`` values spanning one step of ``axes`` either side of ``center``,
    within their range (an axis of one value stays as it is)."""
    out = []
    for axis, middle in zip(axes, center, strict=True):
        if len(axis) == 1:
            out.append(axis)
        else:
            step = axis[1] - axis[0]
            fine = np.linspace(middle - step, middle + step, FINE)
            out.append(np.unique(np.clip(fine, axis[0], axis[-1])))
    return out


def local_minima(values: np.ndarray) -> np.ndarray:
    """Flat indices of the grid points no neighbour (diagonals included) beats, best first;
    a flat stretch gives each of its points."""
    from scipy.ndimage import minimum_filter  # scipy loads when a law fits, not on import

    values = np.where(np.isfinite(values), values, np.inf)
    lowest = minimum_filter(values, size=3, mode="nearest")
    found = np.flatnonzero((values <= lowest) & np.isfinite(values))
    return found[np.argsort(values.ravel()[found], kind="stable")]


def profile(problem: Problem, axes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(e, a, b, α, β) and the objective at the inner optimum of each (α, β) of the grid
    ``axes`` spans (rows in C order); rows in chunks of ``BLOCK`` (row, point) pairs, so that
    memory does not grow with the grid (each row's solve is its own: chunks change nothing)."""
    pairs = np.array(list(itertools.product(*axes)))
    thetas = np.tile(problem.fixed, (len(pairs), 1))
    thetas[:, 3:] = pairs
    if problem.tie:
        thetas[:, 4] = thetas[:, 3]
    values = np.empty(len(pairs))
    rows = max(1, BLOCK // len(problem.t))
    for i in range(0, len(pairs), rows):
        chunk = slice(i, i + rows)
        thetas[chunk, :3], values[chunk] = _inner(problem, thetas[chunk, 3], thetas[chunk, 4])
    return thetas, values


def _box(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of all five internal parameters, ±inf where unbounded."""
    low, high = np.full(5, -np.inf), np.full(5, np.inf)
    for i, (lo, hi) in zip(np.flatnonzero(problem.free), problem.bounds, strict=True):
        low[i] = -np.inf if lo is None else lo
        high[i] = np.inf if hi is None else hi
    return low, high


def _inner(problem: Problem, alpha: np.ndarray, beta: np.ndarray):
    """(e, a, b) of shape (grid, 3) minimising the objective at each (α, β), and its value."""
    # log of each term but its scale: 0, −α·log N, −β·log D, shape (3, grid, points)
    n_logs, d_logs = -alpha[:, None] * problem.x, -beta[:, None] * problem.y
    logs = np.stack(np.broadcast_arrays(0.0, n_logs, d_logs))
    pinned = ~problem.free[:3]
    low, high = (bound[:3] for bound in _box(problem))
    theta = np.clip(_nnls_start(problem, logs, pinned), low, high)
    value, r, slope, share = _evaluate(problem, theta, logs)
    damping = np.full(len(theta), 1e-3)
    for _ in range(ITERATIONS):
        # Gauss-Newton with Huber's weights ρ'(r)/r: d log L̂ / d(e, a, b) is each term's share
        gradient = np.einsum("gn,kgn->gk", slope, share)
        weight = np.divide(slope, r, out=np.ones_like(r), where=r != 0)
        matrix = np.einsum("kgn,lgn->gkl", share * weight, share)
        # Levenberg's damping, scaled to the matrix: a large one turns the step to the gradient
        size = np.einsum("gkk->g", matrix) / 3 + np.finfo(float).tiny
        matrix += (damping * size)[:, None, None] * np.eye(3)
        # a pinned parameter does not move: its row and column become the identity's
        matrix[:, pinned, :], matrix[:, :, pinned], gradient[:, pinned] = 0.0, 0.0, 0.0
        matrix[:, pinned, pinned] = 1.0
        trial = np.clip(theta - np.linalg.solve(matrix, gradient[..., None])[..., 0], low, high)
        new = _evaluate(problem, trial, logs)
        better = new[0] < value
        theta = np.where(better[:, None], trial, theta)
        value = np.where(better, new[0], value)
        r, slope = (np.where(better[:, None], n, o) for n, o in ((new[1], r), (new[2], slope)))
        share = np.where(better[None, :, None], new[3], share)
        # floored: a grid point at α = 0 has N^-α = 1, the constant, and a singular matrix
        damping = np.where(better, np.maximum(damping / 3, 1e-9), damping * 4)
    return theta, value


def _evaluate(problem: Problem, theta: np.ndarray, logs: np.ndarray):
    """At (e, a, b) of each grid point: the objective, the log residuals, ρ' of them and
    each term's share of the predicted loss (the softmax of the log-sum-exp)."""
    u = theta.T[:, :, None] + logs
    top = u.max(axis=0)
    share = np.exp(u - top)
    total = share.sum(axis=0)
    share /= total
    r = top + np.log(total) - problem.t
    value, slope = rho(r, problem.loss, problem.delta)
    with np.errstate(invalid="ignore"):  # a step to ±inf gives NaN: never better, not taken
        return np.nan_to_num(value.sum(axis=-1), nan=np.inf), r, slope, share


def _nnls_start(problem: Problem, logs: np.ndarray, pinned: np.ndarray) -> np.ndarray:
    """(e, a, b) from non-negative least squares of Σ_k c_k·f_k/L ≈ 1 over the free terms
    (the pinned ones moved to the right-hand side): for three unknowns, the best of the
    unconstrained solutions on each support that are non-negative. A term the solution drops
    starts a millionth of the least loss, so that it has a logarithm."""
    features = np.exp(logs - problem.t)  # f_k/L: 1, N^-α/L, D^-β/L
    scale = np.exp(np.where(pinned, problem.fixed[:3], 0.0))
    target = 1.0 - np.einsum("k,kgn->gn", np.where(pinned, scale, 0.0), features)
    best, cost = np.zeros((logs.shape[1], 3)), np.full(logs.shape[1], np.inf)
    free = np.flatnonzero(~pinned)
    for size in range(1, len(free) + 1):
        for support in map(list, itertools.combinations(free, size)):
            f = features[support]
            # columns scaled to unit length: N^-α/L is 1e-18 of the constant's at α = 2
            norm = np.sqrt((f * f).sum(axis=-1)).T  # (grid, support)
            matrix = np.einsum("kgn,lgn->gkl", f, f) / (norm[:, :, None] * norm[:, None, :])
            matrix += 1e-12 * np.eye(size)  # α = 0 makes N^-α the constant: singular
            right = np.einsum("kgn,gn->gk", f, target) / norm
            c = np.linalg.solve(matrix, right[..., None])[..., 0] / norm
            residual = ((np.einsum("gk,kgn->gn", c, f) - target) ** 2).sum(axis=-1)
            take = (c >= 0).all(axis=-1) & (residual < cost)
            best[take] = 0.0
            best[np.ix_(take, support)] = c[take]
            cost = np.where(take, residual, cost)
    floor = 1e-6 * np.exp(problem.t.min()) / np.exp(logs.max(axis=-1)).T
    theta = np.log(np.maximum(best, floor))
    return np.where(pinned, problem.fixed[:3], theta)
