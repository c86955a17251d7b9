"""One compute accounting from plan to optimum: C = k(N)·N·D.

The planner spends a budget with the sweep's own ``flop_formula`` (``6N``, ``chinchilla``,
``exact``), the trainer counts every run's FLOPs with it, and ``results.load`` hands each
point the FLOPs its run spent. Under ``6N`` a model of N parameters spends k = 6 FLOPs per
parameter and token; under ``chinchilla`` and ``exact`` k also counts attention and the
logits, so it falls with N (about 13 to 8 across the sizes of a small sweep). A law asked for
the compute-optimal model at C must spend C the same way: its optimum solves C = k(N)·N·D.

``Compute.of`` reads k from the points' own FLOPs / (N·D): one number where every point spent
the same k (``6N``, or a table whose FLOPs were derived as k·N·D), else the smooth law
k(N) = k∞ + c·N^(-γ) fitted to them (the overheads of attention and logits shrink as a power of
N within a shape family), which extends beyond the sizes trained towards k∞. A law records
which accounting it used in its fit file (``compute_``). Numpy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scaling.fitting.errors import FitError, all_equal, finite_number

SIZES = ("total", "non_embedding", "active")  # what N counts: the sweep's ``size``
HOW = ("constant", "fitted", "assumed")
GAMMAS = np.linspace(0.02, 2.0, 100)  # the exponents of k(N) tried, then refined
TWO_SIZES_GAMMA = 1 / 3  # two sizes fix k∞ and c, not γ: attention and logits scale so


@dataclass(frozen=True)
class Compute:
    """C = k(N)·N·D with k(N) = k + c·N^(-gamma) (``c`` = 0: k at every N).

    ``how``: ``constant`` (every point spent k·N·D), ``fitted`` (k(N) fitted on the points'
    own FLOPs/(N·D)), ``assumed`` (no points said: 6·N·D). ``formula`` and ``size``: the
    sweep's ``flop_formula`` and what its N counts, where the points carry them.
    ``sizes``: the range of N the fit saw; ``error``: the largest relative error of k(N)
    at the points."""

    k: float = 6.0
    c: float = 0.0
    gamma: float = 0.0
    how: str = "assumed"
    formula: str | None = None
    size: str = "total"
    sizes: tuple[float, float] | None = None
    error: float = 0.0

    @property
    def constant(self) -> bool:
        return self.c == 0.0

    def k_at(self, params):
        """FLOPs per parameter and token of a model of ``params`` parameters."""
        if self.constant:
            return self.k
        return self.k + self.c * np.asarray(params, float) ** -self.gamma

    def slope(self, params):
        """d ln k / d ln N at ``params`` (0 for a constant k)."""
        if self.constant:
            return 0.0
        n = np.asarray(params, float)
        return -self.gamma * self.c * n**-self.gamma / self.k_at(n)

    def flops(self, params, tokens):
        return self.k_at(params) * np.asarray(params, float) * np.asarray(tokens, float)

    def tokens(self, compute, params):
        """The tokens on which a model of ``params`` parameters spends ``compute``."""
        return np.asarray(compute, float) / (self.k_at(params) * np.asarray(params, float))

    def describe(self) -> str:
        where = f" ({self.formula}, N {self.size})" if self.formula else ""
        if self.how == "assumed":
            return f"C = {self.k:g}·N·D (assumed: no points said otherwise)"
        if self.constant:
            return f"C = {self.k:.6g}·N·D{where}, as every point spent it"
        low, high = self.sizes or (math.nan, math.nan)
        return (
            f"C = k(N)·N·D{where}, k(N) = {self.k:.4g} + {self.c:.4g}·N^-{self.gamma:.3g} "
            f"fitted on the points' FLOPs/(N·D) from N = {low:.3g} to {high:.3g} "
            f"(within {self.error:.2%})"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sizes"] = list(self.sizes) if self.sizes else None
        out["describe"] = self.describe()
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "compute") -> Compute:
        """The accounting a fit file recorded, every field checked (FitError names it)."""
        if not isinstance(data, dict):
            raise FitError(f"{source}: {data!r:.40} must be an object")
        fields = {}
        for name, check, allowed in (
            ("k", lambda v: finite_number(v) and v > 0, "a positive number"),
            ("c", finite_number, "a number"),
            ("gamma", lambda v: finite_number(v) and v >= 0, "a number, 0 or more"),
            ("how", lambda v: v in HOW, f"one of {', '.join(HOW)}"),
            ("formula", lambda v: v is None or isinstance(v, str), "a string or null"),
            ("size", lambda v: v in SIZES, f"one of {', '.join(SIZES)}"),
            ("error", lambda v: finite_number(v) and v >= 0, "a number, 0 or more"),
        ):
            if name in data:
                if not check(data[name]):
                    raise FitError(f"{source}.{name}: {data[name]!r:.40} must be {allowed}")
                fields[name] = data[name]
        sizes = data.get("sizes")
        if sizes is not None:
            if not (isinstance(sizes, list) and len(sizes) == 2 and all(map(finite_number, sizes))):
                raise FitError(f"{source}.sizes: {sizes!r:.40} must be [low, high] or null")
            fields["sizes"] = (float(sizes[0]), float(sizes[1]))
        return cls(**fields)

    @classmethod
    def of(cls, params, tokens, flops, formula: str | None = None, size: str = "total") -> Compute:
        """The accounting of points of ``params`` (N as the sweep counts it), ``tokens`` and
        the ``flops`` they spent."""
        n = np.asarray(params, float)
        ratio = np.asarray(flops, float) / (n * np.asarray(tokens, float))
        if not len(ratio):
            return cls(formula=formula, size=size)
        sizes = (float(n.min()), float(n.max()))
        distinct = np.unique(n)
        if all_equal(ratio) or len(distinct) < 2:
            return cls(float(np.median(ratio)), 0.0, 0.0, "constant", formula, size, sizes)
        k, c, gamma = _fit_k(n, ratio, len(distinct))
        error = float(np.max(np.abs((k + c * n**-gamma) / ratio - 1)))
        return cls(k, c, gamma, "fitted", formula, size, sizes, error)


def _fit_k(n: np.ndarray, ratio: np.ndarray, distinct: int) -> tuple[float, float, float]:
    """(k∞, c, γ) of k(N) = k∞ + c·N^-γ by least squares on the relative error, k∞ > 0: the
    best γ of ``GAMMAS``, refined by golden section between its neighbours (two sizes: γ =
    ``TWO_SIZES_GAMMA``). Without a positive k∞ (no trend in N) the median ratio."""

    def solve(gamma: float) -> tuple[float, float, float]:
        design = np.column_stack([np.ones_like(n), n**-gamma]) / ratio[:, None]
        (k, c), *_ = np.linalg.lstsq(design, np.ones_like(n), rcond=None)
        residual = float(np.sum((design @ [k, c] - 1) ** 2))
        return (residual if k > 0 else math.inf), float(k), float(c)

    if distinct < 3:
        _, k, c = solve(TWO_SIZES_GAMMA)
        return (k, c, TWO_SIZES_GAMMA) if k > 0 else (float(np.median(ratio)), 0.0, 0.0)
    scores = [solve(g)[0] for g in GAMMAS]
    best = int(np.argmin(scores))
    if not math.isfinite(scores[best]):
        return float(np.median(ratio)), 0.0, 0.0
    low, high = GAMMAS[max(best - 1, 0)], GAMMAS[min(best + 1, len(GAMMAS) - 1)]
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - golden * (high - low), low + golden * (high - low)
        if solve(a)[0] < solve(b)[0]:
            high = b
        else:
            low = a
    gamma = (low + high) / 2
    _, k, c = solve(gamma)
    return k, c, float(gamma)
