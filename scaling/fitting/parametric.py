"""Chinchilla Approach 3: L(N, D) = E + A/N^α + B/D^β, fitted as Hoffmann et al. describe.

Parametrisation: e = log E, a = log A, b = log B, so that
    log L̂ = LSE(a − α·log N, b − β·log D, e),
and the objective is Σ Huber_δ(log L̂ − log L) with δ = 1e-3, minimised by L-BFGS from the
paper's grid of 4500 starts, keeping the best.

Speed without changing the answer: the objective of all 4500 starts is evaluated at once
(one vectorised pass), and L-BFGS with the analytic gradient runs from the ``keep`` best
starts (``starts="all"`` runs every one). ``benchmarks/fit_speed.py`` checks that this reaches
the optimum of the plain 4500-start loop.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.fitting.base import FitError, Law, percentile_interval
from scaling.fitting.bootstrap import bootstrap
from scaling.fitting.points import Points, prepare_points

NAMES = ("E", "A", "B", "alpha", "beta")
LOSSES = ("huber", "l2", "l1")


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


def _rho(r: np.ndarray, loss: str, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-residual loss and its derivative."""
    if loss == "l2":
        return 0.5 * r * r, r
    d = 1e-6 if loss == "l1" else delta  # l1: Huber with a vanishing quadratic zone
    small = np.abs(r) <= d
    value = np.where(small, 0.5 * r * r, d * (np.abs(r) - 0.5 * d))
    return value, np.where(small, r, d * np.sign(r))


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


def objective_and_gradient(theta, x, y, t, loss="huber", delta=1e-3):
    e, a, b, alpha, beta = theta
    u = np.stack([a - alpha * x, b - beta * y, np.full_like(x, e)])
    top = u.max(axis=0)
    w = np.exp(u - top)
    total = w.sum(axis=0)
    w /= total
    value, slope = _rho(top + np.log(total) - t, loss, delta)
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


class ParametricLaw(Law):
    law = "parametric"
    formula = "L(N, D) = E + A / N^alpha + B / D^beta"

    @staticmethod
    def _derived(p: dict[str, float]) -> dict[str, float]:
        """a, b and G; NaN where the exponents are not both positive (a bootstrap refit on a
        degenerate resample can land there, and the optimum is then undefined)."""
        if p["alpha"] <= 0 or p["beta"] <= 0:
            return {"a": math.nan, "b": math.nan, "G": math.nan}
        a = p["beta"] / (p["alpha"] + p["beta"])
        G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
        return {"a": a, "b": 1 - a, "G": G}

    def allocation_exponents(self) -> dict[str, float]:
        derived = self._derived(self.params)
        out = {"a": derived["a"], "b": derived["b"], "G": derived["G"]}
        if self.samples:
            draws = [self._derived(s) for s in self.samples]
            out["derived_intervals"] = {
                key: percentile_interval(np.array([d[key] for d in draws], dtype=float))
                for key in ("a", "b", "G")
            }
        return out

    def loss(self, N, D, p: dict[str, float] | None = None):
        p = p or self.params
        return (
            p["E"]
            + p["A"] / np.asarray(N, float) ** p["alpha"]
            + p["B"] / np.asarray(D, float) ** p["beta"]
        )

    def _k(self) -> float:
        return float(self.options.get("flops_per_param_token", 6.0))

    def optimum(self, compute: float, p: dict[str, float] | None = None) -> dict[str, float]:
        """N_opt(C) = G·(C/6)^a, D_opt(C) = (C/6)^b / G, and the loss there."""
        p = p or self.params
        d = self._derived(p)
        scaled = compute / self._k()
        N, D = d["G"] * scaled ** d["a"], scaled ** d["b"] / d["G"]
        return {
            "compute": compute,
            "params": N,
            "tokens": D,
            "tokens_per_param": D / N,
            "loss": float(self.loss(N, D, p)),
        }

    def _compute_for(self, p, params=None, tokens=None) -> float:
        d = self._derived(p)
        if params is not None:
            return self._k() * (params / d["G"]) ** (1 / d["a"])
        return self._k() * (tokens * d["G"]) ** (1 / d["b"])

    def predict(self, compute=None, params=None, tokens=None) -> dict[str, Any]:
        """The compute-optimal allocation at a budget, or for a given size or token count."""
        if sum(v is not None for v in (compute, params, tokens)) != 1:
            raise FitError("give exactly one of compute, params and tokens")

        def at(p):
            c = compute if compute is not None else self._compute_for(p, params, tokens)
            return self.optimum(c, p)

        return self._with_intervals(at(self.params), at)


