"""Chinchilla Approach 3: L(N, D) = E + A/N^α + B/D^β, fitted as Hoffmann et al. describe.

Parametrisation: e = log E, a = log A, b = log B, so that
    log L̂ = LSE(a − α·log N, b − β·log D, e),
and the objective is Σ Huber_δ(log L̂ − log L) with δ = 1e-3, minimised by L-BFGS from the
paper's grid of 4500 starts, keeping the best.

Speed without changing the answer: the objective of the 4500 starts is evaluated in
vectorised chunks of ``BLOCK`` (start, point) pairs, so memory grows with the points and
not with the grid (``benchmarks/fit_memory.py``), and L-BFGS with the analytic gradient runs
from the ``keep`` best starts (``starts="all"`` runs every one). ``benchmarks/fit_speed.py``
checks that this reaches the optimum of the plain 4500-start loop.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.fitting.base import FitError, Law, all_equal, percentile_interval
from scaling.fitting.minimize import multistart

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
    """Approach 3. Settings: ``loss`` (huber, l2, l1), ``delta`` (Huber), ``pinned``
    (parameters held fixed, e.g. {"E": 1.69}), ``bounds`` (per parameter (low, high) in
    natural units), ``starts`` ("pruned": L-BFGS from the ``keep`` best of the 4500 grid
    starts, or "all"), ``flops_per_param_token`` (k of C = k·N·D along which the optimum is
    taken; None: the points' own, from the sweep's FLOP formula, else 6), ``tie_exponents``
    (fit one exponent, α = β).

    What the points identify, else the fit is refused: 6 or more points; 3 or more distinct
    sizes and 3 or more distinct token counts (2 where a pin leaves one of A, α, or of B, β,
    to fit); losses that differ. The best fit is refused too when an exponent is ≤ 0 (the loss
    does not fall along that axis: no optimum follows) or a term changes the loss by less than
    ``TERM_FLOOR`` over the sampled range (it then merges with E and says nothing of its
    exponent). A bootstrap resample that fails the first conditions is not refitted."""

    law = "parametric"
    formula = "L(N, D) = E + A / N^alpha + B / D^beta"
    defaults: ClassVar[dict[str, Any]] = {
        "loss": "huber",
        "delta": 1e-3,
        "pinned": {},
        "bounds": {},
        "starts": "pruned",
        "keep": 64,
        "flops_per_param_token": None,
        "tie_exponents": False,
    }
    answers = frozenset({"loss", "optimum"})
    parameters = NAMES
    positive_params = ("E", "A", "B")
    positive_in_fit = ("alpha", "beta")  # else no optimum (``_derived``)

    @staticmethod
    def _derived(p: dict[str, float]) -> dict[str, float]:
        """a, b and G; NaN where the exponents are not both positive (a bootstrap refit on a
        degenerate resample can land there, and the optimum is then undefined)."""
        if p["alpha"] <= 0 or p["beta"] <= 0:
            return {"a": math.nan, "b": math.nan, "G": math.nan}
        a = p["beta"] / (p["alpha"] + p["beta"])
        G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
        return {"a": a, "b": 1 - a, "G": G}

    def allocation_exponents(self) -> dict[str, Any]:
        derived = self._derived(self.params)
        out: dict[str, Any] = {"a": derived["a"], "b": derived["b"], "G": derived["G"]}
        if self.samples:
            draws = [self._derived(s) for s in self.samples]
            out["derived_intervals"] = {
                key: percentile_interval(
                    np.array([d[key] for d in draws], dtype=float), self.settings["level"]
                )
                for key in ("a", "b", "G")
            }
        return out

    def loss(self, params, tokens, sample: dict[str, float] | None = None, **covariates):
        p = sample or self.params
        return (
            p["E"]
            + p["A"] / np.asarray(params, float) ** p["alpha"]
            + p["B"] / np.asarray(tokens, float) ** p["beta"]
        )

    def _k(self) -> float:
        return float(self.settings.get("flops_per_param_token") or 6.0)

    def optimum(self, compute: float, sample: dict[str, float] | None = None) -> dict[str, float]:
        """N_opt(C) = G·(C/k)^a, D_opt(C) = (C/k)^b / G, and the loss there."""
        p = sample or self.params
        d = self._derived(p)
        scaled = compute / self._k()
        N, D = d["G"] * scaled ** d["a"], scaled ** d["b"] / d["G"]
        return {
            "compute": float(compute),
            "params": N,
            "tokens": D,
            "tokens_per_param": D / N,
            "loss": float(self.loss(N, D, p)),
        }

    def compute_for(self, sample=None, params=None, tokens=None) -> float:
        d = self._derived(sample or self.params)
        if params is not None:
            return self._k() * (params / d["G"]) ** (1 / d["a"])
        return self._k() * (tokens * d["G"]) ** (1 / d["b"])

    def _problem(self, frame: pd.DataFrame) -> _Problem:
        s = self.settings
        return _Problem(frame, s["loss"], s["delta"], s["pinned"], s["bounds"], s["tie_exponents"])

    def _fit(self, points):
        frame = points.frame
        problem = self._problem(frame)
        if reason := problem.unidentified():
            raise FitError(f"{points.source}: {reason}")
        if self.settings["flops_per_param_token"] is None:
            self.settings["flops_per_param_token"] = points.flops_per_param_token
        grid = np.unique(chinchilla_starts()[:, problem.free], axis=0)
        starts, keep = self.settings["starts"], int(self.settings["keep"])
        if starts not in ("pruned", "all"):
            raise FitError(f"starts={starts!r}: must be 'pruned' or 'all'")

        def score(free: np.ndarray) -> np.ndarray:
            return problem.batch_values(problem.full(free))

        best = multistart(
            problem.fun,
            grid,
            keep=keep if starts == "pruned" else None,
            score=score,
            jac=True,
            bounds=problem.bounds,
            options=LBFGS_OPTIONS,
        )
        if best is None:
            raise FitError(f"{points.source}: the parametric fit did not converge from any start")
        params = _to_natural(problem.full(best.x))
        if reason := problem.collapsed(params):
            raise FitError(f"{points.source}: {reason}")
        self._warm = best.x
        details = {"converged": bool(best.success), "message": str(best.message)}
        return params, float(best.fun), details

    def _refit(self, frame, params):
        problem = self._problem(frame)
        if problem.unidentified():  # a resample of too few sizes: no fit, not a made-up one
            return None
        result = problem.minimize(self._warm)
        return _to_natural(problem.full(result.x)) if np.isfinite(result.fun) else None


# A fitted term that changes the loss by less than this fraction over the sampled range is
# not identified (round-off and noise make such terms; real ones move the loss by percents).
TERM_FLOOR = 1e-6
# Points (or start × point pairs) evaluated at once: the dozen temporary float64 arrays of a
# block stay in the CPU's cache (5 MB), which scores starts 2.4x and evaluates the gradient 2x
# faster than whole arrays at 1M points, and holds the memory to the points' own arrays.
BLOCK = 1 << 16
LBFGS_OPTIONS = {"maxiter": 5000, "maxfun": 20000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20}


def _free_layout(pinned: dict[str, float] | None):
    pinned = dict(pinned or {})
    unknown = set(pinned) - set(NAMES)
    if unknown:
        raise FitError(
            f"pinnable parameters are {', '.join(NAMES)}", param="pinned", value=sorted(unknown)[0]
        )
    fixed = np.full(5, np.nan)
    for name, value in pinned.items():
        if name in ("E", "A", "B") and value <= 0:
            raise FitError("must be positive", param="pinned", value=f"{name}={value}")
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

    def __init__(
        self, frame: pd.DataFrame, loss: str, delta: float, pinned, bounds, tie: bool = False
    ):
        if loss not in LOSSES:
            raise FitError(f"must be one of {', '.join(LOSSES)}", param="loss", value=loss)
        self.x = np.log(frame["params"].to_numpy(float))
        self.y = np.log(frame["tokens"].to_numpy(float))
        self.t = np.log(frame["loss"].to_numpy(float))
        self.loss, self.delta = loss, delta
        self.fixed, self.free = _free_layout(pinned)
        self.tie = tie  # beta = alpha, as Muennighoff et al. fit the data-constrained base law
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
            total = total + _rho(r, self.loss, self.delta)[0].sum(axis=-1)
        return total

    def minimize(self, start: np.ndarray):
        return minimize(
            self.fun, start, jac=True, method="L-BFGS-B", bounds=self.bounds, options=LBFGS_OPTIONS
        )


def fit_parametric(data, **settings: Any) -> ParametricLaw:
    """``ParametricLaw(**settings).fit(data)``: Approach 3 on points with params, tokens, loss."""
    return ParametricLaw(**settings).fit(data)
