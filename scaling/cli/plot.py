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
    sweeps, the demo's holdout check, and each run's loss curve beside what a loss-curve law
    (multi-power, lr-annealing) predicts from its schedule: whichever the data and the fits
    support.

    The figures draw the fit files given (--fit, or every file in RUNS/fits/); with none, the
    parametric and IsoFLOP laws are fitted here without bootstrap, and nothing is written but
    the figures. A loss-curve law needs curves: a runs directory, or a CSV/Parquet of run,
    step, lr, loss.
    """
    from scaling.config import ConfigError
    from scaling.fitting import Law, prepare_points
    from scaling.fitting.api import fit_laws, load_curves_source, load_source, read_fits

    formats = [f.strip() for f in fmt.split(",")]
    if not formats or any(f not in ("png", "pdf", "svg") for f in formats):
        raise fail(f"--format {fmt!r}: png, pdf or svg, comma-separated")
    with errors({"law": "--fit"}):
        table, runs = load_source(source)
        if fit_files:
            given = {path: Law.from_json(path) for path in fit_files}
            laws = {law.law: law for law in given.values()}
        else:
            given = {}
            laws = read_fits(runs) if runs is not None else {}
        lr_curves = None
        curve_laws = [name for name, law in laws.items() if "curve" in law.answers]
        if curve_laws:
            try:
                lr_curves, _ = load_curves_source(source)
            except ConfigError as err:
                named = [path for path, law in given.items() if "curve" in law.answers]
                if named:  # asked for by name: say why it cannot be drawn
                    raise fail(
                        f"--fit {named[0]}: a {given[named[0]].law} law draws loss curves "
                        f"beside its predictions, and {source} has none of one model: {err}"
                    ) from None
                typer.echo(f"no loss-curve figure: {err}")  # found in RUNS/fits: the rest
        try:
            prepared = prepare_points(table, source=str(source))
            points = prepared.frame
        except ConfigError:
            if lr_curves is None:
                raise
            points = table.iloc[0:0]  # curves without finished points: the curve figure alone
        if not laws:
            fitted, _ = fit_laws(["parametric", "isoflop"], prepared)
            laws = {outcome.law.law: outcome.law for outcome in fitted}
            typer.echo(f"no fit files: drew {', '.join(laws) or 'no'} laws fitted here")
        curves = summary = None
        if runs is not None:
            from scaling import results

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
        drawn = figures_for(points, laws, curves, summary, lr_curves)
        for name, figure in drawn.items():
            for extension in formats:
                path = folder / f"{name}.{extension}"
                with atomic_path(path) as tmp:  # a failed write leaves no empty figure
                    figure.savefig(tmp, format=extension)
                typer.echo(f"wrote {path}")
            plt.close(figure)
