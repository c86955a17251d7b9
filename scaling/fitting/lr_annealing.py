"""The learning-rate annealing law (Tissue et al. 2024, arXiv:2408.11029)::

    L(s) = L0 + A·S1(s)^(−α) − C·S2(s),  S2(s) = Σ_{i≤s} m_i,  m_i = λ·m_{i−1} + (η_{i−1} − η_i)

S1(s) = Σ_{τ=0..s} η_τ, warm-up included (``curvelaws.s1_at``); S2 counts from the step the
lr first reaches its peak (the warm-up's rise is no annealing); λ = ``decay``, 0.999 by default
(what a public re-implementation uses; the paper discusses the choice). Fitted from the same
surrogate grid as the multi-power law's first stage, with L-BFGS-B, Huber on log residuals.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from scaling.fitting.base import Fit
from scaling.fitting.curvelaws import CurveLaw, _surrogate_predict, s1_at
from scaling.fitting.curves import LrCurves
from scaling.fitting.errors import FitError


def s2_at(lr: np.ndarray, steps: np.ndarray, decay: float) -> np.ndarray:
    """Tissue et al.'s annealing area with momentum, from the lr's first peak."""
    from scipy.signal import lfilter

    fall = np.zeros_like(lr)
    fall[1:] = lr[:-1] - lr[1:]
    fall[: int(np.argmax(lr)) + 1] = 0.0
    momentum = lfilter([1.0], [1.0, -decay], fall)
    return np.cumsum(momentum)[steps]


class LRAnnealingLaw(CurveLaw):
    """The learning-rate annealing law (see the module's docstring)."""

    law = "lr-annealing"
    formula = "L0 + A·S1^(−α) − C·S2, S2 = Σ m_i, m_i = λ·m_(i−1) + (η_(i−1) − η_i)"
    parameters = ("L0", "A", "alpha", "C")
    positive_params = ("L0", "A", "alpha")

    def __init__(
        self,
        *,
        decay: Annotated[
            float, "lr-annealing: λ of the annealing momentum m_i = λ·m_(i−1) + Δη (0.999)."
        ] = 0.999,
        **common: Any,
    ):
        self.decay = decay
        super().__init__(**common)

    def _check(self) -> None:
        super()._check()
        if not 0 <= self.decay < 1:
            raise FitError("must be in [0, 1)", param="decay", value=self.decay)

    def _drops(self, curves: LrCurves) -> list[np.ndarray]:
        return [s2_at(c.lr, c.steps, float(self.decay)) for c in curves.curves]

    def _fit(self, curves: LrCurves) -> Fit:
        self._check_curves(curves)
        drops = self._drops(curves)
        unit = max(float(d.max()) for d in drops)
        params, objective = self._surrogate(curves, drops, unit if unit > 0 else 1.0)
        return self._result(params, objective, curves)

    def _refit(self, curves: LrCurves, found: Fit):
        terms = [
            {"loss": c.loss, "s1": s1_at(c.lr, c.steps), "drop": d}
            for c, d in zip(curves.curves, self._drops(curves), strict=True)
        ]
        params, _ = self._minimize(terms, _surrogate_predict, found.warm)
        return dict(zip(self.parameters, map(float, params), strict=True))

    def _curve(self, lr, steps, p) -> np.ndarray:
        s2 = s2_at(lr, steps, float(self.decay))
        return p["L0"] + p["A"] * s1_at(lr, steps) ** -p["alpha"] - p["C"] * s2
