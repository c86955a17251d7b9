"""`scaling demo`: the whole study on a laptop CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, app, errors, fail


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="The runs directory of the demo.")] = Path(
        "scaling-demo"
    ),
    tiny: Annotated[bool, typer.Option(help="A one-minute version (what the tests run).")] = False,
    spec: Annotated[
        Path | None,
        typer.Option(help="Run the demo's study on this sweep spec instead of sweeps/demo.toml."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="The sweep's seed (initialisation and data order of every run); "
            "another seed is another study, in its own --out."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars and run-by-run lines.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Plan sweeps/demo.toml, prepare the built-in corpus, train every run, fit the parametric
    and IsoFLOP laws with bootstrap intervals, draw the figures, predict 10x beyond the largest
    budget, then train one more run at 4x the largest budget, at the predicted optimal size,
    and compare its measured loss with the prediction. Writes RUNS/summary.json.
    Interrupt it and run it again: it resumes.
    """
    import torch

    torch.set_flush_denormal(True)  # before torch starts its threads

    from scaling.demo import describe, run_demo
    from scaling.training.trainer import Interrupted

    try:
        with errors():
            summary = run_demo(
                out, tiny=tiny, progress=progress and not as_json, spec_path=spec, seed=seed
            )
    except (Interrupted, KeyboardInterrupt):
        raise fail("interrupted: run `scaling demo` again to resume") from None
    if as_json:
        typer.echo(json.dumps(summary, default=float))
        return
    typer.echo(describe(summary))
    from scaling.rundir import RunsDir

    runs = RunsDir(out)
    typer.echo(f"figures in {runs.figures}, summary in {runs.summary_path}")
