"""The one multi-start minimiser of the laws that need one (parametric, Kaplan, MoE, data-
constrained): score every start, run a local optimiser from the best ``keep``, keep the best
finite result. Scaling-law objectives are non-convex in the exponents; a grid of starts is how
Hoffmann et al. and every replication since find the global optimum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scipy.optimize import OptimizeResult

METHODS = ("L-BFGS-B", "Nelder-Mead", "least_squares")


def multistart(
    fun: Callable[[np.ndarray], Any],
    starts: np.ndarray,
    *,
    method: str = "L-BFGS-B",
    keep: int | None = None,
    score: Callable[[np.ndarray], np.ndarray] | None = None,
    jac: bool = False,
    bounds: Any = None,
    options: dict[str, Any] | None = None,
) -> OptimizeResult | None:
    """Minimise ``fun`` from each of ``starts`` (rows); None when no start gives a finite
    result. ``method="least_squares"``: ``fun`` returns residuals, and ``bounds`` is its
    (low, high) pair; otherwise ``fun`` returns the objective (and its gradient with ``jac``)
    and ``bounds`` is scipy's per-parameter list. ``keep``: run only from the starts of least
    ``score`` (a vectorised objective over all starts, or ``fun`` at each start)."""
    from scipy.optimize import least_squares, minimize  # scipy loads on a fit, not on import

    if method not in METHODS:
        raise ValueError(f"method={method!r}: one of {', '.join(METHODS)}")
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    if keep is not None and len(starts) > keep:
        starts = starts[np.argsort(_scores(fun, starts, method, jac, score), kind="stable")[:keep]]
    best = None
    for start in starts:
        if method == "least_squares":
            result = least_squares(fun, start, bounds=bounds, **(options or {}))
            result.fun_value = 2 * result.cost  # the sum of squares
        else:
            result = minimize(
                fun, start, jac=jac, method=method, bounds=bounds, options=options or {}
            )
            result.fun_value = float(result.fun)
        finite = np.all(np.isfinite(result.x)) and np.isfinite(result.fun_value)
        if finite and (best is None or result.fun_value < best.fun_value):
            best = result
    return best


def _scores(fun, starts, method, jac, score) -> np.ndarray:
    if score is not None:
        return np.asarray(score(starts), dtype=float)
    values = []
    for start in starts:
        value = fun(start)
        if method == "least_squares":
            value = np.square(value).sum()
        elif jac:
            value = value[0]
        values.append(value if np.isfinite(value) else np.inf)
    return np.array(values)