def _free_layout(pinned: dict[str, float] | None):
    pinned = dict(pinned or {})
    unknown = set(pinned) - set(NAMES)
    if unknown:
        raise FitError(f"--pin {sorted(unknown)[0]}: pinnable parameters are {', '.join(NAMES)}")
    fixed = np.full(5, np.nan)
    for name, value in pinned.items():
        if name in ("E", "A", "B") and value <= 0:
            raise FitError(f"--pin {name}={value}: must be positive")
        fixed[NAMES.index(name)] = np.log(value) if name in ("E", "A", "B") else value
    return fixed, np.isnan(fixed)


def _to_natural(theta: np.ndarray) -> dict[str, float]:
    e, a, b, alpha, beta = theta
    return {
        "E": float(np.exp(e)),
        "A": float(np.exp(a)),
        "B": float(np.exp(b)),
        "alpha": float(alpha),
        "beta": float(beta),
    }


class _Problem:
    """The objective over the free parameters, with pinned ones held fixed."""

    def __init__(self, frame: pd.DataFrame, loss: str, delta: float, pinned, bounds):
        if loss not in LOSSES:
            raise FitError(f"--loss {loss!r}: must be one of {', '.join(LOSSES)}")
        self.x = np.log(frame["params"].to_numpy(float))
        self.y = np.log(frame["tokens"].to_numpy(float))
        self.t = np.log(frame["loss"].to_numpy(float))
        self.loss, self.delta = loss, delta
        self.fixed, self.free = _free_layout(pinned)
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

    def full(self, free_theta: np.ndarray) -> np.ndarray:
        theta = self.fixed.copy()
        theta[self.free] = free_theta
        return theta

    def fun(self, free_theta):
        value, grad = objective_and_gradient(
            self.full(free_theta), self.x, self.y, self.t, self.loss, self.delta
        )
        return value, grad[self.free]

    def batch_values(self, thetas: np.ndarray) -> np.ndarray:
        r = log_predict(thetas, self.x, self.y) - self.t
        return _rho(r, self.loss, self.delta)[0].sum(axis=-1)

    def minimize(self, start: np.ndarray):
        return minimize(
            self.fun,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=self.bounds,
            options={"maxiter": 5000, "maxfun": 20000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20},
        )


def _best_fit(problem: _Problem, starts: np.ndarray):
    best = None
    for start in starts:
        result = problem.minimize(start)
        if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
            best = result
    return best


def fit_parametric(
    data: pd.DataFrame | Points,
    loss: str = "huber",
    delta: float = 1e-3,
    pinned: dict[str, float] | None = None,
    bounds: dict[str, tuple[float | None, float | None]] | None = None,
    starts: str = "pruned",
    keep: int = 64,
    bootstrap_samples: int = 0,
    bootstrap_unit: str = "points",
    seed: int = 0,
    flops_per_param_token: float = 6.0,
) -> ParametricLaw:
    """Fit L(N, D) = E + A/N^α + B/D^β (Approach 3). ``data``: points with params, tokens
    and loss. ``starts``: "pruned" (L-BFGS from the ``keep`` best of the 4500 grid starts)
    or "all". ``pinned``: parameters held fixed, e.g. {"E": 1.69}. ``bounds``: per parameter
    (low, high) in natural units."""
    points = data if isinstance(data, Points) else prepare_points(data)
    frame = points.frame
    if len(frame) < 6 or frame["params"].nunique() < 2 or frame["tokens"].nunique() < 2:
        raise FitError(
            f"{points.source}: the parametric law needs at least 6 points with 2 or "
            f"more distinct sizes and token counts; got {len(frame)}"
        )
    problem = _Problem(frame, loss, delta, pinned, bounds)
    grid = np.unique(chinchilla_starts()[:, problem.free], axis=0)
    if starts == "pruned":
        full = np.tile(problem.fixed, (len(grid), 1))
        full[:, problem.free] = grid
        grid = grid[np.argsort(problem.batch_values(full), kind="stable")[:keep]]
    elif starts != "all":
        raise FitError(f"starts={starts!r}: must be 'pruned' or 'all'")
    best = _best_fit(problem, grid)
    if best is None:
        raise FitError(f"{points.source}: the parametric fit did not converge from any start")
    theta = problem.full(best.x)

    def refit(sample: pd.DataFrame):
        sub = _Problem(sample, loss, delta, pinned, bounds)
        result = sub.minimize(best.x)
        return _to_natural(sub.full(result.x)) if np.isfinite(result.fun) else None

    samples, intervals = bootstrap(frame, refit, bootstrap_samples, bootstrap_unit, seed)
    return ParametricLaw.fitted(
        points,
        _to_natural(theta),
        (samples, intervals),
        objective=float(best.fun),
        options={
            "loss": loss,
            "delta": delta,
            "pinned": pinned or {},
            "starts": starts,
            "keep": keep,
            "bootstrap": bootstrap_samples,
            "bootstrap_unit": bootstrap_unit,
            "seed": seed,
            "flops_per_param_token": flops_per_param_token,
        },
        details={"converged": bool(best.success), "message": str(best.message)},
    )
