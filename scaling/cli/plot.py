"""`scaling plot`: the figures of a runs directory or a table of points."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import app, fail


@app.command()
def plot(
    source: Annotated[Path, typer.Argument(help="A runs directory, or a CSV/Parquet of points.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the figures (default: RUNS/figures, or ./figures)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png, pdf or both: png,pdf.")] = "png",
) -> None:
    """Draw IsoFLOP profiles, the compute-optimal allocation with bootstrap bands and the
    Chinchilla line, loss curves with the frontier, L(N, D) contours, residuals, learning-rate
    sweeps and the demo's holdout check: whichever the data supports.

    Fits come from RUNS/fits/ when there; otherwise the parametric and IsoFLOP laws are fitted
    here (without bootstrap).
    """
    from scaling.config import ConfigError
    from scaling.fitting.api import fit_law, load_source
    from scaling.fitting.base import Law
    from scaling.fitting.points import prepare_points

    formats = [f.strip() for f in fmt.split(",")]
    if not formats or any(f not in ("png", "pdf", "svg") for f in formats):
        raise fail(f"--format {fmt!r}: png, pdf or svg, comma-separated")
    try:
        table, runs = load_source(source)
        points = prepare_points(table, source=str(source))
        laws = {}
        if runs is not None and (runs / "fits").is_dir():
            for path in sorted((runs / "fits").glob("*.json")):
                law = Law.from_json(path)
                laws[law.law] = law
        for name in ("parametric", "isoflop"):
            if name in laws:
                continue
            with contextlib.suppress(ConfigError):  # unsupported law: its figures are skipped
                laws[name] = fit_law(name, points)
        curves = summary = None
        if runs is not None:
            from scaling import results

            try:
                curves = results.load_curves(runs)
            except ConfigError:
                curves = None
            if (runs / "summary.json").is_file():
                summary = json.loads((runs / "summary.json").read_text())
    except ConfigError as err:
        raise fail(str(err)) from None

    import matplotlib.pyplot as plt

    from scaling.plotting import figures_for

    folder = out or ((runs / "figures") if runs is not None else Path("figures"))
    folder.mkdir(parents=True, exist_ok=True)
    for name, figure in figures_for(points.frame, laws, curves, summary).items():
        for extension in formats:
            path = folder / f"{name}.{extension}"
            figure.savefig(path)
            typer.echo(f"wrote {path}")
        plt.close(figure)
