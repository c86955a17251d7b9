"""The Chinchilla problem: L(N, D) = E + A/N^α + B/D^β fitted as Hoffmann et al. describe, the
kernel of the parametric law and of the laws built on it (data-constrained, MoE, downstream).

Parametrisation: e = log E, a = log A, b = log B, so that
    log L̂ = LSE(a − α·log N, b − β·log D, e),
and the objective is Σ ρ(log L̂ − log L) (Huber with δ = 1e-3 by default), minimised by
L-BFGS from the paper's grid of 4500 starts (``chinchilla_starts``).

Speed without changing the answer: the objective of the starts is evaluated in vectorised
chunks of ``BLOCK`` (start, point) pairs, so memory grows with the points and not with the
grid (``benchmarks/fit_memory.py``); the gradient is analytic.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from scaling.fitting.errors import FitError, all_equal, one_of
from scaling.fitting.objectives import HUBER_DELTA, LOSSES, rho

if TYPE_CHECKING:
    import pandas as pd

NAMES = ("E", "A", "B", "alpha", "beta")
# A fitted term that changes the loss by less than this fraction over the sampled range is
# not identified (round-off and noise make such terms; real ones move the loss by percents).
TERM_FLOOR = 1e-6
# Points (or start × point pairs) evaluated at once: the dozen temporary float64 arrays of a
# block stay in the CPU's cache (5 MB), which scores starts 2.4x and evaluates the gradient 2x
# faster than whole arrays at 1M points, and holds the memory to the points' own arrays.
BLOCK = 1 << 16
LBFGS_OPTIONS = {"maxiter": 5000, "maxfun": 20000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20}


def loss(p: dict[str, float], params, tokens):
    """E + A/N^α + B/D^β at (N, D)."""
    return (
        p["E"]
        + p["A"] / np.asarray(params, float) ** p["alpha"]
        + p["B"] / np.asarray(tokens, float) ** p["beta"]
    )


def allocation(p: dict[str, float]) -> dict[str, float]:
    """a, b and G of the compute-optimal allocation under C = k·N·D with k constant:
    N_opt = G·(C/k)^a, D_opt = (C/k)^b / G; NaN where the exponents are not both positive (a
    bootstrap refit on a degenerate resample can land there, and the optimum is undefined)."""
    if p["alpha"] <= 0 or p["beta"] <= 0:
        return {"a": math.nan, "b": math.nan, "G": math.nan}
    a = p["beta"] / (p["alpha"] + p["beta"])
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    return {"a": a, "b": 1 - a, "G": G}


def chinchilla_starts() -> np.ndarray:
    """The paper's grid in (e, a, b, α, β): 5 · 6 · 6 · 5 · 5 = 4500 starts."""
    grid = itertools.product(
        np.arange(-1, 1.01, 0.5),  # e
        np.arange(0, 25.1, 5),  # a
        np.arange(0, 25.1, 5),  # b
        np.arange(0, 2.01, 0.5),  # alpha
        np.arange(0, 2.01, 0.5),  # beta
    )
    return np.array(list(grid))


def log_predict(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """log L̂ for theta = (e, a, b, α, β) of shape (..., 5); x = log N, y = log D."""
    e, a, b, alpha, beta = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)
    terms = np.stack(
        np.broadcast_arrays(
            a[..., None] - alpha[..., None] * x, b[..., None] - beta[..., None] * y, e[..., None]
        )
    )
    top = terms.max(axis=0)
    return top + np.log(np.exp(terms - top).sum(axis=0))


def objective_and_gradient(theta, x, y, t, loss="huber", delta=HUBER_DELTA):
    e, a, b, alpha, beta = theta
    u = np.stack([a - alpha * x, b - beta * y, np.full_like(x, e)])
    top = u.max(axis=0)
    w = np.exp(u - top)
    total = w.sum(axis=0)
    w /= total
    value, slope = rho(top + np.log(total) - t, loss, delta)
    grad = np.array(
        [
            (slope * w[2]).sum(),
            (slope * w[0]).sum(),
            (slope * w[1]).sum(),
            -(slope * w[0] * x).sum(),
            -(slope * w[1] * y).sum(),
        ]
    )
    return value.sum(), grad


def natural(theta: np.ndarray) -> dict[str, float]:
    """E, A, B, α, β from (e, a, b, α, β)."""
    e, a, b, alpha, beta = theta
    return {
        "E": float(np.exp(e)),
        "A": float(np.exp(a)),
        "B": float(np.exp(b)),
        "alpha": float(alpha),
        "beta": float(beta),
    }


def internal(p: dict[str, float]) -> np.ndarray:
    """(e, a, b, α, β) from E, A, B, α, β: a warm start."""
    return np.array([np.log(p["E"]), np.log(p["A"]), np.log(p["B"]), p["alpha"], p["beta"]])


