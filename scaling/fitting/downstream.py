"""Loss to downstream accuracy, the two-step ladder (Bhagia et al., 2024): first the loss as
a function of N and D (the parametric law), then a sigmoid link from loss to the task metric:

    metric(L) = low + (high − low) / (1 + exp(k·(L − L0)))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from scaling.fitting.base import Fit, Law
from scaling.fitting.errors import FitError, require_varying
from scaling.fitting.parametric import ParametricLaw

if TYPE_CHECKING:
    pass


def sigmoid(loss, low, high, k, l0):
    return low + (high - low) / (1 + np.exp(k * (np.asarray(loss, float) - l0)))


class DownstreamLaw(Law):
    """Points need a task-metric column (parameter ``metric``, e.g. accuracy) beside params,
    tokens and loss. Every answer adds the metric there (``link``).

    What the points identify, else the fit is refused: what the parametric law needs for
    the loss, and metric values that differ (the sigmoid's four parameters are anything
    through a flat line)."""

    law = "downstream"
    formula = "metric = low + (high - low) / (1 + exp(k (L(N, D) - L0))), L(N, D) parametric"
    answers = frozenset({"loss", "optimum"})
    parameters = (*ParametricLaw.parameters, "low", "high", "k", "L0")
    positive_params = ParametricLaw.positive_params
    positive_in_fit = ParametricLaw.positive_in_fit

    def __init__(
        self,
        *,
        metric: Annotated[str, "The task metric's column (the downstream law)."] = "accuracy",
        **common: Any,
    ):
        self.metric = metric
        super().__init__(**common)

    def _loss_law(self, sample=None) -> ParametricLaw:
        p = sample or self.params_
        return ParametricLaw.from_params(
            {k: p[k] for k in ("E", "A", "B", "alpha", "beta")}, compute=self.compute_
        )

    def link(self, loss, sample=None):
        """The task metric at ``loss``: the fitted sigmoid."""
        p = sample or self.params_
        return sigmoid(loss, p["low"], p["high"], p["k"], p["L0"])

    def loss(self, params, tokens, sample=None, **covariates):
        return self._loss_law(sample).loss(params, tokens)

    def at(self, params, tokens, sample=None, **covariates) -> dict:
        out = super().at(params, tokens, sample, **covariates)
        out["metric"] = float(self.link(out["loss"], sample))
        return out

    def optimum(self, compute, sample=None):
        out = self._loss_law(sample).optimum(compute)
        out["metric"] = float(self.link(out["loss"], sample))
        return out

    def compute_for(self, sample=None, params=None, tokens=None):
        return self._loss_law(sample).compute_for(params=params, tokens=tokens)

    def _fit(self, points) -> Fit:
        frame = points.frame
        if self.metric not in frame:
            raise FitError(
                f"{points.source}: no task-metric column {self.metric!r} (the parameter metric "
                "names it)"
            )
        import pandas as pd

        values = pd.to_numeric(frame[self.metric], errors="coerce").to_numpy(float)
        if not np.isfinite(values).all():
            raise FitError(
                f"{points.source}: column {self.metric!r} has missing or non-numeric values"
            )
        require_varying(values, points.source, self.law, what=f"{self.metric} values")
        loss_law = ParametricLaw().fit(points)
        try:
            link = _fit_link(frame["loss"].to_numpy(float), values)
        except RuntimeError as err:
            raise FitError(f"{points.source}: the sigmoid link did not converge ({err})") from None
        # the bootstrap refits the link alone, on the loss law fitted here
        return Fit({**loss_law.params_, **link}, loss_law.objective_, {}, loss_law.params_)

    def _refit(self, points, found: Fit):
        frame = points.frame
        try:
            link = _fit_link(frame["loss"].to_numpy(float), frame[self.metric].to_numpy(float))
        except RuntimeError:
            return None
        return {**found.warm, **link}


def _fit_link(loss: np.ndarray, metric: np.ndarray) -> dict[str, float]:
    from scipy.optimize import curve_fit  # scipy loads when a law fits, not on import

    start = [metric.min(), metric.max(), 5.0, float(np.median(loss))]
    (low, high, k, l0), _ = curve_fit(sigmoid, loss, metric, p0=start, maxfev=20000)
    return {"low": float(low), "high": float(high), "k": float(k), "L0": float(l0)}


def fit_downstream(data, **parameters: Any) -> DownstreamLaw:
    """``DownstreamLaw(**parameters).fit(data)``."""
    return DownstreamLaw(**parameters).fit(data)
