"""What laws are fitted on: points (one per run, from a runs directory's DataFrame or any
CSV/Parquet table) and loss curves (every logged step of every run).

Canonical columns of points: ``params``, ``tokens``, ``flops``, ``loss`` and, where known,
``budget``, ``unique_tokens``, ``n_experts``, ``lr``, ``batch_tokens``, ``run_id``,
``status``. Any two of params, tokens and FLOPs suffice: the third follows from C = k·N·D
(k = 6 unless told). Points of a runs directory carry their sweep's ``flop_formula`` and
``size``: ``params`` is N as the sweep counts it (its ``params_active`` for a sweep sized by
active parameters), and ``compute`` is how their FLOPs were counted (``fitting.compute``).
Every exclusion is recorded with its reason, and travels into the fit file.

Each kind of data says how the bootstrap resamples it (``units``, ``resample``): points by
point, by run or by budget; curves by whole runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from scaling.fitting.compute import SIZES, Compute
from scaling.fitting.errors import FitError, one_of
from scaling.results import BUDGET_TOLERANCE

if TYPE_CHECKING:
    import pandas as pd

CANONICAL = (
    "params",
    "tokens",
    "flops",
    "loss",
    "budget",
    "unique_tokens",
    "n_experts",
    "lr",
    "batch_tokens",
)
EXCLUDED_STATUSES = ("failed", "diverged", "pruned")
SIZE_COLUMNS = {
    "total": "params",
    "non_embedding": "params_nonembedding",
    "active": "params_active",
}
UNITS = ("points", "runs", "budgets")


def _digest(frame: pd.DataFrame) -> str:
    """Order-independent hash of the rows' params, tokens and loss."""
    cols = [c for c in ("params", "tokens", "loss") if c in frame]
    rows = sorted(tuple(f"{v:.12g}" for v in row) for row in frame[cols].to_numpy())
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def _draw(groups: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Groups of rows drawn with replacement: (the rows, the draw each row belongs to)."""
    chosen = rng.integers(0, len(groups), len(groups))
    rows = [groups[i] for i in chosen]
    return np.concatenate(rows), np.repeat(np.arange(len(rows)), [len(r) for r in rows])


@dataclass
class Points:
    """Points to fit: a canonical ``frame``, what was left out and why (``excluded``), where
    they came from (``source``), and the sweep's ``formula`` and ``size`` where known."""

    frame: pd.DataFrame
    excluded: list[dict[str, Any]] = field(default_factory=list)
    source: str = "points"
    formula: str | None = None
    size: str = "total"
    predicted: int = 0  # how many of the points are predicted (``fitting.predicted``)
    units: ClassVar[tuple[str, ...]] = UNITS

    def __len__(self) -> int:
        return len(self.frame)

    @cached_property
    def digest(self) -> str:
        """Order-independent hash of the points used."""
        return _digest(self.frame)

    @cached_property
    def compute(self) -> Compute:
        """How these points' compute was counted: C = k(N)·N·D (``fitting.compute``)."""
        f = self.frame
        return Compute.of(f["params"], f["tokens"], f["flops"], self.formula, self.size)

    def sized_by(self, size: str) -> Points:
        """The same points with N counted as ``size`` (Kaplan's non-embedding N); unchanged
        where they do not carry that count. They keep their digest: laws fitted on them were
        fitted on the same points, and their bootstrap samples pair."""
        column = SIZE_COLUMNS[size]
        if size == self.size or column not in self.frame:
            return self
        frame = self.frame.assign(params=self.frame[column].astype(float))
        sized = Points(frame, self.excluded, self.source, self.formula, size, self.predicted)
        sized.__dict__["digest"] = self.digest  # the cached property, set: see above
        return sized

    def column(self, name: str) -> np.ndarray:
        if name not in self.frame:
            raise FitError(f"{self.source}: this law needs a column {name!r}; it is missing")
        return self.frame[name].to_numpy(dtype=float)

    def subset(self, frame: pd.DataFrame, source: str | None = None) -> Points:
        """Other points of the same sweep (a backtest's, a law's single-epoch points)."""
        return Points(
            frame.reset_index(drop=True), [], source or self.source, self.formula, self.size
        )

    def resample(self, unit: str, rng: np.random.Generator) -> Points:
        """A bootstrap sample: rows, or whole runs or budgets, drawn with replacement. It
        counts compute as these points do."""
        frame = self.frame
        if unit == "points":
            rows = rng.integers(0, len(frame), len(frame))
        else:
            column = {"runs": "run_id", "budgets": "budget"}.get(unit)
            if column is None:
                raise FitError(
                    f"must be one of {', '.join(UNITS)}", param="bootstrap_unit", value=unit
                )
            if column not in frame:
                raise FitError(
                    f"the points have no {column!r} column", param="bootstrap_unit", value=unit
                )
            rows, _ = _draw(list(frame.groupby(column, sort=True).indices.values()), rng)
        sample = Points(frame.iloc[rows], [], self.source, self.formula, self.size)
        sample.__dict__["compute"] = self.compute
        return sample


@dataclass
class Curves:
    """Loss curves (``results.load_curves``): run_id, params, tokens, flops, loss at every
    logged step; resampled by whole runs."""

    frame: pd.DataFrame
    source: str = "curves"
    excluded: list[dict[str, Any]] = field(default_factory=list)
    units: ClassVar[tuple[str, ...]] = ("runs",)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def digest(self) -> str:
        return _digest(self.frame)

    @cached_property
    def compute(self) -> Compute:
        f = self.frame
        return Compute.of(f["params"], f["tokens"], f["flops"])

    def resample(self, unit: str, rng: np.random.Generator) -> Curves:
        """Runs drawn with replacement; a run drawn twice enters twice, under two names."""
        if unit not in self.units:
            raise FitError(
                "loss curves are resampled by whole runs", param="bootstrap_unit", value=unit
            )
        groups = list(self.frame.groupby("run_id", sort=True).indices.values())
        rows, draws = _draw(groups, rng)
        frame = self.frame.iloc[rows].assign(run_id=draws)
        sample = Curves(frame, self.source)
        sample.__dict__["compute"] = self.compute
        return sample


CURVE_COLUMNS = ("run_id", "params", "tokens", "flops", "loss")


def as_curves(data: pd.DataFrame | Curves | Points, source: str | None = None) -> Curves:
    """Loss curves with the columns a curve law needs, the steps before any compute and
    those of no finite loss left out."""
    if isinstance(data, Curves):
        return data
    frame = data.frame if isinstance(data, Points) else data
    source = source or getattr(data, "source", "curves")
    needed = set(CURVE_COLUMNS) - set(frame)
    if needed:
        raise FitError(
            f"{source}: the envelope needs loss curves with columns run_id, params, "
            f"tokens, flops, loss; missing {', '.join(sorted(needed))}"
        )
    return Curves(frame[(frame["flops"] > 0) & np.isfinite(frame["loss"])], source)


def as_points(data: pd.DataFrame | Points) -> Points:
    return data if isinstance(data, Points) else prepare_points(data)


def predicted_mask(frame: pd.DataFrame) -> np.ndarray:
    """Which rows of a table are predicted points (``fitting.predicted``): its ``predicted``
    column read as a flag (True, 1, "true", "yes"); none where it has no such column."""
    if "predicted" not in frame:
        return np.zeros(len(frame), dtype=bool)
    text = frame["predicted"].astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "1.0", "yes")).to_numpy()


