"""Hyperparameter laws: the optimal learning rate and batch size as power laws of compute.

Per budget, the optimum is either the mean (in log space) of the near-optimal runs, those
within ``tolerance`` of the best loss (DeepSeek LLM, 2024), or the vertex of a parabola of loss
in log lr / log batch through the runs that share the best run's other hyperparameter. Then
η_opt(C) = k_lr·C^e_lr and B_opt(C) = k_batch·C^e_batch. The planner reads this fit file to set
a later sweep's learning rate and batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from scaling.fitting.base import Fit, Law
from scaling.fitting.errors import FitError, all_equal, one_of
from scaling.fitting.objectives import parabola_vertex
from scaling.fitting.powerlaw import evaluate, fit_power_law

if TYPE_CHECKING:
    import pandas as pd

HPARAMS = ("lr", "batch_tokens")
METHODS = ("near-optimal", "parabola")


class HparamsLaw(Law):
    """Parameters: ``method`` (near-optimal or parabola), ``tolerance`` (near-optimal: within
    this fraction of the best loss).

    What the points identify: a budget's optimum needs losses that differ (where all are
    equal every run is "near-optimal", and the mean would be the centre of the grid swept,
    not a finding), and the power laws need optima at 2 or more budgets; with fewer the fit
    is refused. A budget without an optimum is left out with its reason."""

    law = "hparams"
    formula = "lr_opt = k_lr * C^e_lr; batch_opt = k_batch * C^e_batch"
    answers = frozenset({"hyperparameters"})

    def __init__(
        self,
        *,
        method: Annotated[str, "Hparams optimum: near-optimal or parabola."] = "near-optimal",
        tolerance: Annotated[
            float, "Hparams near-optimal: the runs within this fraction of the best loss."
        ] = 0.005,
        **common: Any,
    ):
        self.method = method
        self.tolerance = tolerance
        super().__init__(**common)

    def _check(self) -> None:
        super()._check()
        one_of("method", self.method, METHODS)

    @classmethod
    def params_problem(cls, params: dict[str, float], fitted: bool) -> tuple[str, str] | None:
        """At least one law, lr (k_lr, e_lr) or batch size (k_batch, e_batch), whole."""
        pairs = [(f"k_{key}", f"e_{key}") for key in ("lr", "batch")]
        present = [pair for pair in pairs if pair[0] in params or pair[1] in params]
        if not present:
            return "", "no 'k_lr' and 'e_lr' nor 'k_batch' and 'e_batch'"
        for k, e in present:
            for name in (k, e):
                if name not in params:
                    return "", f"no {name!r} beside {(k if name == e else e)!r}"
            if params[k] <= 0:
                return k, f"{params[k]!r} must be positive"
        return None

    def hyperparameters(self, compute: float, sample=None) -> dict[str, float]:
        p = sample or self.params_
        out = {}
        if "k_lr" in p:
            out["lr"] = float(evaluate(p["k_lr"], p["e_lr"], compute))
        if "k_batch" in p:
            out["batch_tokens"] = float(evaluate(p["k_batch"], p["e_batch"], compute))
        return out

    def _fit(self, points) -> Fit:
        frame = points.frame
        names = [
            n for n in HPARAMS if n in frame and frame[n].notna().all() and frame[n].nunique() > 1
        ]
        if not names:
            raise FitError(
                f"{points.source}: the hparams law needs runs that vary 'lr' or "
                "'batch_tokens' (columns missing, empty or constant)"
            )
        optima = hparam_optima(frame, names, self.method, float(self.tolerance))
        params = _fit_laws(optima, names)
        if params is None:
            raise FitError(
                f"{points.source}: fewer than 2 budgets have an optimum for "
                f"{' and '.join(names)} ({len(optima)} budget(s) in the points)"
            )
        details = {
            "fitted": names,
            "budgets": optima.to_dict(orient="records"),
            "joint": _fit_joint(optima, names),
        }
        return Fit(params, None, details, warm=names)

    def _refit(self, points, found: Fit):
        names = found.warm  # the hyperparameters the fit found varied
        optima = hparam_optima(points.frame, names, self.method, float(self.tolerance))
        return _fit_laws(optima, names)


def _budget_optimum(group: pd.DataFrame, names: list[str], method: str, tolerance: float):
    best = group.iloc[int(np.argmin(group["loss"].to_numpy()))]
    out: dict[str, Any] = {
        "budget": float(best["budget"]),
        "best_loss": float(best["loss"]),
        "params": float(best["params"]),
        "tokens": float(best["tokens"]),
        "n_points": len(group),
    }
    if all_equal(group["loss"]):
        for name in names:
            out[name] = np.nan
            out[f"{name}_reason"] = "its losses are all equal (no optimum to find)"
        return out
    if method == "near-optimal":
        near = group[group["loss"] <= best["loss"] * (1 + tolerance)]
        out["n_near_optimal"] = len(near)
        for name in names:
            out[name] = float(np.exp(np.log(near[name]).mean()))
        return out
    for name in names:
        others = [o for o in names if o != name]
        line = group
        for other in others:  # vary this hyperparameter alone, the others at the best run's
            line = line[np.isclose(line[other], best[other])]
        vertex, _, reason = parabola_vertex(np.log(line[name].to_numpy()), line["loss"].to_numpy())
        out[name] = float(np.exp(vertex)) if vertex is not None else np.nan
        if reason:
            out[f"{name}_reason"] = reason
    return out


def hparam_optima(frame, names, method="near-optimal", tolerance=0.005) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        [_budget_optimum(g, names, method, tolerance) for _, g in frame.groupby("budget")]
    )


def _fit_laws(optima: pd.DataFrame, names: list[str]) -> dict[str, float] | None:
    params = {}
    for name in names:
        ok = optima[np.isfinite(optima[name])]
        if len(ok) < 2:
            return None
        key = "lr" if name == "lr" else "batch"
        params[f"k_{key}"], params[f"e_{key}"] = fit_power_law(ok["budget"], ok[name])
    return params


def fit_hparams(data, **parameters: Any) -> HparamsLaw:
    """``HparamsLaw(**parameters).fit(data)``: η_opt(C) and/or B_opt(C) from runs that vary
    ``lr`` and/or ``batch_tokens`` at several budgets."""
    return HparamsLaw(**parameters).fit(data)


def _fit_joint(optima: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """Optionally, each optimum as k·N^p·D^q (N, D of each budget's best run), where the
    optima span at least 3 budgets with independent N and D."""
    out: dict[str, Any] = {}
    for name in names:
        ok = optima[np.isfinite(optima[name])]
        design = np.column_stack([np.ones(len(ok)), np.log(ok["params"]), np.log(ok["tokens"])])
        if len(ok) < 3 or np.linalg.matrix_rank(design) < 3:
            out[name] = "needs 3 or more budgets whose best runs vary N and D independently"
            continue
        (log_k, p, q), *_ = np.linalg.lstsq(design, np.log(ok[name].to_numpy()), rcond=None)
        out[name] = {"k": float(np.exp(log_k)), "p_N": float(p), "q_D": float(q)}
    return out
