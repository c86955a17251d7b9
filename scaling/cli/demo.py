"""`scaling demo`: the whole study on a laptop CPU."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, app, errors, fail
from scaling.demo import DemoReporter


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

    from scaling.demo import DemoReporter, describe, run_demo
    from scaling.training.trainer import Interrupted

    shown = progress and not as_json
    try:
        with errors():
            summary = run_demo(
                out,
                tiny=tiny,
                progress=shown,
                spec_path=spec,
                seed=seed,
                reporter=_TerminalReporter() if shown else DemoReporter(),
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


class _TerminalReporter(DemoReporter):
    """The demo's stages as lines; while the runs train, the launcher's live table on a
    terminal, or a line per run where the output is a file or a pipe."""

    def __init__(self) -> None:
        from rich.console import Console

        self.live_table = Console().is_terminal

    def message(self, text: str) -> None:
        typer.echo(text)

    def run_started(self, run_id: str, number: int, total: int) -> None:
        if not self.live_table:
            typer.echo(f"[{number}/{total}] training {run_id}")

    @contextlib.contextmanager
    def training(self, runs: Path) -> Iterator[None]:
        if not self.live_table:
            yield
            return
        from rich.live import Live

        from scaling.cli.present import status_table
        from scaling.launching.status import status_frame

        with Live(get_renderable=lambda: status_table(status_frame(runs)), refresh_per_second=1):
            yield
