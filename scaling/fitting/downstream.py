"""Loss to downstream accuracy, the two-step ladder (Bhagia et al., 2024): first the loss as
a function of N and D (the parametric law), then a sigmoid link from loss to the task metric:

    metric(L) = low + (high − low) / (1 + exp(k·(L − L0)))
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from scaling.fitting.base import FitError, Law, require_varying
from scaling.fitting.parametric import ParametricLaw


def sigmoid(loss, low, high, k, l0):
    return low + (high - low) / (1 + np.exp(k * (np.asarray(loss, float) - l0)))


class DownstreamLaw(Law):
    """Points need a task-metric column (setting ``metric``, e.g. accuracy) beside params,
    tokens and loss.

    What the points identify, else the fit is refused: what the parametric law needs for
    the loss, and metric values that differ (the sigmoid's four parameters are anything
    through a flat line)."""

    law = "downstream"
    formula = "metric = low + (high - low) / (1 + exp(k (L(N, D) - L0))), L(N, D) parametric"
    defaults: ClassVar[dict[str, Any]] = {"metric": "accuracy", "flops_per_param_token": None}
    answers = frozenset({"loss", "optimum"})
    parameters = (*ParametricLaw.parameters, "low", "high", "k", "L0")
    positive_params = ParametricLaw.positive_params
    positive_in_fit = ParametricLaw.positive_in_fit

    def _loss_law(self, sample=None) -> ParametricLaw:
        p = sample or self.params
        return ParametricLaw.from_params(
            {k: p[k] for k in ("E", "A", "B", "alpha", "beta")},
            flops_per_param_token=self.settings["flops_per_param_token"],
        )

    def metric(self, loss, sample=None):
        p = sample or self.params
        return sigmoid(loss, p["low"], p["high"], p["k"], p["L0"])

    def loss(self, params, tokens, sample=None, **covariates):
        return self._loss_law(sample).loss(params, tokens)

    def optimum(self, compute, sample=None):
        return self._loss_law(sample).optimum(compute)

    def compute_for(self, sample=None, params=None, tokens=None):
        return self._loss_law(sample).compute_for(params=params, tokens=tokens)

    def _answer(self, sample, compute, params, tokens, covariates):
        out = super()._answer(sample, compute, params, tokens, covariates)
        out["metric"] = float(self.metric(out["loss"], sample))
        return out

    def _fit(self, points):
        frame = points.frame
        metric = self.settings["metric"]
        if metric not in frame:
            raise FitError(
                f"{points.source}: no task-metric column {metric!r} (the setting metric names it)"
            )
        values = pd.to_numeric(frame[metric], errors="coerce").to_numpy(float)
        if not np.isfinite(values).all():
            raise FitError(f"{points.source}: column {metric!r} has missing or non-numeric values")
        require_varying(values, points.source, self.law, what=f"{metric} values")
        loss_law = ParametricLaw(flops_per_param_token=self.settings["flops_per_param_token"])
        loss_law.fit(points)
        self.settings["flops_per_param_token"] = loss_law.settings["flops_per_param_token"]
        try:
            link = _fit_link(frame["loss"].to_numpy(float), values)
        except RuntimeError as err:
            raise FitError(f"{points.source}: the sigmoid link did not converge ({err})") from None
        self._loss_params = loss_law.params
        return {**loss_law.params, **link}, loss_law.objective, {}

    def _refit(self, frame, params):
        metric = self.settings["metric"]
        try:
            link = _fit_link(frame["loss"].to_numpy(float), frame[metric].to_numpy(float))
        except RuntimeError:
            return None
        return {**self._loss_params, **link}


def _fit_link(loss: np.ndarray, metric: np.ndarray) -> dict[str, float]:
    start = [metric.min(), metric.max(), 5.0, float(np.median(loss))]
    (low, high, k, l0), _ = curve_fit(sigmoid, loss, metric, p0=start, maxfev=20000)
    return {"low": float(low), "high": float(high), "k": float(k), "L0": float(l0)}


def fit_downstream(data, **settings: Any) -> DownstreamLaw:
    """``DownstreamLaw(**settings).fit(data)``."""
    return DownstreamLaw(**settings).fit(data)
