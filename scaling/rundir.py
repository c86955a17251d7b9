"""The runs directory: the one module that knows its layout and reads and writes its files.

```
RUNS/sweep.toml                 the spec, resolved            (planning writes)
RUNS/plan.csv                   one row per run               (planning writes)
RUNS/runs/<run_id>/             one run (``RunDir``)
    config.json                 its resolved RunConfig        (planning, training write)
    metrics.jsonl               one JSON object per logged step, appended (training)
    result.json                 done | failed | diverged, written once at the end
    checkpoint/                 the latest complete checkpoint (training.checkpoint)
    claim.json                  who trains it now; the heartbeat is its mtime (launching)
    slurm_job.json              its Slurm job: id, and "cancelled" after a scancel (launching)
    train.log, export/          the child's output; the final weights
RUNS/fits/<law>.json            fit files (fitting.base owns their format)
RUNS/figures/                   plots
RUNS/summary.json, holdout/     what `scaling demo` adds
```

Every other module reaches these files through ``RunsDir`` and ``RunDir``. A file that is
missing where it must exist, or corrupt, raises ``ConfigError`` naming it, one way everywhere;
the only tolerance is for the last line of metrics.jsonl, which a killed run may leave cut.
Writes others read are atomic and durable (``fileio.write_atomic``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaling.config import ConfigError
from scaling.fileio import write_atomic, write_json_atomic

RESULT_STATUSES = ("done", "failed", "diverged")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PLAN_COLUMNS = ("run_id",)


def check_run_id(run_id: Any, where: str) -> str:
    """A run id that names a folder inside ``runs/`` and nothing else (no ``..``, no ``/``)."""
    text = str(run_id)
    if not RUN_ID.fullmatch(text) or ".." in text:
        raise ConfigError(
            f"{where}: run_id {text!r} is not a run id (letters, digits, '_', '-', '.')"
        )
    return text


@dataclass(frozen=True)
class RunDir:
    """One run's folder: inside a runs directory, or wherever `scaling train --out` put it."""

    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def result_path(self) -> Path:
        return self.path / "result.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def claim_path(self) -> Path:
        return self.path / "claim.json"

    @property
    def slurm_job_path(self) -> Path:
        return self.path / "slurm_job.json"

    @property
    def stopped_path(self) -> Path:
        return self.path / "stopped.json"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def export(self) -> Path:
        return self.path / "export"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    # -- config.json ---------------------------------------------------------------------------
    def has_config(self) -> bool:
        return self.config_path.is_file()

    def read_config(self):
        from scaling.config import load_run_config

        return load_run_config(self.config_path)

    def write_config(self, config) -> None:
        write_json_atomic(self.config_path, config.model_dump(mode="json"))

    # -- result.json ---------------------------------------------------------------------------
    def read_result(self) -> dict[str, Any] | None:
        """The result, or None while the run has none. Corrupt: ConfigError naming the file
        (it is never half-written: the trainer writes it atomically)."""
        path = self.result_path
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read ({err})") from None
        try:
            result = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{path}: not valid JSON ({err}); delete it to train the run again"
            ) from None
        if not isinstance(result, dict) or result.get("status") not in RESULT_STATUSES:
            found = result.get("status") if isinstance(result, dict) else type(result).__name__
            raise ConfigError(
                f"{path}: status {found!r}; must be one of {', '.join(RESULT_STATUSES)} "
                "(delete the file to train the run again)"
            )
        return result

    def write_result(self, result: dict[str, Any]) -> None:
        write_json_atomic(self.result_path, result)

    def set_result_aside(self, label: str) -> Path:
        """Keep an earlier attempt's result as result.<label>.json (before a retry)."""
        target = self.result_path.with_name(f"result.{label}.json")
        self.result_path.rename(target)
        return target

    # -- slurm_job.json ------------------------------------------------------------------------
    def read_slurm_job(self) -> dict[str, Any] | None:
        """The Slurm job that last took this run (``job_id``, ``state``: submitted or
        cancelled), or None when Slurm never had it. Corrupt: ConfigError naming the file."""
        path = self.slurm_job_path
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: cannot read ({err}); delete it to submit again") from None
        if not isinstance(record, dict) or not isinstance(record.get("job_id"), str):
            raise ConfigError(f"{path}: needs a string job_id; delete it to submit again")
        return record

    def write_slurm_job(self, job_id: str, state: str) -> None:
        write_json_atomic(self.slurm_job_path, {"job_id": job_id, "state": state})

    def forget_slurm_job(self) -> None:
        self.slurm_job_path.unlink(missing_ok=True)

    # -- stopped.json --------------------------------------------------------------------------
    def write_stopped(self, step: int, reason: str) -> None:
        """The trainer stopped on a signal with its checkpoint at ``step``: how a launcher
        knows, where torchrun or ``accelerate launch`` turns the trainer's exit code 130 into
        1."""
        write_json_atomic(self.stopped_path, {"step": step, "reason": reason})

    def was_stopped(self) -> bool:
        return self.stopped_path.is_file()

    def clear_stopped(self) -> None:
        """Before a launcher starts the run's trainer: only that start may leave the mark."""
        self.stopped_path.unlink(missing_ok=True)

    # -- metrics.jsonl -------------------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """Every logged step. A cut last line (a run killed mid-write) is skipped; a corrupt
        line anywhere else is an error naming file and line."""
        path = self.metrics_path
        try:
            lines = path.read_text().splitlines(keepends=True)
        except FileNotFoundError:
            return []
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
                if number == len(lines) and not line.endswith("\n"):
                    break
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{number}: not a JSON object (corrupt metrics line)")
            records.append(record)
        return records

    def last_metrics(self) -> dict[str, Any]:
        """The last complete line of metrics.jsonl (only the file's tail is read), or {}."""
        try:
            with self.metrics_path.open("rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                handle.seek(max(0, size - 8192))
                tail = handle.read().decode(errors="replace")
        except FileNotFoundError:
            return {}
        for line in reversed(tail.splitlines()):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                return record
        return {}

    def start_metrics(self, resume_step: int | None) -> None:
        """A fresh metrics.jsonl, or on resume the lines up to ``resume_step`` (those the
        checkpoint covers, written anew atomically), so a resumed run's file reads as if it had
        never stopped. A run that starts over (no checkpoint) keeps the lines an earlier start
        logged as metrics.jsonl.restarted: nothing it wrote is truncated silently."""
        logged = self.read_metrics_prefix()
        if resume_step is None and logged:
            self.metrics_path.replace(self.metrics_path.with_name("metrics.jsonl.restarted"))
        covered = [r for r in logged if resume_step is not None and r.get("step", 0) <= resume_step]
        kept = [json.dumps(record) for record in covered]
        write_atomic(self.metrics_path, "".join(f"{line}\n" for line in kept))

    def read_metrics_prefix(self) -> list[dict[str, Any]]:
        """The lines before the first unreadable one (what survives any crash)."""
        try:
            lines = self.metrics_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(record, dict):
                break
            records.append(record)
        return records

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


@dataclass(frozen=True)
class RunsDir:
    """A sweep's directory (RUNS)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def plan_path(self) -> Path:
        return self.path / "plan.csv"

    @property
    def sweep_path(self) -> Path:
        return self.path / "sweep.toml"

    @property
    def fits(self) -> Path:
        return self.path / "fits"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def slurm_logs(self) -> Path:
        return self.path / "slurm"

    def run(self, run_id: str) -> RunDir:
        return RunDir(self.path / "runs" / check_run_id(run_id, str(self.plan_path)))

    def holdout(self, run_id: str) -> RunDir:
        """A run outside the plan, never fitted: the demo's check of a prediction."""
        return RunDir(self.path / "holdout" / check_run_id(run_id, str(self.path / "holdout")))

    def is_planned(self) -> bool:
        return self.plan_path.is_file()

    # -- plan.csv and sweep.toml ---------------------------------------------------------------
    def read_plan(self):
        """plan.csv as a DataFrame, its run ids checked to be folder names inside runs/."""
        import pandas as pd

        path = self.plan_path
        if not path.is_file():
            raise ConfigError(
                f"{path}: no such file (plan the sweep first: scaling plan SPEC --out {self.path})"
            )
        try:
            plan = pd.read_csv(path, dtype={"run_id": str})
        except Exception as err:  # pandas raises many kinds; the user needs the file and cause
            raise ConfigError(f"{path}: cannot read ({err})") from None
        missing = [c for c in PLAN_COLUMNS if c not in plan]
        if missing:
            raise ConfigError(f"{path}: no column {missing[0]!r}")
        for run_id in plan["run_id"]:
            check_run_id(run_id, str(path))
        return plan

    def run_ids(self) -> list[str]:
        return self.read_plan()["run_id"].tolist()

    def write_plan(self, frame) -> None:
        write_atomic(self.plan_path, frame.to_csv(index=False))

    def write_sweep(self, text: str) -> None:
        write_atomic(self.sweep_path, text)

    def read_sweep(self) -> dict[str, Any]:
        """sweep.toml as a table ({} when the directory has none)."""
        from scaling.config import read_toml

        return read_toml(self.sweep_path) if self.sweep_path.is_file() else {}

    # -- fits, figures, summary ----------------------------------------------------------------
    def fit_path(self, name: str) -> Path:
        return self.fits / f"{name}.json"

    def fit_files(self) -> list[Path]:
        return sorted(self.fits.glob("*.json")) if self.fits.is_dir() else []

    def read_summary(self) -> dict[str, Any] | None:
        path = self.summary_path
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, summary)
