"""A runs directory as pandas DataFrames: the points every fit starts from.

``load(RUNS)``: one row per finished run (its plan.csv columns, then status, loss, tokens,
flops, wall_s, error from result.json), and one more row per WSD cooldown branch recorded in
result.json under ``branches`` (each {tokens, flops, eval_loss}), each with the sweep's ``size``
(what its N counts, from sweep.toml) and its ``flop_formula`` (how its FLOPs were counted, from
result.json). ``load_curves(RUNS)``: every
metrics.jsonl line, for the laws that need loss curves. Files are read through
``scaling.rundir``, which names any that is missing or corrupt.

Compute: every row carries the FLOPs its run actually spent, as the trainer counted them with
the sweep's own ``flop_formula`` (``6N``, ``chinchilla``, ``exact``), never re-derived as 6ND.

WSD branch points (Hägele et al., 2024) are trained to completion at a fraction of their
parent's tokens, so they carry their own tokens and FLOPs, not the parent's. The rule by which
one joins an IsoFLOP profile: its ``budget`` is the planned budget within
``BUDGET_TOLERANCE`` (in log10) of its own FLOPs, the same tolerance that groups points
without a budget (``fitting.points.group_budgets``); otherwise its budget is empty (NaN), so it
sits on no IsoFLOP profile (the sizes of a grid's runs were chosen around their own budget's
optimum, and the branches of one budget at one fraction would form a profile off-centre) and
serves the laws that use every point (parametric, Kaplan, data-constrained) only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from scaling.config import ConfigError
from scaling.rundir import RunsDir

if TYPE_CHECKING:
    import pandas as pd

# Points whose FLOPs lie within this much (log10) of a budget are on its IsoFLOP profile: a
# branch point joins its planned budget so, and points without a budget group so.
BUDGET_TOLERANCE = 0.05


def branch_budget(flops: float, budgets: list[float]) -> float:
    """The planned budget a branch point of ``flops`` joins, or NaN: none (see above)."""
    for budget in budgets:
        if budget > 0 and abs(math.log10(flops / budget)) <= BUDGET_TOLERANCE:
            return float(budget)
    return math.nan


def planned_budgets(plan: pd.DataFrame) -> list[float]:
    """The budgets of a plan's runs that have one (a fixed grid's have none; a plan.csv
    written by hand may have no ``kind`` or ``budget`` column)."""
    if "budget" not in plan:
        return []
    planned = plan if "kind" not in plan else plan[plan["kind"] != "fixed"]
    return sorted(float(b) for b in planned["budget"].dropna().unique())


def load(runs: str | Path, include_pending: bool = False) -> pd.DataFrame:
    """Final results of a runs directory, one row per run and per cooldown branch."""
    import pandas as pd  # pandas loads when a table is read, not on import

    directory = RunsDir(Path(runs))
    plan = directory.read_plan()
    sweep = directory.read_sweep().get("sweep", {})
    # how the sweep counted: its points carry it to the laws (``fitting.compute``)
    size = sweep.get("size", "total")
    formula = sweep.get("flop_formula")  # a result.json that does not say its own
    budgets = planned_budgets(plan)
    rows = []
    for planned in plan.to_dict(orient="records"):
        run = directory.run(planned["run_id"])
        result = run.read_result()
        if result is None:
            if include_pending:
                rows.append({**planned, "status": "pending", "branch": "final"})
            continue
        if run.has_config():  # the planned size is this run's only if it trained the plan
            run.read_planned_config(planned["run_id"])
        loss = result.get("final_eval_loss")
        if loss is None:
            loss = result.get("final_train_loss")
        base = {
            **planned,
            "status": result["status"],
            "loss": loss,
            "final_train_loss": result.get("final_train_loss"),
            "tokens": result.get("tokens", planned.get("tokens")),
            "flops": result.get("flops", planned.get("flops")),
            "flop_formula": result.get("flop_formula", planned.get("flop_formula", formula)),
            "wall_s": result.get("wall_s"),
            "unique_tokens": result.get("unique_tokens"),
            "epochs": result.get("epochs"),
            "error": result.get("error"),
            "size": size,
        }
        rows.append({**base, "branch": "final"})
        for branch in result.get("branches", []):
            rows.append(
                {
                    **base,
                    "kind": "branch",
                    "branch": f"cooldown@{branch['tokens']:.4g}",
                    "budget": branch_budget(branch["flops"], budgets),
                    "tokens": branch["tokens"],
                    "flops": branch["flops"],
                    "loss": branch["eval_loss"],
                    "final_train_loss": None,
                }
            )
    return pd.DataFrame(rows)


def load_curves(runs: str | Path, loss: str = "train_loss") -> pd.DataFrame:
    """Every logged step of every run: run_id, params, step, tokens, flops, loss (``loss``:
    which metric, train_loss by default, eval_loss for the evaluated steps only)."""
    import pandas as pd

    directory = RunsDir(Path(runs))
    plan = directory.read_plan().set_index("run_id")
    frames = []
    for run_id in plan.index:
        frame = pd.DataFrame(directory.run(run_id).read_metrics())
        if frame.empty or loss not in frame:
            continue
        frame = frame[frame[loss].notna()]
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "params": plan.loc[run_id, "params"],
                    "step": frame["step"],
                    "tokens": frame.get("tokens", np.nan),
                    "flops": frame.get("flops", np.nan),  # a line written by hand may lack it
                    "loss": frame[loss].astype(float),
                }
            )
        )
    if not frames:
        raise ConfigError(f"{runs}: no run has logged '{loss}' in metrics.jsonl yet")
    curves = pd.concat(frames, ignore_index=True)
    return curves[np.isfinite(curves["loss"])]
