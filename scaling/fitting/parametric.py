"""Chinchilla Approach 3: L(N, D) = E + A/N^α + B/D^β, fitted as Hoffmann et al. describe (the
problem, its objective and its starts: ``fitting.chinchilla``), with its compute-optimal
allocation taken under the points' own compute accounting (``fitting.compute``)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from scaling.fitting import chinchilla, varpro
from scaling.fitting.base import Fit, Law
from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.errors import FitError, one_of
from scaling.fitting.minimize import multistart
from scaling.fitting.objectives import HUBER_DELTA, LOSSES

STARTS = ("pruned", "all")
SOLVERS = ("multistart", "varpro")


class ParametricLaw(Law):
    """Approach 3. The starts: L-BFGS with the analytic gradient from the ``keep`` best of
    the paper's 4500 grid starts (``starts="all"``: from every one);
    ``benchmarks/fit_speed.py`` checks that this reaches the optimum of the plain loop.
    ``solver="varpro"``: variable projection instead (``fitting.varpro``: E, A, B solved for
    each exponent pair of a grid, the best polished by the same L-BFGS); the same optimum on
    Epoch AI's points several times faster, slower beyond some 10^4 points
    (``benchmarks/fit_varpro.py``).

    What the points identify, else the fit is refused: 6 or more points; 3 or more distinct
    sizes and 3 or more distinct token counts (2 where a pin leaves one of A, α, or of B, β,
    to fit); losses that differ. The best fit is refused too when an exponent is ≤ 0 (the loss
    does not fall along that axis: no optimum follows) or a term changes the loss by less than
    ``chinchilla.TERM_FLOOR`` over the sampled range (it then merges with E and says nothing
    of its exponent). A bootstrap resample that fails the first conditions is not refitted."""

    law = "parametric"
    formula = "L(N, D) = E + A / N^alpha + B / D^beta"
    answers = frozenset({"loss", "optimum"})
    parameters = chinchilla.NAMES
    positive_params = ("E", "A", "B")
    positive_in_fit = ("alpha", "beta")  # else no optimum (``chinchilla.allocation``)

    def __init__(
        self,
        *,
        objective: Annotated[str, "The objective on log loss: huber, l2 or l1."] = "huber",
        delta: Annotated[float, "Huber's delta (log loss)."] = HUBER_DELTA,
        pinned: Annotated[dict[str, float] | None, "Parameters held fixed, e.g. E=1.69."] = None,
        bounds: Annotated[
            dict[str, tuple[float | None, float | None]] | None,
            "(low, high) of a parameter in natural units, e.g. alpha=0:0.5.",
        ] = None,
        starts: Annotated[
            str, "pruned (L-BFGS from the best --keep of the 4500 grid starts) or all."
        ] = "pruned",
        keep: Annotated[int, "The grid starts L-BFGS runs from (starts=pruned)."] = 64,
        tie_exponents: Annotated[bool, "One exponent: alpha = beta."] = False,
        solver: Annotated[
            str,
            "multistart (L-BFGS from the grid starts) or varpro (E, A, B solved for each alpha, "
            "beta on a grid, the best polished by L-BFGS).",
        ] = "multistart",
        **common: Any,
    ):
        self.objective = objective  # not ``loss``: that is the question the law answers
        self.delta = delta
        self.pinned = pinned
        self.bounds = bounds
        self.starts = starts
        self.keep = keep
        self.tie_exponents = tie_exponents
        self.solver = solver
        super().__init__(**common)

    def _check(self) -> None:
        super()._check()
        one_of("objective", self.objective, LOSSES)
        one_of("starts", self.starts, STARTS)
        one_of("solver", self.solver, SOLVERS)
        # the starts and their number are the multistart's; varpro would ignore them
        defaults = self.signature()
        for name in ("starts", "keep"):
            if self.solver == "varpro" and getattr(self, name) != defaults[name].default:
                raise FitError(
                    "sets the multistart's starts; solver varpro searches a grid of exponents "
                    "instead (use solver multistart)",
                    param=name,
                    value=getattr(self, name),
                )
        chinchilla.check_pinned(self.pinned)

    def problem(self, frame) -> chinchilla.Problem:
        """The Chinchilla problem on ``frame`` with this law's objective, pins and bounds."""
        return chinchilla.Problem(
            frame, self.objective, self.delta, self.pinned, self.bounds, self.tie_exponents
        )

    def allocation_exponents(self) -> dict[str, Any]:
        if not self.params_:
            return {}
        derived = chinchilla.allocation(self.params_)
        out: dict[str, Any] = {"a": derived["a"], "b": derived["b"], "G": derived["G"]}
        if self.samples_:
            draws = [chinchilla.allocation(s) for s in self.samples_]
            out["derived_intervals"] = {
                key: percentile_interval(np.array([d[key] for d in draws], dtype=float), self.level)
                for key in ("a", "b", "G")
            }
        return out

    def loss(self, params, tokens, sample: dict[str, float] | None = None, **covariates):
        return chinchilla.loss(sample or self.params_, params, tokens)

    def optimum(self, compute: float, sample: dict[str, float] | None = None) -> dict[str, float]:
        """The model of least loss among those that spend ``compute`` as the points counted
        it (``compute_``: N_opt(C) = G·(C/k)^a and D_opt(C) = (C/k)^b / G where k is one
        number), and the loss there."""
        p = sample or self.params_
        N, D = chinchilla.optimum(p, compute, self.compute_)
        return {
            "compute": float(compute),
            "params": N,
            "tokens": D,
            "tokens_per_param": D / N,
            "loss": float(chinchilla.loss(p, N, D)),
        }

    def compute_for(self, sample=None, params=None, tokens=None) -> float:
        return chinchilla.compute_for(sample or self.params_, self.compute_, params, tokens)

    def _fit(self, points) -> Fit:
        problem = self.problem(points.frame)
        if not problem.free.any():
            return self._evaluated(problem)
        if reason := problem.unidentified():
            raise FitError(f"{points.source}: {reason}")
        best = varpro.fit(problem) if self.solver == "varpro" else self._multistart(problem)
        if best is None:
            raise FitError(f"{points.source}: the parametric fit did not converge from any start")
        params = chinchilla.natural(problem.full(best.x))
        if reason := problem.collapsed(params):
            raise FitError(f"{points.source}: {reason}")
        details = {"converged": bool(best.success), "message": str(best.message)}
        return Fit(params, float(best.fun), details, warm=best.x)

    def _multistart(self, problem: chinchilla.Problem):
        """L-BFGS from the best ``keep`` of the paper's grid starts (or all of them)."""
        grid = np.unique(chinchilla.chinchilla_starts()[:, problem.free], axis=0)

        def score(free: np.ndarray) -> np.ndarray:
            return problem.batch_values(problem.full(free))

        return multistart(
            problem.fun,
            grid,
            keep=int(self.keep) if self.starts == "pruned" else None,
            score=score,
            jac=True,
            bounds=problem.bounds,
            options=chinchilla.LBFGS_OPTIONS,
        )

    def _evaluated(self, problem: chinchilla.Problem) -> Fit:
        """Every parameter pinned (a published law given whole): nothing to optimise, so
        the fit is the law itself, with its objective on these points."""
        nothing = np.empty(0)
        value, _ = problem.fun(nothing)
        details = {"converged": True, "message": "every parameter pinned: nothing optimised"}
        return Fit(chinchilla.natural(problem.full(nothing)), float(value), details, warm=nothing)

    def _refit(self, points, found: Fit):
        problem = self.problem(points.frame)
        if not problem.free.any():
            return chinchilla.natural(problem.full(np.empty(0)))
        if problem.unidentified():  # a resample of too few sizes: no fit, not a made-up one
            return None
        result = problem.minimize(found.warm)
        return chinchilla.natural(problem.full(result.x)) if np.isfinite(result.fun) else None


def fit_parametric(data, **parameters: Any) -> ParametricLaw:
    """``ParametricLaw(**parameters).fit(data)``: Approach 3 on points with params, tokens,
    loss."""
    return ParametricLaw(**parameters).fit(data)
