"""Backtests: fit without the largest budget (or model), predict what was held out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scaling.fitting.base import Law
from scaling.fitting.errors import FitError
from scaling.fitting.isoflop import isoflop_optima
from scaling.fitting.points import Points
from scaling.results import BUDGET_TOLERANCE

HOLDOUTS = ("largest", "largest-params")


def backtest(
    points: Points, fit: Callable[[Points], Law], holdout: str = "largest"
) -> dict[str, Any]:
    """Fit on all but the held-out points; report the errors of the predictions for them:
    their losses (laws with a loss surface) and, for a held-out budget, its optimum.

    ``largest`` holds out every point that spent more compute than the second-largest budget
    (with the tolerance that joins a branch point to a budget): the largest budget's runs and
    those of their WSD branch points that lie beyond it, so that nothing fitted reaches the
    compute it is asked about. Without branches these are the largest budget's runs."""
    frame = points.frame
    if holdout == "largest":
        budgets = np.sort(frame["budget"].dropna().unique())
        if len(budgets) < 2:
            raise FitError("needs points at two budgets or more", param="holdout", value=holdout)
        if "flops" in frame and frame["flops"].notna().all():
            held_mask = frame["flops"] > budgets[-2] * 10**BUDGET_TOLERANCE
        else:
            held_mask = np.isclose(frame["budget"], budgets[-1])
        label = f"largest budget ({budgets[-1]:.3g} FLOPs)"
    elif holdout == "largest-params":
        held_mask = np.isclose(frame["params"], frame["params"].max())
        label = f"largest model ({frame['params'].max():.3g} parameters)"
    else:
        raise FitError(f"must be one of {', '.join(HOLDOUTS)}", param="holdout", value=holdout)
    train, held = frame[~held_mask], frame[held_mask]
    law = fit(points.subset(train, f"{points.source} (backtest)"))
    report: dict[str, Any] = {"holdout": label, "n_fit": len(train), "n_held_out": len(held)}
    if "loss" in law.answers:
        predicted = np.asarray(law.loss(law.sizes(held), held["tokens"]), float)
        error = (predicted - held["loss"].to_numpy()) / held["loss"].to_numpy()
        report["loss_mean_abs_rel_error"] = float(np.abs(error).mean())
        report["loss_max_abs_rel_error"] = float(np.abs(error).max())
    if holdout == "largest" and "optimum" in law.answers:
        observed = isoflop_optima(
            held[np.isclose(held["budget"], budgets[-1])], compute=points.compute
        )
        budget = float(budgets[-1])
        predicted_opt = law.optimum(budget)
        report["predicted_optimum"] = {k: predicted_opt[k] for k in ("params", "tokens", "loss")}
        if bool(observed["used"].iloc[0]):
            seen = observed.iloc[0]
            report["observed_optimum"] = {k: float(seen[k]) for k in ("params", "tokens", "loss")}
            report["params_opt_rel_error"] = predicted_opt["params"] / seen["params"] - 1
            report["loss_opt_rel_error"] = predicted_opt["loss"] / seen["loss"] - 1
        else:
            report["observed_optimum"] = f"none: {observed['reason'].iloc[0]}"
    return report
