"""`scaling plot`: the figures of a runs directory or a table of points."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import app, errors, fail


@app.command()
def plot(
    source: Annotated[
        Path,
        typer.Argument(help="A runs directory, a CSV/Parquet of points, or builtin:NAME."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the figures (default: RUNS/figures, or ./figures)."),
    ] = None,
    fit_files: Annotated[
        list[Path] | None,
        typer.Option("--fit", help="A fit file to draw (repeatable); default: RUNS/fits/*.json."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png, pdf or both: png,pdf.")] = "png",
) -> None:
    """Draw IsoFLOP profiles, the compute-optimal allocation with bootstrap bands and the
    Chinchilla line, loss curves with the frontier, L(N, D) contours, residuals, learning-rate
    sweeps and the demo's holdout check: whichever the data and the fits support.

    The figures draw the fit files given (--fit, or every file in RUNS/fits/); with none, the
    parametric and IsoFLOP laws are fitted here without bootstrap, and nothing is written but
    the figures.
    """
    from scaling.fitting import Law, prepare_points
    from scaling.fitting.api import fit_laws, load_source, read_fits

    formats = [f.strip() for f in fmt.split(",")]
    if not formats or any(f not in ("png", "pdf", "svg") for f in formats):
        raise fail(f"--format {fmt!r}: png, pdf or svg, comma-separated")
    with errors({"law": "--fit"}):
        table, runs = load_source(source)
        points = prepare_points(table, source=str(source))
        if fit_files:
            laws = {law.law: law for law in map(Law.from_json, fit_files)}
        else:
            laws = read_fits(runs) if runs is not None else {}
        if not laws:
            fitted, _ = fit_laws(["parametric", "isoflop"], points)
            laws = {outcome.law.law: outcome.law for outcome in fitted}
            typer.echo(f"no fit files: drew {', '.join(laws) or 'no'} laws fitted here")
        curves = summary = None
        if runs is not None:
            from scaling import results
            from scaling.config import ConfigError

            try:
                curves = results.load_curves(runs.path)
            except ConfigError:
                curves = None  # no run has logged yet: no loss-curve figure
            summary = runs.read_summary()

    import matplotlib.pyplot as plt

    from scaling.fileio import atomic_path
    from scaling.plotting import figures_for

    folder = out or (runs.figures if runs is not None else Path("figures"))
    with errors():
        for name, figure in figures_for(points.frame, laws, curves, summary).items():
            for extension in formats:
                path = folder / f"{name}.{extension}"
                with atomic_path(path) as tmp:  # a failed write leaves no empty figure
                    figure.savefig(tmp, format=extension)
                typer.echo(f"wrote {path}")
            plt.close(figure)