def check_pinned(pinned: dict[str, float] | None) -> dict[str, float]:
    pinned = dict(pinned or {})
    unknown = set(pinned) - set(NAMES)
    if unknown:
        raise FitError(
            f"pinnable parameters are {', '.join(NAMES)}", param="pinned", value=sorted(unknown)[0]
        )
    for name, value in pinned.items():
        if name in ("E", "A", "B") and value <= 0:
            raise FitError("must be positive", param="pinned", value=f"{name}={value}")
    return pinned


class Problem:
    """The objective over the free parameters on one set of points, pinned ones held fixed
    (``tie``: β = α, as Muennighoff et al. fit the data-constrained base law)."""

    def __init__(
        self,
        frame: pd.DataFrame,
        loss: str = "huber",
        delta: float = HUBER_DELTA,
        pinned: dict[str, float] | None = None,
        bounds: dict[str, tuple[float | None, float | None]] | None = None,
        tie: bool = False,
    ):
        one_of("loss", loss, LOSSES)
        self.x = np.log(frame["params"].to_numpy(float))
        self.y = np.log(frame["tokens"].to_numpy(float))
        self.t = np.log(frame["loss"].to_numpy(float))
        self.loss, self.delta = loss, delta
        self.fixed = np.full(5, np.nan)
        for name, value in check_pinned(pinned).items():
            self.fixed[NAMES.index(name)] = np.log(value) if name in ("E", "A", "B") else value
        self.free = np.isnan(self.fixed)
        self.tie = tie
        if tie:
            if not self.free[4]:
                raise FitError(
                    "cannot tie the exponents with beta pinned", param="pinned", value="beta"
                )
            self.free[4] = False
        self.bounds = self._bounds(bounds or {})

    def _bounds(self, bounds: dict[str, tuple[float | None, float | None]]):
        out = []
        for i, name in enumerate(NAMES):
            low, high = bounds.get(name, (None, None))
            if name in ("E", "A", "B"):
                low = None if low is None else np.log(max(low, 1e-300))
                high = None if high is None else np.log(high)
            if self.free[i]:
                out.append((low, high))
        return out

    @property
    def beta_fitted(self) -> bool:
        """β is fitted: free, or tied to a free α (``free`` marks it held when tied)."""
        return bool(self.free[4] or (self.tie and self.free[3]))

    def unidentified(self) -> str | None:
        """Why these points cannot identify the free parameters, or None. A term A/N^α with
        both free takes three distinct sizes (the level goes to E, two differences of loss
        fix A and α), with one of them held two; likewise B/D^β in token counts; and the
        loss must vary at all."""
        sizes = 1 + int(self.free[1]) + int(self.free[3])
        tokens = 1 + int(self.free[2]) + int(self.beta_fitted)
        got = (len(self.t), len(np.unique(self.x)), len(np.unique(self.y)))
        if got[0] < 6 or got[1] < sizes or got[2] < tokens:
            return (
                f"the parametric law needs at least 6 points with {sizes} or more distinct sizes "
                f"and {tokens} or more distinct token counts to identify its parameters; got "
                f"{got[0]} points, {got[1]} sizes, {got[2]} token counts"
            )
        if all_equal(self.t):
            return (
                f"all {got[0]} losses are equal ({np.exp(self.t[0]):.6g}), so they cannot "
                "identify E, A, alpha, B, beta: the loss must change with size or tokens"
            )
        return None

    def collapsed(self, p: dict[str, float]) -> str | None:
        """Why the fitted ``p`` has a term the points did not identify, or None: an exponent
        ≤ 0 (the loss does not fall along that axis; no compute-optimal allocation follows),
        or a term that changes the loss by less than ``TERM_FLOOR`` of its size over the
        sampled range (A/N^α then merges with E, and any α fits). Terms held fixed by pins
        are the user's, not the fit's."""
        floor = TERM_FLOOR * np.exp(self.t.min())
        for scale, exponent, term, axis, logs, free in (
            ("A", "alpha", "A/N^alpha", "model size", self.x, self.free[1] or self.free[3]),
            ("B", "beta", "B/D^beta", "token count", self.y, self.free[2] or self.beta_fitted),
        ):
            if not free:
                continue
            if p[exponent] <= 0:
                return (
                    f"the best fit has {exponent} = {p[exponent]:.3g}: the loss does not fall "
                    f"with {axis} in these points, so {scale} and {exponent} are not identified "
                    "and no compute-optimal allocation follows"
                )
            low, high = p[scale] * np.exp(-p[exponent] * np.array([logs.max(), logs.min()]))
            if high - low < floor:
                return (
                    f"the best fit's term {term} changes the loss by {high - low:.2g} over the "
                    f"sampled {axis}s: the points do not identify {scale} and {exponent}"
                )
        return None

    def full(self, free_theta: np.ndarray) -> np.ndarray:
        """(e, a, b, α, β) from the free parameters; rows of several at once."""
        free_theta = np.asarray(free_theta, dtype=float)
        theta = np.tile(self.fixed, (*free_theta.shape[:-1], 1))
        theta[..., self.free] = free_theta
        if self.tie:
            theta[..., 4] = theta[..., 3]
        return theta

    def blocks(self) -> list[slice]:
        """The points in slices of ``BLOCK``: one slice, summed as before, up to a block."""
        return [slice(start, start + BLOCK) for start in range(0, len(self.t), BLOCK)]

    def fun(self, free_theta):
        theta = self.full(free_theta)
        value, grad = 0.0, np.zeros(5)
        for block in self.blocks():
            part = objective_and_gradient(
                theta, self.x[block], self.y[block], self.t[block], self.loss, self.delta
            )
            value, grad = value + part[0], grad + part[1]
        if self.tie:
            grad[3] += grad[4]
        return value, grad[self.free]

    def batch_values(self, thetas: np.ndarray) -> np.ndarray:
        """The objective at each row of ``thetas``, a chunk of rows at a time. Every row
        against every point at once held rows × points × ~10 floats (7 GB for the 4500 starts
        and 20,000 points); in chunks of ``BLOCK`` (row, point) pairs, and the points of a
        row in blocks where they are more, the memory does not grow with the number of starts.
        A row's sum is over the same values in any chunk: up to ``BLOCK`` points the scores
        are those of one pass to the last bit, beyond it to round-off."""
        rows = max(1, BLOCK // len(self.t))
        return np.concatenate(
            [self._values(thetas[i : i + rows]) for i in range(0, len(thetas), rows)]
        )

    def _values(self, thetas: np.ndarray) -> np.ndarray:
        total = 0.0
        for block in self.blocks():
            r = log_predict(thetas, self.x[block], self.y[block]) - self.t[block]
            total = total + rho(r, self.loss, self.delta)[0].sum(axis=-1)
        return total

    def minimize(self, start: np.ndarray):
        """L-BFGS from ``start`` (the free parameters)."""
        from scipy.optimize import minimize  # scipy loads when a law fits, not on import

        return minimize(
            self.fun, start, jac=True, method="L-BFGS-B", bounds=self.bounds, options=LBFGS_OPTIONS
        )

    def refit(self, warm: dict[str, float]) -> dict[str, float] | None:
        """The parameters from L-BFGS warm-started at ``warm``; None where the objective is
        not finite there."""
        result = self.minimize(internal(warm)[self.free])
        return natural(self.full(result.x)) if np.isfinite(result.fun) else None


# -- the compute-optimal allocation under an accounting ----------------------------------------
def _fixed_point(step, start: float, iterations: int = 200) -> float:
    """x = step(x) by iteration from ``start`` (the maps here contract: k(N) varies slowly)."""
    x = start
    for _ in range(iterations):
        new = step(x)
        if not math.isfinite(new) or abs(new / x - 1) < 1e-14:
            return new
        x = new
    return x


def optimum(p: dict[str, float], compute: float, accounting) -> tuple[float, float]:
    """(N, D) of least loss among the models that spend ``compute`` as ``accounting`` counts
    it, C = k(N)·N·D: with k constant, Hoffmann et al.'s closed form N = G·(C/k)^a; with k(N)
    the stationary point α·A·N^-α = β·(1 + d ln k/d ln N)·B·D^-β, found by iterating that
    closed form with k and G at the last N."""
    d = allocation(p)
    if not math.isfinite(d["a"]):
        return math.nan, math.nan
    if accounting.constant:
        scaled = compute / accounting.k
        return d["G"] * scaled ** d["a"], scaled ** d["b"] / d["G"]
    power = 1 / (p["alpha"] + p["beta"])

    def step(n: float) -> float:
        tilt = 1 + float(accounting.slope(n))
        if tilt <= 0:
            return math.nan
        return d["G"] * tilt**-power * (compute / float(accounting.k_at(n))) ** d["a"]

    n = _fixed_point(step, d["G"] * (compute / accounting.k) ** d["a"])
    return n, float(accounting.tokens(compute, n))


def compute_for(p: dict[str, float], accounting, params=None, tokens=None) -> float:
    """The compute whose optimum (``optimum``) has ``params`` parameters or ``tokens``
    tokens."""
    d = allocation(p)
    if accounting.constant:
        if params is not None:
            return accounting.k * (params / d["G"]) ** (1 / d["a"])
        return accounting.k * (tokens * d["G"]) ** (1 / d["b"])
    ratio = p["beta"] * p["B"] / (p["alpha"] * p["A"])

    def tilt(n: float) -> float:
        return 1 + float(accounting.slope(n))

    if params is not None:
        n = float(params)
        d_opt = (ratio * tilt(n) * n ** p["alpha"]) ** (1 / p["beta"])
        return float(accounting.flops(n, d_opt))
    n = _fixed_point(
        lambda n: (tokens ** p["beta"] / (ratio * tilt(n))) ** (1 / p["alpha"]),
        (tokens ** p["beta"] / ratio) ** (1 / p["alpha"]),
    )
    return float(accounting.flops(n, tokens))
