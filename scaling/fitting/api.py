"""One entry point over every law, the one the CLI uses: load points, fit by name, save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from scaling.fitting.base import FitError, Law
from scaling.fitting.hparams import fit_hparams
from scaling.fitting.isoflop import fit_envelope, fit_isoflop
from scaling.fitting.kaplan import fit_kaplan
from scaling.fitting.parametric import fit_parametric
from scaling.fitting.points import Points, prepare_points, read_table

LAW_NAMES = (
    "parametric",
    "isoflop",
    "envelope",
    "kaplan",
    "data-constrained",
    "moe",
    "hparams",
    "downstream",
)


def load_source(source: str | Path) -> tuple[pd.DataFrame, Path | None]:
    """(table, runs directory or None) from a runs directory or a CSV/Parquet file."""
    path = Path(source)
    if path.is_dir():
        from scaling import results

        return results.load(path), path
    return read_table(path), None


def fit_law(
    name: str,
    points: Points,
    runs: Path | None = None,
    curves: pd.DataFrame | None = None,
    **options: Any,
) -> Law:
    """Fit the law called ``name``. ``options``: bootstrap_samples, bootstrap_unit, seed, and
    the law's own keywords (loss, pinned, optimum, method, metric, ...)."""
    common = {
        k: options[k] for k in ("bootstrap_samples", "bootstrap_unit", "seed") if k in options
    }
    k = options.get("flops_per_param_token", 6.0)
    if name == "parametric":
        own = {
            key: options[key] for key in ("loss", "pinned", "bounds", "starts") if key in options
        }
        return fit_parametric(points, flops_per_param_token=k, **own, **common)
    if name == "isoflop":
        return fit_isoflop(
            points, optimum=options.get("optimum", "parabola"), flops_per_param_token=k, **common
        )
    if name == "envelope":
        if curves is None:
            if runs is None:
                raise FitError(
                    f"{points.source}: the envelope law needs loss curves: give a "
                    "runs directory (its metrics.jsonl files)"
                )
            from scaling import results

            curves = results.load_curves(runs)
        return fit_envelope(
            curves,
            bootstrap_samples=common.get("bootstrap_samples", 0),
            seed=common.get("seed", 0),
            source=str(runs),
        )
    if name == "kaplan":
        return fit_kaplan(points, **common)
    if name == "hparams":
        return fit_hparams(points, method=options.get("method", "near-optimal"), **common)
    if name == "data-constrained":
        from scaling.fitting.data_constrained import fit_data_constrained

        return fit_data_constrained(points, **common)
    if name == "moe":
        from scaling.fitting.moe import fit_moe

        return fit_moe(points, **common)
    if name == "downstream":
        from scaling.fitting.downstream import fit_downstream

        return fit_downstream(points, metric=options.get("metric", "accuracy"), **common)
    raise FitError(f"--law {name!r}: must be one of {', '.join(LAW_NAMES)} or all")


def newest_fit(runs: Path, law: str | None = None, exclude: tuple[str, ...] = ()) -> Path:
    fits = sorted((runs / "fits").glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in fits:
        name = Law.from_json(path).law
        if (law is None or name == law) and name not in exclude:
            return path
    raise FitError(f"{runs / 'fits'}: no {law or ''} fit file yet (run scaling fit first)")


__all__ = ["LAW_NAMES", "fit_law", "load_source", "newest_fit", "prepare_points"]
