"""`scaling launch --prune`: successive halving over the runs of a sweep that compete.

The runs that compete are those of one model at one budget (one size, one FLOP count): the
learning rates and batch sizes of an hparams grid, or any axis a grid crosses a fixed grid
with. Every such run trains to the first rung (a fraction of its own steps) and pauses there,
checkpointed (``scaling train --pause-at``); then each run's final loss is forecast from its
curve so far, the runs of one batch size fitted together (``fitting.pruning``), and a run
whose forecast interval lies wholly above the best run's interval ends ``pruned``: its
result.json says why, its checkpoint stays, and only ``scaling launch --resume-pruned`` trains
it on. The rest go on to the next rung, and after the last to their end. Every rung's
forecasts and decisions are appended to RUNS/prune.jsonl.

Interrupted anywhere, launching again with ``--prune`` goes on: the runs already at a rung are
not started again, a rung decided (prune.jsonl) is not decided again, and pruned runs stay
pruned.
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
from scaling.fitting.curves import Curve, curve_of_run
from scaling.fitting.pruning import Forecast, forecast_group
from scaling.launching import state
from scaling.launching.local import LaunchOptions, LocalExecutor
from scaling.rundir import RunsDir

DEFAULT_RUNGS = (0.125, 0.25, 0.5, 0.75)


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
    grid = chosen["grid"] if "grid" in chosen else [""] * len(chosen)
    # one grid's runs only: an IsoFLOP grid's centre run at the same size and budget as an
    # hparams grid's is a point of its own profile, not a competitor
    keys = list(zip(grid, chosen["params"], budget.map(lambda b: f"{float(b):.3g}"), strict=True))
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
        for run_id in (r for group in self.groups for r in group):
            run = self.runs.run(run_id)
            every = run.read_config().train.log_interval
            if every != 1:
                raise ConfigError(
                    f"{run.config_path}: train.log_interval is {every}; --prune forecasts from "
                    "every step's loss: plan the sweep with train.log_interval = 1"
                )
        self.decided = self._decided()

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
            behind = [r for r in live if self.runs.run(r).stopped_step() < pause[r]]
            self.report(
                f"rung {number} of {len(self.prune.rungs)}: {len(behind)} run(s) to "
                f"{rung:.0%} of their steps"
            )
            if behind:  # after an interruption, the runs already there are not started again
                self._train(behind, pause, on_tick)
            for group in self.groups:
                self._decide(group, number, rung, pause)
        # the last leg: every selected run not pruned, not in a group included, to its end
        self._train(list(self.executor.selected), {}, on_tick)
        return self.executor.finished

    def _train(self, run_ids: list[str], pause: dict[str, int], on_tick) -> None:
        executor = self.executor
        executor.queue = [r for r in executor.selected if r in run_ids]
        executor.pause_at = pause
        executor.run(on_tick=on_tick)

    def _decided(self) -> set[tuple[float, str]]:
        """(rung fraction, run) of every decision in prune.jsonl: a relaunch does not decide
        a rung again with curves that have since gone past it."""
        path = self.runs.prune_log
        if not path.is_file():
            return set()
        decided = set()
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                decided.add((float(record["fraction"]), str(record["run"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut by a crash, or an older format: decide again
        return decided

    def _decide(self, group: list[str], rung: int, fraction: float, pause: dict[str, int]) -> None:
        """Forecast every run of ``group`` that reached its rung (or finished), each family
        of runs (one batch size: one number of steps) fitted together, and prune those that
        cannot win. Where the forecast cannot be made, every run is kept."""
        families: dict[tuple[int, int], list[Curve]] = {}
        competing: set[str] = set()
        for run_id in group:
            status = self._state(run_id)
            reached = status == "done" or (
                status in state.LAUNCHABLE
                and self.runs.run(run_id).stopped_step() >= pause.get(run_id, 0)
            )
            # a run pruned at an earlier rung no longer competes, but its curve, cut where it
            # stopped, still teaches its family's shape
            curve = curve_of_run(self.runs.run(run_id)) if reached or status == "pruned" else None
            if curve is not None:
                train = self.runs.run(run_id).read_config().train
                families.setdefault((train.batch_tokens, len(curve.lr)), []).append(curve)
                if reached:
                    competing.add(run_id)
        if len(competing) < 2 or all((fraction, r) in self.decided for r in competing):
            return
        forecasts, decisions, failed = forecast_group(
            list(families.values()), competing, self.prune.samples, self.prune.level
        )
        for why in failed:
            self.report(f"no forecast at rung {rung} ({why}); those runs kept")
        for forecast in forecasts:
            reason = decisions.get(forecast.run)
            pruned = reason is not None and self._prune(forecast, reason, rung)
            self._log({"rung": rung, "fraction": fraction, **forecast.to_dict(), "pruned": pruned})
            self.decided.add((fraction, forecast.run))

    def _prune(self, forecast: Forecast, reason: str, rung: int) -> bool:
        """Write the run's pruned result under its claim (a launcher that took the paused run
        meanwhile keeps it, and it is not pruned); True when it was pruned."""
        run_id, run = forecast.run, self.runs.run(forecast.run)
        if self._state(run_id) == "done":  # finished before this launch: it stays done
            return False
        if not state.try_claim(run, self.options.stale_after):
            self.report(f"{run_id}: another launcher holds it; not pruned")
            return False
        try:
            planned = self.plan.loc[run_id]
            tokens = forecast.step * run.read_config().train.batch_tokens
            per_token = float(planned["flops"]) / float(planned["tokens"])
            run.write_result(
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
        finally:
            state.release(run)
        self.report(f"{run_id}: pruned at step {forecast.step} ({reason})")
        return True

    def _log(self, record: dict[str, Any]) -> None:
        # appended, as metrics.jsonl is: a line cut by a crash is skipped when read back
        with self.runs.prune_log.open("a") as log:
            log.write(json.dumps({**record, "time": time.time()}) + "\n")
