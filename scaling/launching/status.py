"""Where a grid stands: one row per run from its files, and the table humans read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scaling.launching import state
from scaling.launching.slurm_queue import overlay_queue
from scaling.rundir import RunsDir


def status_frame(runs: Path, stale_after: float = state.DEFAULT_STALE_AFTER) -> pd.DataFrame:
    directory = RunsDir(runs)
    plan = directory.read_plan()
    states = {r: state.run_state(directory.run(r), stale_after) for r in plan["run_id"]}
    states = overlay_queue(directory, states)  # asks Slurm only when it has some of the runs
    rows = []
    for planned in plan.itertuples():
        run = directory.run(planned.run_id)
        status = states[planned.run_id]
        row = {
            "run_id": planned.run_id,
            "budget": planned.budget,
            "params": planned.params,
            "state": status,
            "tokens_total": planned.tokens,
            "tokens_done": 0,
            "loss": None,
            "tokens_per_s": None,
            "wall_s": None,
            "eta_s": None,
        }
        result = run.read_result()
        if result is not None:
            row.update(
                tokens_done=result.get("tokens", 0),
                loss=result.get("final_eval_loss"),
                wall_s=result.get("wall_s"),
                error=result.get("error") or result.get("reason"),
            )
        else:
            row["error"] = run.stopped_reason()  # why it stopped short, if it did
            last = run.last_metrics()
            if last:
                row.update(
                    tokens_done=last.get("tokens", 0),
                    loss=last.get("eval_loss", last.get("train_loss")),
                    tokens_per_s=last.get("tokens_per_s"),
                    wall_s=last.get("time_s"),
                )
                if status == "running" and last.get("tokens_per_s"):
                    row["eta_s"] = (planned.tokens - row["tokens_done"]) / last["tokens_per_s"]
        rows.append(row)
    return pd.DataFrame(rows)
