"""Loss to downstream accuracy, the two-step ladder (Bhagia et al., 2024): first the loss as
a function of N and D (the parametric law), then a sigmoid link from loss to the task metric:

    metric(L) = low + (high − low) / (1 + exp(k·(L − L0)))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from scaling.fitting.base import FitError, Law
from scaling.fitting.bootstrap import bootstrap
from scaling.fitting.parametric import ParametricLaw, fit_parametric
from scaling.fitting.points import Points, prepare_points


def sigmoid(loss, low, high, k, l0):
    return low + (high - low) / (1 + np.exp(k * (np.asarray(loss, float) - l0)))


class DownstreamLaw(Law):
    law = "downstream"
    formula = "metric = low + (high - low) / (1 + exp(k (L(N, D) - L0))), L(N, D) parametric"

    def _loss_law(self, p) -> ParametricLaw:
        return ParametricLaw(
            params={k: p[k] for k in ("E", "A", "B", "alpha", "beta")}, options=self.options
        )

    def metric(self, loss, p: dict[str, float] | None = None):
        p = p or self.params
        return sigmoid(loss, p["low"], p["high"], p["k"], p["L0"])

    def predict(self, compute=None, params=None, tokens=None) -> dict[str, Any]:
        def at(p):
            law = self._loss_law(p)
            if params is not None and tokens is not None:
                out = {"params": params, "tokens": tokens, "loss": float(law.loss(params, tokens))}
            else:
                out = law.predict(compute=compute, params=params, tokens=tokens)
                out.pop("intervals", None)
            out["metric"] = float(self.metric(out["loss"], p))
            return out

        return self._with_intervals(at(self.params), at)


def _fit_link(loss: np.ndarray, metric: np.ndarray) -> dict[str, float]:
    start = [metric.min(), metric.max(), 5.0, float(np.median(loss))]
    (low, high, k, l0), _ = curve_fit(sigmoid, loss, metric, p0=start, maxfev=20000)
    return {"low": float(low), "high": float(high), "k": float(k), "L0": float(l0)}


def fit_downstream(
    data: pd.DataFrame | Points,
    metric: str = "accuracy",
    bootstrap_samples: int = 0,
    bootstrap_unit: str = "points",
    seed: int = 0,
) -> DownstreamLaw:
    """Points need a task-metric column (``metric``, e.g. accuracy) beside params, tokens, loss."""
    points = data if isinstance(data, Points) else prepare_points(data)
    frame = points.frame
    if metric not in frame:
        raise FitError(
            f"{points.source}: no task-metric column {metric!r} (name it with --metric-col)"
        )
    values = pd.to_numeric(frame[metric], errors="coerce").to_numpy(float)
    if not np.isfinite(values).all():
        raise FitError(f"{points.source}: column {metric!r} has missing or non-numeric values")
    loss_law = fit_parametric(points)
    try:
        link = _fit_link(frame["loss"].to_numpy(float), values)
    except RuntimeError as err:
        raise FitError(f"{points.source}: the sigmoid link did not converge ({err})") from None

    def refit(sample: pd.DataFrame):
        try:
            return {
                **loss_law.params,
                **_fit_link(sample["loss"].to_numpy(float), sample[metric].to_numpy(float)),
            }
        except RuntimeError:
            return None

    samples, intervals = bootstrap(frame, refit, bootstrap_samples, bootstrap_unit, seed)
    return DownstreamLaw.fitted(
        points,
        {**loss_law.params, **link},
        (samples, intervals),
        objective=loss_law.objective,
        options={
            "metric": metric,
            "bootstrap": bootstrap_samples,
            "bootstrap_unit": bootstrap_unit,
            "seed": seed,
        },
    )
