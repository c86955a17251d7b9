"""Points without training: the end of a WSD cooldown branch predicted by a loss-curve law
(``curvelaws.CurveLaw``), as a row the point laws can use, marked ``predicted``.

A branch is built as the trainer builds one (``scaling.schedules``, ``training.trainer.
run_branch``): at a fraction p of a run's S steps it ends at E = round(p·S); its cooldown takes
the last ``cooldown_fraction`` of the branch, round(f·E) steps, from E − round(f·E) to E (the
stable phase until T = E·(1 − f), cooldown to T/(1 − f)), with the run's warm-up and cooldown
shape. p = 1 is the run's own end (its main WSD cooldown); p > 1 (up to MAX_FRACTION) the run
continued in its stable phase and cooled down at p·S, an extrapolation of the law. The law's
loss at the branch's last step (0-based E − 1; the metrics line of step E) is the point's
loss; ``loss_low`` and ``loss_high`` are its bootstrap interval at the law's ``level`` where
the law was bootstrapped.

A predicted row has the columns of a measured branch point (``results.load``): the run's own
columns, ``kind`` "branch", ``branch`` "predicted cooldown@<tokens>", the branch's tokens and
FLOPs (the run's FLOPs per token, from its metrics.jsonl), its ``budget`` by the rule of
measured branches (``results.branch_budget``), and ``predicted`` True. Measured points carry
``predicted`` False. ``points.prepare_points`` refuses a table with predicted rows unless told
to include them, and a law fitted on them says how many in ``details_["predicted_points"]``.

The law predicts the loss it was fitted on (a runs directory's ``train_loss``); a measured
point's loss is its eval loss, on another text: on the demo's runs eval sits 4-15% above the
train loss at the same step, by run. So a predicted point is put on its run's eval scale
(``eval_scale``, the default): its loss, low and high are multiplied by the run's ratio of
measured eval loss to the law's loss at the same step, the mean over the run's measured points
(its end and its measured branches), kept as ``eval_ratio``. A run with no measured eval loss
keeps the law's scale (``eval_ratio`` empty).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scaling import results
from scaling.config import RunConfig
from scaling.fitting.bootstrap import percentile_interval
from scaling.fitting.errors import FitError
from scaling.fitting.points import predicted_mask
from scaling.rundir import RunsDir
from scaling.schedules import lr_at, lr_schedule

BRANCHING = ("wsd", "constant")  # the schedules with a stable phase to branch from
MAX_FRACTION = 10.0  # a continuation to 10x the run's steps: further is not a prediction

if TYPE_CHECKING:
    import pandas as pd

    from scaling.fitting.curvelaws import CurveLaw


def branch_schedule(
    train, total_steps: int, fraction: float, cooldown: float | None = None, shape=None
) -> np.ndarray:
    """The lr of every step 0 … E − 1 of a WSD branch ending at fraction ``fraction`` of a run
    of ``total_steps`` (``train``: the run's TrainConfig), as the trainer runs it;
    ``cooldown`` and ``shape`` replace the run's ``cooldown_fraction`` and ``cooldown_shape``."""
    if not 0 < fraction <= MAX_FRACTION:
        raise FitError(
            f"a branch ends at a fraction of the run in (0, {MAX_FRACTION:g}] (above 1: the run "
            "continued in its stable phase, then cooled down)",
            param="fractions",
            value=fraction,
        )
    changes: dict[str, Any] = {"schedule": "wsd", "branches": ()}
    if cooldown is not None:
        if not 0 < cooldown <= 1:
            raise FitError("must be in (0, 1]", param="cooldown", value=cooldown)
        changes["cooldown_fraction"] = cooldown
    if shape is not None:
        changes["cooldown_shape"] = shape
    train = train.model_copy(update=changes)
    end = max(1, int(round(fraction * total_steps)))
    return np.array([lr_at(train, j, total_steps, end_step=end) for j in range(end)])


def predicted_loss(law: CurveLaw, lr: np.ndarray) -> tuple[float, float, float]:
    """(loss, low, high) at the last step of the schedule ``lr``; low and high NaN where the
    law was not bootstrapped."""
    last = np.array([len(lr) - 1])
    loss = float(law.curve(lr, last)[0])
    if not law.samples_:
        return loss, float("nan"), float("nan")
    draws = np.array([law.curve(lr, last, sample)[0] for sample in law.samples_])
    low, high = percentile_interval(draws, law.level)
    return loss, low, high


def eval_ratio(law: CurveLaw, train, total_steps: int, points: pd.DataFrame) -> float | None:
    """The mean over a run's measured points (``points``: its rows of ``results.load``, the
    end and each measured branch) of measured loss / the law's loss at the same step; None
    where none has a finite loss."""
    ratios = []
    for row in points.to_dict(orient="records"):
        measured_loss = row.get("loss")
        if measured_loss is None or not np.isfinite(measured_loss):
            continue
        if row.get("branch") == "final":  # the run's own schedule (a constant lr has no cooldown)
            lr = np.array(lr_schedule(train, total_steps))
        else:
            fraction = float(row["tokens"]) / (total_steps * train.batch_tokens)
            lr = branch_schedule(train, total_steps, min(1.0, fraction))
        ratios.append(measured_loss / float(law.curve(lr, np.array([len(lr) - 1]))[0]))
    return float(np.mean(ratios)) if ratios else None


def law_runs(law: CurveLaw, measured: pd.DataFrame, runs: str | Path) -> list[str]:
    """The runs of a runs directory a curve law speaks for: those of the model it was fitted
    on (the params of the runs among its curves)."""
    fitted = set(law.details_.get("curves", []))
    final = measured[measured["branch"] == "final"]
    sizes = set(final.loc[final["run_id"].isin(fitted), "params"])
    if not sizes:
        raise FitError(
            f"{runs}: the {law.law} law was fitted on curves "
            f"{', '.join(sorted(fitted)) or '(none recorded)'}, none of them a finished run "
            "here; predict branches for the runs of the model it was fitted on"
        )
    return final.loc[final["params"].isin(sizes), "run_id"].tolist()


def predicted_points(
    law: CurveLaw,
    runs: str | Path,
    fractions: list[float] | tuple[float, ...],
    cooldown: float | None = None,
    shape: str | None = None,
    run_ids: list[str] | None = None,
    measured: bool = True,
    eval_scale: bool = True,
) -> pd.DataFrame:
    """The runs directory's points (``results.load``, each ``predicted`` False, unless
    ``measured`` is False) and one predicted point per run and fraction: the end of a WSD
    cooldown branch at that fraction of the run (see the module's docstring). ``run_ids``:
    the runs to predict for (default: every finished WSD or constant-lr run of the model the
    law was fitted on, ``law_runs``; a cosine or linear run has no stable phase to branch
    from and is refused)."""
    import pandas as pd

    if "curve" not in law.answers:
        raise FitError(
            f"the {law.law} law gives no loss curve; predicted points come from a loss-curve law"
        )
    law._check_fitted()
    directory = RunsDir(Path(runs))
    table = results.load(runs)
    if table.empty:
        raise FitError(f"{runs}: no finished run yet")
    plan = directory.read_plan()
    budgets = results.planned_budgets(plan)
    chosen = run_ids if run_ids is not None else law_runs(law, table, runs)
    configs = {run_id: directory.run(run_id).read_config() for run_id in chosen}
    if run_ids is None:
        chosen = [r for r in chosen if configs[r].train.schedule in BRANCHING]
        if not chosen:
            raise FitError(
                f"{runs}: no WSD or constant-lr run of the model the {law.law} law was fitted "
                "on; a cooldown branch starts from a stable phase"
            )
    rows = []
    for run_id in chosen:
        final = table[(table["run_id"] == run_id) & (table["branch"] == "final")]
        if final.empty:
            raise FitError(f"{runs}: run {run_id} has not finished (no result.json)")
        base = final.iloc[0].to_dict()
        run = directory.run(run_id)
        config: RunConfig = configs[run_id]
        train = config.train
        if train.schedule not in BRANCHING:
            raise FitError(
                f"{runs}: run {run_id} has a {train.schedule} schedule; a cooldown branch "
                "starts from the stable phase of a WSD or constant-lr run"
            )
        total = train.tokens // train.batch_tokens
        line = run.last_metrics() or {}
        if not line.get("tokens"):
            raise FitError(f"{runs}: run {run_id} logged no tokens and FLOPs in metrics.jsonl")
        per_token = float(line["flops"]) / float(line["tokens"])
        own = table[table["run_id"] == run_id]
        ratio = eval_ratio(law, train, total, own) if eval_scale else None
        scale = 1.0 if ratio is None else ratio
        for fraction in fractions:
            lr = branch_schedule(train, total, float(fraction), cooldown, shape)
            loss, low, high = predicted_loss(law, lr)
            tokens = len(lr) * train.batch_tokens
            flops = tokens * per_token
            rows.append(
                {
                    **base,
                    "kind": "branch",
                    "branch": f"predicted cooldown@{tokens:.4g}",
                    "budget": results.branch_budget(flops, budgets),
                    "tokens": tokens,
                    "flops": flops,
                    "loss": loss * scale,
                    "loss_low": low * scale,
                    "loss_high": high * scale,
                    "final_train_loss": None,
                    "wall_s": None,
                    "predicted": True,
                    "fraction": float(fraction),
                    "cooldown_fraction": train.cooldown_fraction if cooldown is None else cooldown,
                    "predicted_by": law.law,
                    "eval_ratio": ratio,
                }
            )
    predicted = pd.DataFrame(rows)
    if not measured:
        return predicted
    return pd.concat([table.assign(predicted=False), predicted], ignore_index=True)


__all__ = [
    "branch_schedule",
    "eval_ratio",
    "law_runs",
    "predicted_loss",
    "predicted_mask",
    "predicted_points",
]
