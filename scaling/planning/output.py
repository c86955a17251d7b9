"""Writing a plan (plan.csv, sweep.toml, runs/<id>/config.json) and summarising it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from scaling.config import ConfigError, DataConfig
from scaling.devices import sustained_flops
from scaling.planning.plan import Plan
from scaling.planning.spec import SweepSpec
from scaling.rundir import RunsDir
from scaling.schedules import branch_cooldown_steps

TOKENS_PER_BYTE_GUESS = 0.3  # BPE on text or code, when the corpus is not prepared yet


def plan_frame(plan: Plan) -> pd.DataFrame:
    return pd.DataFrame([{k: v for k, v in row.items() if k != "config"} for row in plan.runs])


def corpus_tokens(data: DataConfig) -> tuple[float, str]:
    """Training tokens of the corpus: exact when prepared in the cache, else estimated."""
    from scaling.data import list_cache
    from scaling.data.corpus import corpus_fingerprint

    fingerprint, stats = corpus_fingerprint(data)
    for entry in list_cache():
        if (
            entry.meta.get("corpus_fingerprint") == fingerprint
            and entry.meta.get("config", {}).get("tokenizer") == data.tokenizer
        ):
            return float(entry.meta["train"]["tokens"]), "prepared"
    per_byte = 1.0 if data.tokenizer == "bytes" else TOKENS_PER_BYTE_GUESS
    return stats.bytes * (1 - data.val_fraction) * per_byte, "estimated"


def branch_cooldown_flops(run: dict[str, Any]) -> float:
    """The FLOPs a planned run's WSD branches add: their cooldowns' steps at the run's FLOPs
    per token."""
    train = run["config"].train
    steps = train.tokens // train.batch_tokens
    extra = branch_cooldown_steps(train, steps)
    return float(run["flops"]) * extra / steps if extra else 0.0


def estimated_seconds(frame: pd.DataFrame, device: str, mfu: float | None) -> pd.Series:
    """Each run's wall time on ``device`` (a key of ``scaling.devices.PLANNING_DEVICES``):
    its FLOPs over the rate a run of its size sustains there."""
    rates = frame["params"].apply(lambda params: sustained_flops(device, params, mfu))
    return frame["flops"] / rates


def summary(plan: Plan, spec: SweepSpec, device: str, mfu: float | None) -> dict[str, Any]:
    frame = plan_frame(plan)
    branch_flops = [branch_cooldown_flops(run) for run in plan.runs]
    spent = frame.assign(flops=frame["flops"] + branch_flops)  # a run's own and its branches'
    wall_s = float(estimated_seconds(spent, device, mfu).sum())
    largest = frame.loc[frame["params"].idxmax()]
    corpus, how = corpus_tokens(spec.data)
    return {
        "runs": len(frame),
        "budgets": sorted(frame.loc[frame["kind"] != "fixed", "budget"].unique().tolist()),
        # every FLOP the plan will spend: its runs' (plan.csv's flops) and their WSD branches'
        # cooldowns, which plan.csv's rows do not hold
        "total_flops": float(spent["flops"].sum()),
        "branch_flops": float(sum(branch_flops)),
        "largest_run": {
            "run_id": largest["run_id"],
            "params": int(largest["params"]),
            "tokens": int(largest["tokens"]),
            "flops": float(largest["flops"]),
        },
        "corpus_tokens": corpus,
        "corpus_tokens_are": how,
        "max_epochs": float(frame["tokens"].max()) / corpus,
        "runs_repeating_data": int((frame["tokens"] > corpus).sum()),
        "device": device,
        "assumed_flops_per_s": float(spent["flops"].sum()) / wall_s,  # on average over runs
        "estimated_wall_s": wall_s,
        "warnings": plan.warnings,
        "duplicates": plan.duplicates,
    }


def _toml_ready(value: Any) -> Any:
    """TOML has no null: drop Nones; tuples become lists."""
    if isinstance(value, dict):
        return {k: _toml_ready(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_toml_ready(v) for v in value]
    return value


def write_plan(plan: Plan, spec: SweepSpec, out: Path) -> dict[str, list[str]]:
    """Write the plan; keep every existing run directory. Returns which runs are new, kept
    (same run_id: its results untouched) and no longer in the spec (left on disk)."""
    import tomli_w

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; --out takes the folder to plan into")
    runs = RunsDir(out)
    previous = runs.run_ids() if runs.is_planned() else []
    new, kept = [], []
    for row in plan.runs:
        run = runs.run(row["run_id"])
        if run.has_config():
            kept.append(row["run_id"])
            continue
        run.write_config(row["config"])
        new.append(row["run_id"])
    resolved = spec.model_dump(mode="json")
    resolved["model"] = {**resolved["model"], **spec.architecture}  # what every run was given
    resolved["launch"] = spec.launch.model_dump(mode="json", exclude_unset=True)
    if not resolved["launch"]:  # as given: the executors fill in their own defaults
        del resolved["launch"]
    runs.write_sweep(tomli_w.dumps(_toml_ready(resolved)))
    runs.write_plan(plan_frame(plan))
    current = {row["run_id"] for row in plan.runs}
    return {"new": new, "kept": kept, "dropped": [r for r in previous if r not in current]}
