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
RUNS/fits/<law>.json            fit files (fitting.fitfile owns their format)
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
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from scaling.config import ConfigError
from scaling.fileio import write_atomic, write_json_atomic
from scaling.records import MetricsLine, PlanRow, Result, Summary, plan_numbers, validated

RESULT_STATUSES = get_args(Result.model_fields["status"].annotation)  # done, failed, diverged
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

    def read_planned_config(self, run_id: str):
        """The config of the planned run ``run_id``, checked to be the one planned: its id is
        the hash of its contents, so an edited config.json (another model, other tokens than
        plan.csv says) is refused here rather than trained and fitted as the planned run."""
        from scaling.config import full_run_id_of, run_id_of

        config = self.read_config()
        written = json.loads(self.config_path.read_text())  # it loaded: it is JSON
        if run_id not in (run_id_of(config), full_run_id_of(written)):
            raise ConfigError(
                f"{self.config_path}: changed since it was planned as run {run_id} (its contents "
                f"hash to {run_id_of(config)}); to train the changed config, put the change in "
                "the spec and plan again (scaling plan SPEC --out RUNS: it becomes a run of its "
                "own), or restore the file"
            )
        return config

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
        try:
            return validated(Result, result, str(path))
        except ConfigError as err:
            raise ConfigError(f"{err} (delete the file to train the run again)") from None

    def write_result(self, result: dict[str, Any]) -> None:
        """Checked as ``read_result`` will check it: a writer's slip fails here, not in the
        launcher or the fit that reads the file later."""
        write_json_atomic(self.result_path, validated(Result, result, str(self.result_path)))

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

    def stopped_reason(self) -> str | None:
        """Why the run last stopped short of its end (a signal, a lost process), if it did."""
        try:
            record = json.loads(self.stopped_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return str(record.get("reason")) if isinstance(record, dict) else None

    def stopped_step(self) -> int:
        """The step the run last stopped at (its checkpoint's), 0 when it has not stopped."""
        try:
            record = json.loads(self.stopped_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return 0
        step = record.get("step") if isinstance(record, dict) else None
        return step if isinstance(step, int) else 0

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
            records.append(validated(MetricsLine, record, f"{path}:{number}"))
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
        logged, corrupt = self._readable_metrics()
        if resume_step is None and (logged or corrupt):
            self.metrics_path.replace(self.metrics_path.with_name("metrics.jsonl.restarted"))
        elif corrupt:  # every line is kept: the file as it was, beside the one resumed
            aside = self.metrics_path.with_name("metrics.jsonl.corrupt")
            shutil.copy2(self.metrics_path, aside)
            warnings.warn(
                f"{self.metrics_path}: line {corrupt[0]} is corrupt; the file as it was is kept "
                f"as {aside.name}, and the resumed file holds its readable lines",
                stacklevel=2,
            )
        covered = [r for r in logged if resume_step is not None and r.get("step", 0) <= resume_step]
        kept = [json.dumps(record) for record in covered]
        write_atomic(self.metrics_path, "".join(f"{line}\n" for line in kept))

    def _readable_metrics(self) -> tuple[list[dict[str, Any]], list[int]]:
        """(every line that reads as a JSON object, the numbers of those that do not; a cut
        last line is not counted: a run killed mid-write leaves one)."""
        try:
            lines = self.metrics_path.read_text(errors="replace").splitlines(keepends=True)
        except FileNotFoundError:
            return [], []
        records, corrupt = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif not (number == len(lines) and not line.endswith("\n")):
                corrupt.append(number)
        return records, corrupt

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
        line = validated(MetricsLine, record, f"{self.metrics_path} (a new line)")
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")


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
    def prune_log(self) -> Path:
        """prune.jsonl: every rung's forecasts and decisions of `scaling launch --prune`."""
        return self.path / "prune.jsonl"

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
        """plan.csv as a DataFrame: every run id a folder name inside runs/, none empty or
        listed twice; the numbers the launcher and the fits read numbers."""
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
        for row, run_id in enumerate(plan["run_id"], start=2):  # row 1 is the header
            if pd.isna(run_id) or not str(run_id).strip():
                raise ConfigError(f"{path}: row {row}: run_id is empty")
            check_run_id(run_id, f"{path}: row {row}")
        repeated = plan["run_id"][plan["run_id"].duplicated()]
        if len(repeated):
            rows = [i + 2 for i in plan.index[plan["run_id"] == repeated.iloc[0]]]
            raise ConfigError(
                f"{path}: run_id {repeated.iloc[0]} is listed {len(rows)} times (rows "
                f"{', '.join(map(str, rows))}); a run is one row"
            )
        for column, (smallest, may_be_empty) in plan_numbers().items():
            if column not in plan:
                continue
            numbers = pd.to_numeric(plan[column], errors="coerce")
            bad = (numbers.isna() & ~(plan[column].isna() & may_be_empty)) | (numbers < smallest)
            if bad.any():
                i = int(bad.to_numpy().nonzero()[0][0])
                raise ConfigError(
                    f"{path}: row {i + 2} (run {plan['run_id'].iloc[i]}): {column} "
                    f"{plan[column].iloc[i]!r} is not a number of at least {smallest}"
                )
            plan[column] = numbers
        return plan

    def run_ids(self) -> list[str]:
        return self.read_plan()["run_id"].tolist()

    def write_plan(self, frame) -> None:
        """plan.csv from one row per run, each checked as a ``PlanRow`` (an empty cell is NaN
        in the frame and None in the row)."""
        for number, row in enumerate(frame.to_dict("records"), start=2):  # row 1: the header
            cells = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
            validated(PlanRow, cells, f"{self.plan_path}: row {number}")
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
            summary = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise ConfigError(f"{path}: not valid JSON ({type(err).__name__}: {err})") from None
        return validated(Summary, summary, str(path))

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_path, validated(Summary, summary, str(self.summary_path)))
