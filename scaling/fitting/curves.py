"""Loss curves with their whole learning rate schedules: the input of the loss-curve laws
(``fitting.curvelaws``), and the schedules ``scaling predict --schedule`` reads.

A curve is one run: the lr of every optimizer step from step 0 (warm-up included) and the
losses logged at some of those steps. The laws integrate the lr (S1, S2, the multi-power
law's loss drop), so every step's lr must be known:

- a runs directory: each run's lr is rebuilt from its config.json with the trainer's own
  schedule (``scaling.schedules.lr_at``, exact); the loss of a metrics.jsonl line of ``step``
  s (s steps done) is the train loss of 0-based step s − 1, whose lr the line logs;
- a CSV/Parquet with columns ``run, step, lr, loss``: one row per step, ``loss`` empty where
  none was logged; rows given sparsely are joined piecewise-linearly in lr (a linear warm-up
  or decay needs only its ends).

Bootstrap: curves are resampled whole (``units``: curves), with replacement.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from scaling.config import ConfigError, RunConfig, TrainConfig
from scaling.fitting.compute import Compute
from scaling.fitting.errors import FitError
from scaling.fitting.points import read_table
from scaling.rundir import RunDir, RunsDir
from scaling.schedules import lr_schedule

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = ("run", "step", "lr", "loss")
SCHEDULE_KINDS = ("wsd", "cosine", "constant", "linear")


@dataclass
class Curve:
    """One run: ``lr[j]`` the lr of 0-based step j (from step 0), ``steps`` the steps whose
    loss was logged (sorted), ``loss`` those losses."""

    name: str
    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray


@dataclass
class LrCurves:
    curves: list[Curve]
    source: str = "curves"
    excluded: list[dict[str, Any]] = field(default_factory=list)
    units: ClassVar[tuple[str, ...]] = ("curves", "steps")

    def __len__(self) -> int:
        return sum(len(c.steps) for c in self.curves)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for c in sorted(self.curves, key=lambda c: c.name):
            for array in (c.lr, c.steps, c.loss):
                h.update(np.ascontiguousarray(array, dtype=float).tobytes())
        return h.hexdigest()[:16]

    @property
    def compute(self) -> Compute:
        return Compute()

    def resample(self, unit: str, rng: np.random.Generator) -> LrCurves:
        """``curves``: curves drawn with replacement (a curve drawn twice enters twice).
        ``steps``: within each curve, its logged points in moving blocks (Künsch 1989) of
        about n^(1/3) consecutive steps, drawn with replacement: the resample that one curve
        admits (the pruner's), the blocks keeping the noise's correlation from step to step."""
        if unit not in self.units:
            raise FitError(
                "loss curves are resampled by curves or by steps",
                param="bootstrap_unit",
                value=unit,
            )
        if unit == "steps":
            return LrCurves([_blocks(c, rng) for c in self.curves], self.source)
        picks = rng.integers(0, len(self.curves), len(self.curves))
        return LrCurves([self.curves[i] for i in picks], self.source)


def _blocks(curve: Curve, rng: np.random.Generator) -> Curve:
    n = len(curve.steps)
    length = max(1, round(n ** (1 / 3)))
    starts = rng.integers(0, n - length + 1, -(-n // length))
    picks = np.sort(np.concatenate([np.arange(s, s + length) for s in starts])[:n])
    return Curve(curve.name, curve.lr, curve.steps[picks], curve.loss[picks])


def check_lr(lr: np.ndarray, where: str) -> np.ndarray:
    lr = np.asarray(lr, dtype=float)
    bad = np.flatnonzero(~np.isfinite(lr) | (lr < 0))
    if len(bad):
        raise FitError(
            f"{where}: field 'lr' is {float(lr[bad[0]]):g} at step {bad[0]}; "
            "a learning rate must be finite and >= 0"
        )
    if not (lr > 0).any():
        raise FitError(f"{where}: every lr is 0; a schedule needs a positive lr somewhere")
    return lr


def curves_from_table(frame: pd.DataFrame, source: str = "curves") -> LrCurves:
    """Curves from rows ``run, step, lr, loss`` (see the module's docstring)."""
    missing = [c for c in TABLE_COLUMNS if c not in frame]
    if missing:
        raise FitError(
            f"{source}: no {missing[0]!r} column; a loss-curve table has columns "
            "run, step, lr, loss (one row per step from step 0, loss empty where none was logged)"
        )
    curves = []
    for run, rows in frame.groupby("run", sort=True):
        where = f"{source}: run {run}"
        rows = rows.sort_values("step")
        steps = _numbers(rows["step"], where, "step")
        if steps[0] != 0 or (steps != np.round(steps)).any() or (np.diff(steps) <= 0).any():
            raise FitError(
                f"{where}: field 'step' must be whole, distinct and start at 0 (the schedule "
                f"from its first step, warm-up included); its first is {steps[0]:g}"
            )
        given = _numbers(rows["lr"], where, "lr")
        check_lr(given, where)
        lr = np.interp(np.arange(int(steps[-1]) + 1), steps, given)
        loss = rows["loss"].to_numpy(dtype=float)
        logged = np.isfinite(loss)
        if (loss[logged] <= 0).any():
            raise FitError(f"{where}: field 'loss' must be positive where given")
        if not logged.any():
            raise FitError(f"{where}: no loss logged (field 'loss' empty on every row)")
        curves.append(Curve(str(run), lr, steps[logged].astype(int), loss[logged]))
    if not curves:
        raise FitError(f"{source}: no rows")
    return LrCurves(curves, source)


def _numbers(column, where: str, name: str) -> np.ndarray:
    values = np.asarray(column, dtype=float)
    if not np.isfinite(values).all():
        raise FitError(f"{where}: field {name!r} must be a number on every row")
    return values


def curves_from_runs(runs: str | Path, loss: str = "train_loss") -> LrCurves:
    """Curves of a runs directory: every run's lr rebuilt from its config (exact), its
    ``loss`` metric at the logged steps. Runs of several model sizes are refused: the
    shape parameters are shared by the curves of one model."""
    directory = RunsDir(Path(runs))
    plan = directory.read_plan()
    sizes = sorted(set(plan["params"])) if "params" in plan else []
    if len(sizes) > 1:
        raise FitError(
            f"{runs}: runs of {len(sizes)} model sizes ({', '.join(f'{s:.3g}' for s in sizes)}); "
            "a loss-curve law fits the curves of one model (give a table of one model's runs)"
        )
    found = (curve_of_run(directory.run(run_id), loss) for run_id in plan["run_id"])
    curves = [curve for curve in found if curve is not None]
    if not curves:
        raise ConfigError(f"{runs}: no run has logged '{loss}' in metrics.jsonl yet")
    return LrCurves(curves, str(runs))


def curve_of_run(run: RunDir, loss: str = "train_loss") -> Curve | None:
    """One run's curve: its lr at every step of its whole schedule, rebuilt from its config
    (exact), and its ``loss`` metric at the steps logged so far; None before it logged."""
    lines = [m for m in run.read_metrics() if m.get(loss) is not None and "step" in m]
    if not lines or not run.has_config():
        return None
    config: RunConfig = run.read_config()
    total = config.train.tokens // config.train.batch_tokens
    lr = np.array(lr_schedule(config.train, total))
    steps = np.array([m["step"] - 1 for m in lines], dtype=int)
    values = np.array([m[loss] for m in lines], dtype=float)
    keep = (steps >= 0) & (steps < total) & np.isfinite(values)
    return Curve(run.path.name, lr, steps[keep], values[keep])


# -- schedules to predict ---------------------------------------------------------------------
def schedule_from(text: str) -> np.ndarray:
    """The lr of every step from a schedule given as a CSV/Parquet (``step, lr``, joined
    piecewise-linearly), a run's config.json, or the trainer's words:
    ``wsd:steps=S,lr=X,warmup=W,cooldown=F[,shape=1-sqrt|linear|cosine]``,
    ``cosine:steps=S,lr=X,warmup=W[,min_lr=F]`` (also ``linear:``, ``constant:``)."""
    kind, _, rest = text.partition(":")
    if kind in SCHEDULE_KINDS and not Path(text).exists():
        return np.array(lr_schedule(*_train_config(kind, rest, text)))
    path = Path(text)
    if not path.is_file():
        raise FitError(
            f"{text}: no such file; a schedule is a CSV/Parquet (step, lr), a run's "
            f"config.json, or {'|'.join(SCHEDULE_KINDS)}:steps=S,lr=X,warmup=W,..."
        )
    if path.suffix == ".json":
        try:
            config = RunConfig.model_validate(json.loads(path.read_text()))
        except (ValueError, json.JSONDecodeError) as err:
            first = str(err).splitlines()[0]
            raise FitError(f"{path}: not a run's config.json ({first})") from None
        return np.array(lr_schedule(config.train, config.train.tokens // config.train.batch_tokens))
    frame = read_table(path)
    for column in ("step", "lr"):
        if column not in frame:
            raise FitError(f"{path}: no {column!r} column; a schedule has columns step, lr")
    frame = frame.sort_values("step")
    steps = _numbers(frame["step"], str(path), "step")
    lr = check_lr(_numbers(frame["lr"], str(path), "lr"), str(path))
    if steps[0] != 0 or (np.diff(steps) <= 0).any():
        raise FitError(f"{path}: field 'step' must be distinct and start at 0 (warm-up included)")
    return np.interp(np.arange(int(steps[-1]) + 1), steps, lr)


SCHEDULE_KEYS = {
    "steps": "total steps",
    "lr": "peak lr",
    "warmup": "warm-up steps",
    "cooldown": "WSD cooldown, a fraction of the steps",
    "shape": "WSD cooldown shape: 1-sqrt, linear or cosine",
    "min_lr": "cosine/linear end, a fraction of the peak",
}


def _train_config(kind: str, rest: str, text: str) -> tuple[TrainConfig, int]:
    values: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in SCHEDULE_KEYS:
            raise FitError(
                f"--schedule {text}: {item!r} is not KEY=VALUE with KEY one of "
                + ", ".join(SCHEDULE_KEYS)
            )
        values[key.strip()] = value.strip()
    for key in ("steps", "lr"):
        if key not in values:
            raise FitError(f"--schedule {text}: no {key}= ({SCHEDULE_KEYS[key]})")

    def number(key: str, kind=float, low=None, high=None, above=None):
        try:
            value = kind(values[key])
        except ValueError:
            raise FitError(f"--schedule {text}: {key}={values[key]!r} is not a number") from None
        if (
            (low is not None and value < low)
            or (high is not None and value > high)
            or (above is not None and value <= above)
            or not math.isfinite(value)
        ):
            span = f"in [{low}, {high}]" if high is not None else f">= {low}"
            if above is not None:
                span = f"in ({above:g}, {high:g}]" if high is not None else f"> {above:g}"
            raise FitError(f"--schedule {text}: {key}={value:g} must be {span}")
        return value

    steps = number("steps", int, low=1)
    fields: dict[str, Any] = {"schedule": kind, "lr": number("lr", above=0.0)}
    fields["warmup_steps"] = number("warmup", int, low=0) if "warmup" in values else 0
    if "cooldown" in values:
        fields["cooldown_fraction"] = number("cooldown", above=0.0, high=1.0)
    if "min_lr" in values:
        fields["min_lr_fraction"] = number("min_lr", low=0.0, high=1.0)
    if "shape" in values:
        if values["shape"] not in ("1-sqrt", "linear", "cosine"):
            raise FitError(f"--schedule {text}: shape must be 1-sqrt, linear or cosine")
        fields["cooldown_shape"] = values["shape"]
    try:
        config = TrainConfig(**fields)
    except ValueError as err:
        lines = [x.strip() for x in str(err).splitlines() if "errors.pydantic" not in x]
        raise FitError(f"--schedule {text}: {' '.join(lines[1:3])}") from None
    return config, steps
