"""Points to fit: from a runs directory's DataFrame or any CSV/Parquet table.

Canonical columns: ``params``, ``tokens``, ``flops``, ``loss`` and, where known, ``budget``,
``unique_tokens``, ``n_experts``, ``lr``, ``batch_tokens``, ``run_id``, ``status``. Any two of
params, tokens and FLOPs suffice: the third follows from C = k·N·D (k = 6 unless told).
Every exclusion is recorded with its reason, and travels into the fit file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.fitting.base import FitError

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
EXCLUDED_STATUSES = ("failed", "diverged")


@dataclass
class Points:
    frame: pd.DataFrame
    excluded: list[dict[str, Any]] = field(default_factory=list)
    source: str = "points"

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def digest(self) -> str:
        """Order-independent hash of the points used."""
        cols = [c for c in ("params", "tokens", "loss") if c in self.frame]
        rows = sorted(tuple(f"{v:.12g}" for v in row) for row in self.frame[cols].to_numpy())
        return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]

    @property
    def flops_per_param_token(self) -> float:
        """k of C = k·N·D for these points: the median of FLOPs / (N·D). 6 for a 6N sweep;
        more for the chinchilla and exact formulas, which count attention and logits."""
        frame = self.frame
        if frame.empty:
            return 6.0
        return float(np.median(frame["flops"] / (frame["params"] * frame["tokens"])))

    def column(self, name: str) -> np.ndarray:
        if name not in self.frame:
            raise FitError(f"{self.source}: this law needs a column {name!r}; it is missing")
        return self.frame[name].to_numpy(dtype=float)


def as_points(data: pd.DataFrame | Points) -> Points:
    return data if isinstance(data, Points) else prepare_points(data)


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FitError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:  # pandas raises many kinds; the user needs the file and the cause
        raise FitError(f"{path}: cannot read the table ({err})") from None


def group_budgets(flops: np.ndarray, tolerance: float = 0.05) -> np.ndarray:
    """Budgets for points without one: FLOPs whose log10 lie within ``tolerance`` of their
    neighbour form one IsoFLOP group, labelled by the group's geometric mean."""
    order = np.argsort(flops)
    logs = np.log10(flops[order])
    group = np.concatenate([[0], np.cumsum(np.diff(logs) > tolerance)])
    budgets = np.empty_like(flops)
    for g in np.unique(group):
        budgets[order[group == g]] = 10 ** logs[group == g].mean()
    return budgets


def prepare_points(
    df: pd.DataFrame,
    columns: dict[str, str] | None = None,
    flops_per_param_token: float = 6.0,
    budget_tolerance: float = 0.05,
    exclude: str | None = None,
    drop_highest: int = 0,
    source: str = "points",
    require: tuple[str, ...] = ("params", "tokens", "loss"),
) -> Points:
    """Canonical, validated points. ``columns`` maps canonical names to the table's names.
    Rows are numbered from 1, the first row of data (a CSV's line 2)."""
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
    return Points(frame, excluded, source)
