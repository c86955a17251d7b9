"""The multi-power law (Luo et al. 2025, ICLR, arXiv:2503.12811), as its public code computes it
(thu-yao-01-luo/MultiPowerLaw, MIT, commit 8da9f1902602f3391b971a811e3cc51604541769,
``src/models.py`` ``MPL.forward`` and ``src/evaluation.py``)::

    L(t) = L0 + A·S1(t)^(−α) − B·Σ_{k=1..t} (η_{k−1} − η_k)·G(η_k^(−γ)·S_k(t))
    S1(t) = Σ_{τ=0..t} η_τ   (warm-up included: the paper's S1 + S_W),
    S_k(t) = Σ_{τ=k..t} η_τ,  G(x) = 1 − (C·x + 1)^(−β)

the sum over every step where the lr changes, warm-up included (the code's ``lr_gap``).
Fitted as ``src/fitting.py`` does: a grid of 135 starts and L-BFGS-B on the surrogate
L0 + A·S1^(−α) − B·(η_peak − η_t) (``initialize_params``), then all seven from there with
C = 1, β = γ = 0.5 (``generate_init_params``), Huber δ = 1e-3 on log residuals summed over the
curves. The repository's second stage is 200 AdamW steps in torch: ported below in numpy with
the exact gradient (``refine="adam"``, the default; it gives the repository's published
parameters back to 4 digits); ``refine="lbfgs"`` runs L-BFGS-B on the logarithms of the seven
to convergence instead (a lower objective on the fitted curves).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from scaling.fitting.base import Fit
from scaling.fitting.curvelaws import CurveLaw, _surrogate_predict, s1_at
from scaling.fitting.curves import LrCurves
from scaling.fitting.errors import FitError, one_of

PAIRS_PER_CHUNK = 4_000_000  # (step, lr change) pairs evaluated at once when predicting
ADAM_LR = np.array([5e-2, 5e-2, 5e-3, 5e-2, 5e-2, 5e-3, 5e-3])  # src/config.py FIT_LR1, FIT_LR2


class DropPairs:
    """The pairs (logged step t, step k ≤ t where the lr changes) of one curve's loss drop:
    the change η_{k−1} − η_k, log η_k and log S_k(t), and which t each belongs to."""

    def __init__(self, lr: np.ndarray, steps: np.ndarray):
        cumulative = np.cumsum(lr)
        change = np.zeros_like(lr)
        change[1:] = lr[:-1] - lr[1:]
        ks = np.flatnonzero(change)
        counts = np.searchsorted(ks, steps, side="right")
        self.n = len(steps)
        self.query = np.repeat(np.arange(len(steps)), counts)
        k = np.concatenate([ks[:c] for c in counts]) if len(steps) else ks[:0]
        span = cumulative[steps[self.query]] - cumulative[k - 1]
        floor = 1e-30
        self.change = change[k]
        self.log_lr = np.log(np.maximum(lr[k], floor))
        self.log_span = np.log(np.maximum(span, floor))

    def drop(self, C: float, beta: float, gamma: float, grad: bool = False):
        """Σ_k (η_{k−1} − η_k)·G per logged step and, with ``grad``, its derivatives in
        C, β, γ."""
        x = np.exp(self.log_span - gamma * self.log_lr)
        log_u = np.log1p(C * x)
        v = np.exp(-beta * log_u)
        total = np.bincount(self.query, self.change * (1.0 - v), self.n)
        if not grad:
            return total, None
        w = self.change * beta * v * x / (1.0 + C * x)
        d_c = np.bincount(self.query, w, self.n)
        d_beta = np.bincount(self.query, self.change * v * log_u, self.n)
        d_gamma = np.bincount(self.query, -w * C * self.log_lr, self.n)
        return total, (d_c, d_beta, d_gamma)


def mpl_drop(lr: np.ndarray, steps: np.ndarray, C: float, beta: float, gamma: float):
    """The multi-power loss drop's sum at ``steps`` of a whole schedule, in chunks."""
    out = np.empty(len(steps))
    per = max(1, PAIRS_PER_CHUNK // max(1, int(np.count_nonzero(np.diff(lr))) + 1))
    for start in range(0, len(steps), per):
        part = steps[start : start + per]
        out[start : start + per] = DropPairs(lr, part).drop(C, beta, gamma)[0]
    return out


class MultiPowerLaw(CurveLaw):
    """The multi-power law (see the module's docstring). ``refine``: the second stage, the
    repository's AdamW (``adam``, the default: what its published numbers come from) or
    L-BFGS-B to convergence (``lbfgs``: a lower objective on the fitted curves)."""

    law = "multi-power"
    formula = "L0 + A·S1^(−α) − B·Σ_k (η_{k−1} − η_k)·(1 − (C·η_k^(−γ)·S_k(t) + 1)^(−β))"
    parameters = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
    positive_params = parameters

    def __init__(
        self,
        *,
        refine: Annotated[
            str,
            "multi-power: the fit's second stage, adam (the repository's 200 AdamW steps) "
            "or lbfgs (L-BFGS-B to convergence).",
        ] = "adam",
        **common: Any,
    ):
        self.refine = refine
        super().__init__(**common)

    def _check(self) -> None:
        super()._check()
        one_of("refine", self.refine, ("adam", "lbfgs"))

    def _second(self, terms, start: np.ndarray):
        if self.refine == "lbfgs":
            return self._minimize(terms, _mpl_predict, start)
        return self._adam(terms, start)

    def _adam(self, terms, start: np.ndarray, max_steps: int = 200, patience: int = 20):
        """``src/fitting.py`` ``mpl_adam_fit``: torch's AdamW (betas 0.9, 0.999, eps 1e-8,
        weight decay 0.01) on the parameters themselves, lr 5e-2 for L0, A, B, C and 5e-3 for
        α, β, γ; at most 200 steps, stopped after 20 without a lower loss or at a gradient
        norm below 1e-5; the parameters after the step taken from the least loss."""
        p = np.array(start, dtype=float)
        m, v = np.zeros_like(p), np.zeros_like(p)
        best, best_p, least, stalled = np.inf, p.copy(), np.inf, 0
        for step in range(max_steps):
            value, grad = self._raw_objective(terms, _mpl_predict, p)
            t = step + 1
            p = p * (1 - ADAM_LR * 0.01)
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad * grad
            p = p - ADAM_LR * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
            if value < least:
                least, stalled = value, 0
            else:
                stalled += 1
            if step > patience and stalled >= patience:
                break
            if np.linalg.norm(grad) < 1e-5:
                break
            if value < best:
                best, best_p = value, p.copy()
        if not np.all(best_p > 0):
            raise FitError("the multi-power law's AdamW stage left a parameter at or below 0")
        return best_p, float(best)

    def _terms(self, curves: LrCurves) -> list[dict[str, Any]]:
        return [
            {"loss": c.loss, "s1": s1_at(c.lr, c.steps), "pairs": DropPairs(c.lr, c.steps)}
            for c in curves.curves
        ]

    def _fit(self, curves: LrCurves) -> Fit:
        self._check_curves(curves)
        peak = max(c.lr.max() for c in curves.curves)
        drop = [peak - c.lr[c.steps] for c in curves.curves]
        start, _ = self._surrogate(curves, drop, peak)
        full = np.concatenate([start, [1.0, 0.5, 0.5]])  # generate_init_params
        params, objective = self._second(self._terms(curves), full)
        return self._result(params, objective, curves, start)

    def _refit(self, curves: LrCurves, found: Fit):
        """On a resample: the surrogate from the fit's own surrogate optimum (one start, not
        the grid), then the second stage as the fit."""
        peak = max(c.lr.max() for c in curves.curves)
        terms = [
            {"loss": c.loss, "s1": s1_at(c.lr, c.steps), "drop": peak - c.lr[c.steps]}
            for c in curves.curves
        ]
        start, _ = self._minimize(terms, _surrogate_predict, found.details["surrogate"])
        try:
            params, _ = self._second(self._terms(curves), np.concatenate([start, [1.0, 0.5, 0.5]]))
        except FitError:
            return None
        return dict(zip(self.parameters, map(float, params), strict=True))

    def _curve(self, lr, steps, p) -> np.ndarray:
        drop = mpl_drop(lr, steps, p["C"], p["beta"], p["gamma"])
        return p["L0"] + p["A"] * s1_at(lr, steps) ** -p["alpha"] - p["B"] * drop


def _mpl_predict(term, p):
    L0, A, alpha, B, C, beta, gamma = p
    drop, (d_c, d_beta, d_gamma) = term["pairs"].drop(C, beta, gamma, grad=True)
    power = term["s1"] ** -alpha
    pred = L0 + A * power - B * drop
    jac = np.stack(
        [
            np.ones_like(power),
            power,
            -A * power * np.log(term["s1"]),
            -drop,
            -B * d_c,
            -B * d_beta,
            -B * d_gamma,
        ]
    )
    return pred, jac
