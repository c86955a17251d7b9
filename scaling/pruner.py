"""`scaling launch --prune`: successive halving over the runs of a sweep that compete.

The runs that compete are those of one model at one budget (one size, one FLOP count): the
learning rates and batch sizes of an hparams grid, or any axis a grid crosses a fixed grid
with. Every such run trains to the first rung (a fraction of its own steps) and pauses there,
checkpointed (``scaling train --pause-at``); then each run's final loss is forecast from its
curve so far, the runs of one batch size fitted together (``fitting.pruning``), and a run
whose forecast interval lies wholly above the best run's interval ends ``pruned``: its
result.json says why, its checkpoint stays, and only ``scaling launch --resume-pruned`` trains
it on. The rest go on to the next rung, and after the
last to their end. Every rung's forecasts and decisions are appended to RUNS/prune.jsonl.

Interrupted anywhere, launching again with ``--prune`` goes on: a run already at its rung
pauses at once, the forecasts are the same (seeded), and pruned runs stay pruned.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.config import ConfigError
from scaling.fileio import write_atomic
from scaling.fitting.curves import Curve, curve_of_run
from scaling.fitting.errors import FitError
from scaling.fitting.pruning import Forecast, forecast_group
from scaling.launching import state
from scaling.launching.local import LaunchOptions, LocalExecutor
from scaling.rundir import RunsDir

DEFAULT_RUNGS = (0.125, 0.25, 0.5)


@dataclass
class PruneOptions:
    rungs: tuple[float, ...] = DEFAULT_RUNGS  # fractions of each run's steps
    level: float = 0.8  # of the forecast intervals compared (a fit's default too)
    samples: int = 40  # bootstrap resamples per forecast

    def check(self) -> None:
        rungs = list(self.rungs)
        if not rungs or any(not 0 < r < 1 for r in rungs) or rungs != sorted(set(rungs)):
            raise ConfigError(
                "increasing fractions of a run's steps, each in (0, 1), e.g. 0.25,0.5",
                param="rungs",
                value=",".join(f"{r:g}" for r in rungs),
            )
        if not 0 < self.level < 1:
            raise ConfigError("a coverage in (0, 1)", param="level", value=self.level)


def competing_groups(plan: pd.DataFrame, selected: list[str]) -> list[list[str]]:
    """The selected runs by model and budget, groups of two or more (a run alone competes
    with nobody and trains straight to its end)."""
    chosen = plan[plan["run_id"].isin(selected)]
    budget = chosen["budget"] if "budget" in chosen else chosen["flops"]
    keys = list(zip(chosen["params"], budget.map(lambda b: f"{float(b):.3g}"), strict=True))
    groups: dict[Any, list[str]] = {}
    for key, run_id in zip(keys, chosen["run_id"], strict=True):
        groups.setdefault(key, []).append(run_id)
    return [ids for ids in groups.values() if len(ids) > 1]


class Pruner:
    """Trains the selected runs rung by rung with a ``LocalExecutor`` (its claims, retries
    and Ctrl-C), pruning between rungs; ``report(line)`` hears each decision."""

    def __init__(
        self,
        runs: Path,
        options: LaunchOptions,
        prune: PruneOptions,
        report: Callable[[str], None] = print,
    ):
        prune.check()
        self.runs, self.prune, self.report = RunsDir(runs), prune, report
        self.executor = LocalExecutor(runs, options)
        self.options = options
        self.plan = self.executor.plan.set_index("run_id")
        self.groups = competing_groups(self.executor.plan, self.executor.selected)

    def _state(self, run_id: str) -> str:
        return state.run_state(self.runs.run(run_id), self.options.stale_after)

    def _steps(self, run_id: str) -> int:
        return self.runs.run(run_id).read_config().train.steps

    def run(self, on_tick=None) -> dict[str, str]:
        """Train every selected run to its end or until pruned; {run_id: final state} of the
        runs this launcher trained."""
        in_groups = [run_id for group in self.groups for run_id in group]
        for number, rung in enumerate(self.prune.rungs, 1):
            live = [r for r in in_groups if self._state(r) in state.LAUNCHABLE]
            if not live:
                break
            pause = {r: max(1, round(rung * self._steps(r))) for r in live}
            self.report(
                f"rung {number} of {len(self.prune.rungs)}: {len(live)} run(s) to "
                f"{rung:.0%} of their steps"
            )
            self._train(live, pause, on_tick)
            for group in self.groups:
                self._decide(group, number, pause)
        # the last leg: every selected run not pruned, not in a group included, to its end
        self._train(list(self.executor.selected), {}, on_tick)
        return self.executor.finished

    def _train(self, run_ids: list[str], pause: dict[str, int], on_tick) -> None:
        executor = self.executor
        executor.queue = [r for r in executor.selected if r in run_ids]
        executor.pause_at = pause
        executor.run(on_tick=on_tick)

    def _decide(self, group: list[str], rung: int, pause: dict[str, int]) -> None:
        """Forecast every run of ``group`` that reached its rung (or finished), each family
        of runs (one batch size: one number of steps) fitted together, and prune those that
        cannot win. Where the forecast cannot be made, every run is kept."""
        families: dict[tuple[int, int], list[Curve]] = {}
        competing: set[str] = set()
        for run_id in group:
            status = self._state(run_id)
            reached = status == "done" or (
                status in state.LAUNCHABLE and self._paused_at(run_id) >= pause.get(run_id, 0)
            )
            # a run pruned at an earlier rung no longer competes, but its curve, cut where it
            # stopped, still teaches its family's shape
            curve = curve_of_run(self.runs.run(run_id)) if reached or status == "pruned" else None
            if curve is not None:
                train = self.runs.run(run_id).read_config().train
                families.setdefault((train.batch_tokens, len(curve.lr)), []).append(curve)
                if reached:
                    competing.add(run_id)
        if len(competing) < 2:
            return
        try:
            forecasts, decisions = forecast_group(
                list(families.values()), competing, self.prune.samples, self.prune.level
            )
        except FitError as err:
            self.report(f"no forecasts at rung {rung} ({err}); every run kept")
            return
        for forecast in forecasts:
            reason = decisions.get(forecast.run)
            if reason is not None and self._state(forecast.run) != "done":
                self._write_pruned(forecast, reason, rung)
            self._log({"rung": rung, **forecast.to_dict(), "pruned": reason is not None})

    def _paused_at(self, run_id: str) -> int:
        """The step of the run's last stop (its checkpoint's), 0 when it never stopped."""
        try:
            record = json.loads(self.runs.run(run_id).stopped_path.read_text())
        except (OSError, json.JSONDecodeError):
            return 0
        return int(record.get("step", 0)) if isinstance(record, dict) else 0

    def _write_pruned(self, forecast: Forecast, reason: str, rung: int) -> None:
        run_id = forecast.run
        planned = self.plan.loc[run_id]
        tokens = forecast.step * self.runs.run(run_id).read_config().train.batch_tokens
        per_token = float(planned["flops"]) / float(planned["tokens"])
        self.runs.run(run_id).write_result(
            {
                "run_id": run_id,
                "status": "pruned",
                "reason": f"pruned at rung {rung}: {reason}",
                "steps": forecast.step,
                "tokens": tokens,
                "flops": tokens * per_token,
                "forecast": forecast.to_dict(),
            }
        )
        self.report(f"{run_id}: pruned at step {forecast.step} ({reason})")

    def _log(self, record: dict[str, Any]) -> None:
        path = self.runs.path / "prune.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        lines.append(json.dumps({**record, "time": time.time()}))
        write_atomic(path, "\n".join(lines) + "\n")
