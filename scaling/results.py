"""A runs directory as pandas DataFrames (the contracts of DESIGN.md).

``load(RUNS)``: one row per finished run (its plan.csv columns, then status, loss, tokens,
flops, wall_s, error from result.json), and one more row per WSD cooldown branch recorded in
result.json under ``branches`` (a list of {tokens, flops, eval_loss}): the same model, its
own tokens and loss. ``load_curves(RUNS)``: every metrics.jsonl line, for the laws that need
loss curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from scaling.config import ConfigError


def _read_plan(runs: Path) -> pd.DataFrame:
    plan_path = runs / "plan.csv"
    if not plan_path.is_file():
        raise ConfigError(f"{plan_path}: no such file (is {runs} a runs directory?)")
    try:
        plan = pd.read_csv(plan_path, dtype={"run_id": str})
    except Exception as err:
        raise ConfigError(f"{plan_path}: cannot read ({err})") from None
    if "run_id" not in plan:
        raise ConfigError(f"{plan_path}: no column 'run_id'")
    return plan


def _read_result(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(result, dict) or "status" not in result:
        raise ConfigError(f"{path}: no 'status' (expected done, failed or diverged)")
    return result


def load(runs: str | Path, include_pending: bool = False) -> pd.DataFrame:
    """Final results of a runs directory, one row per run and per cooldown branch."""
    runs = Path(runs)
    plan = _read_plan(runs)
    rows = []
    for planned in plan.to_dict(orient="records"):
        result_path = runs / "runs" / planned["run_id"] / "result.json"
        if not result_path.is_file():
            if include_pending:
                rows.append({**planned, "status": "pending", "branch": "final"})
            continue
        result = _read_result(result_path)
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
            "wall_s": result.get("wall_s"),
            "unique_tokens": result.get("unique_tokens"),
            "epochs": result.get("epochs"),
            "error": result.get("error"),
        }
        rows.append({**base, "branch": "final"})
        for branch in result.get("branches", []):
            rows.append(
                {
                    **base,
                    "branch": f"cooldown@{branch['tokens']:.4g}",
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
    runs = Path(runs)
    plan = _read_plan(runs).set_index("run_id")
    frames = []
    for run_id in plan.index:
        path = runs / "runs" / run_id / "metrics.jsonl"
        if not path.is_file():
            continue
        records = []
        lines = path.read_text().splitlines(keepends=True)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines) and not line.endswith("\n"):
                    break  # the last line of a run killed mid-write
                raise ConfigError(
                    f"{path}:{number}: not a JSON object (corrupt metrics line)"
                ) from None
        frame = pd.DataFrame(records)
        if frame.empty or loss not in frame:
            continue
        frame = frame[frame[loss].notna()]
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "params": plan.loc[run_id, "params"],
                    "step": frame["step"],
                    "tokens": frame["tokens"],
                    "flops": frame["flops"],
                    "loss": frame[loss],
                }
            )
        )
    if not frames:
        raise ConfigError(f"{runs}: no run has logged '{loss}' in metrics.jsonl yet")
    return pd.concat(frames, ignore_index=True)