def read_table(path: str | Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FitError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:  # pandas raises many kinds; the user needs the file and the cause
        raise FitError(f"{path}: cannot read the table ({err})") from None


def group_budgets(flops: np.ndarray, tolerance: float = BUDGET_TOLERANCE) -> np.ndarray:
    """Budgets for points without one: FLOPs whose log10 lie within ``tolerance`` of their
    neighbour form one IsoFLOP group, labelled by the group's geometric mean."""
    order = np.argsort(flops)
    logs = np.log10(flops[order])
    group = np.concatenate([[0], np.cumsum(np.diff(logs) > tolerance)])
    budgets = np.empty_like(flops)
    for g in np.unique(group):
        budgets[order[group == g]] = 10 ** logs[group == g].mean()
    return budgets


def _one(frame: pd.DataFrame, column: str, source: str) -> str | None:
    """The one value of a column every row shares (the sweep's), None where it is absent;
    several name them all (points of sweeps that count differently)."""
    if column not in frame:
        return None
    values = sorted({str(v) for v in frame[column].dropna()})
    return ", ".join(values) or None


def _size(frame: pd.DataFrame, source: str) -> str:
    """What the points' N counts: the sweep's ``size`` (total where the table has none)."""
    size = _one(frame, "size", source) or "total"
    one_of("size", size, SIZES)
    return size


def prepare_points(
    df: pd.DataFrame,
    columns: dict[str, str] | None = None,
    flops_per_param_token: float = 6.0,
    budget_tolerance: float = BUDGET_TOLERANCE,
    exclude: str | None = None,
    drop_highest: int = 0,
    source: str = "points",
    require: tuple[str, ...] = ("params", "tokens", "loss"),
    include_predicted: bool = False,
) -> Points:
    """Canonical, validated points. ``columns`` maps canonical names to the table's names.
    Rows are numbered from 1, the first row of data (a CSV's line 2). A table with a ``size``
    column (a runs directory's: the sweep's ``size``) has its N taken from the count the
    sweep sized its models by (``params_active``, ``params_nonembedding``); the total stays
    as ``params_total``. A table with predicted rows (a ``predicted`` column,
    ``fitting.predicted``) is refused unless ``include_predicted``; with it, the points say
    how many are predicted (``Points.predicted``)."""
    import pandas as pd

    for name, value, allowed in (
        ("flops_per_param_token", flops_per_param_token, "must be a positive number (6 for 6ND)"),
        ("budget_tolerance", budget_tolerance, "must be 0 or more (log10 FLOPs)"),
        ("drop_highest", drop_highest, "must be 0 or more"),
    ):
        low_ok = value > 0 if name == "flops_per_param_token" else value >= 0
        if not (np.isfinite(value) and low_ok):
            raise FitError(allowed, param=name, value=value)
    roles: dict[str, str] = {}
    for ours, theirs in (columns or {}).items():
        if theirs in roles:
            raise FitError(
                f"{source}: column {theirs!r} is given for both {roles[theirs]} and {ours}; "
                "one column has one role"
            )
        roles[theirs] = ours
    rename = {theirs: ours for ours, theirs in (columns or {}).items() if theirs != ours}
    missing = [theirs for theirs in rename if theirs not in df]
    if missing:
        raise FitError(f"{source}: no column {missing[0]!r}; columns are {', '.join(map(str, df))}")
    frame = df.rename(columns=rename).reset_index(drop=True).copy()
    excluded: list[dict[str, Any]] = []

    def drop(mask: np.ndarray, reason: str) -> None:
        nonlocal frame
        for _, row in frame[mask].iterrows():
            excluded.append(
                {"run_id": row.get("run_id"), "row": int(row["_row"]), "reason": reason}
            )
        frame = frame[~mask]

    frame["_row"] = np.arange(1, len(frame) + 1)
    if "status" in frame:
        for status in EXCLUDED_STATUSES:
            drop((frame["status"].astype(str) == status).to_numpy(), f"status {status}")

    if frame.empty:
        reasons = sorted({entry["reason"] for entry in excluded})
        raise FitError(
            f"{source}: no points to fit: every one of its {len(excluded)} rows is left out "
            f"({', '.join(reasons) or 'none given'})"
        )
    size = _size(frame, source)
    if size != "total":  # N as the sweep sized its models
        counted = SIZE_COLUMNS[size]
        if counted not in frame:
            raise FitError(f"{source}: the sweep sizes models by {size} parameters; no {counted!r}")
        frame["params_total"] = frame["params"]
        frame["params"] = frame[counted]
    empty = [c for c in ("params", "tokens", "flops") if c in frame and frame[c].isna().all()]
    frame = frame.drop(columns=empty)  # e.g. a runs directory whose plan has no FLOPs
    known = [c for c in ("params", "tokens", "flops") if c in frame]
    if len(known) < 2:
        raise FitError(
            f"{source}: need two of the columns params, tokens and flops; have "
            f"{', '.join(known) or 'none'} (map yours with columns=)"
        )
    if "loss" not in frame and "loss" in require:
        raise FitError(f"{source}: no column 'loss' (map yours with columns=)")
    for name in [c for c in CANONICAL if c in frame]:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        text = frame[name].notna().to_numpy() & np.isnan(values)
        if text.any():
            row = int(frame["_row"].to_numpy()[text][0])
            raise FitError(
                f"{source}: column {name!r}, row {row}: {frame[name].to_numpy()[text][0]!r} is "
                "not a number"
            )
        if name in ("params", "tokens", "flops", "loss"):
            bad = ~np.isfinite(values) | (values <= 0)
        else:  # optional columns may be empty (NaN), never non-positive
            floor = values < 0 if name == "n_experts" else values <= 0  # 0 experts = dense
            bad = np.isinf(values) | floor
        if bad.any():
            rows = frame["_row"].to_numpy()[bad][:5].tolist()
            raise FitError(
                f"{source}: column {name!r} has NaN or non-positive values in rows "
                f"{rows} (every value must be a positive number)"
            )
        frame[name] = values
    if "params" not in frame:
        frame["params"] = frame["flops"] / (flops_per_param_token * frame["tokens"])
    if "tokens" not in frame:
        frame["tokens"] = frame["flops"] / (flops_per_param_token * frame["params"])
    if "flops" not in frame:
        frame["flops"] = flops_per_param_token * frame["params"] * frame["tokens"]
    if "budget" not in frame or frame["budget"].isna().all():
        frame["budget"] = group_budgets(frame["flops"].to_numpy(), budget_tolerance)

    if exclude:
        try:
            hit = frame.eval(exclude).to_numpy(dtype=bool)
        except Exception as err:
            raise FitError(f"exclude={exclude!r}: not a valid query ({err})") from None
        drop(hit, f"query: {exclude}")
    if drop_highest:
        worst = frame["loss"].rank(method="first", ascending=False).to_numpy() <= drop_highest
        drop(worst, f"among the {drop_highest} highest-loss points")
    frame = frame.drop(columns="_row").reset_index(drop=True)
    predicted = int(predicted_mask(frame).sum())
    if predicted and not include_predicted:
        raise FitError(
            f"{source}: {predicted} of its {len(frame)} points are predicted (column "
            "'predicted'), not measured; to fit them with the measured ones, say so "
            "(scaling fit --include-predicted; include_predicted=True)"
        )
    return Points(frame, excluded, source, _one(frame, "flop_formula", source), size, predicted)
