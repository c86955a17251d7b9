"""`scaling train`: one run, in one process or under torchrun / accelerate launch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import app, errors


@app.command()
def train(
    config: Annotated[
        Path,
        typer.Argument(
            help="A run's config.json (as the planner writes it), or a TOML with [model], [data] "
            "and [train] tables."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (default: the config's folder, so a planned run trains in place)."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    pause_at: Annotated[
        int | None,
        typer.Option(
            help="Checkpoint and stop after this optimizer step (exit 4); the same command "
            "without it goes on (a step at or past the run's end: it just finishes). "
            "`scaling launch --prune` pauses runs at its rungs so.",
            min=1,
        ),
    ] = None,
) -> None:
    """Train one run; resume from its checkpoint when the run directory has one.

    Writes metrics.jsonl, checkpoint/, export/ and result.json into the run directory. Exit
    code 0 when done, 1 when the run failed, 3 when it diverged, 4 when paused at --pause-at,
    130 when interrupted (a checkpoint was written: run the same command again to resume).
    Many processes: torchrun --nproc_per_node N -m scaling train CONFIG
    """
    # Signals from here on are recorded, not raised: a KeyboardInterrupt inside the imports
    # below (numpy, accelerate) once left numpy half-imported and ended in a RecursionError.
    from scaling.training import die_with_parent, stop_signals, under_an_agent  # no torch

    if under_an_agent():
        die_with_parent()

    signals: list[int] = []
    with stop_signals(signals.append):
        import torch

        torch.set_flush_denormal(True)  # before torch starts its worker threads

        from scaling.config import load_run_config
        from scaling.training.lifecycle import train as train_run
        from scaling.training.trainer import Interrupted, Paused

        try:
            with errors():
                run_config = load_run_config(config)
                if signals:
                    raise KeyboardInterrupt
                result = train_run(
                    run_config,
                    out or config.parent,
                    progress=progress,
                    signals=signals,
                    pause_at=pause_at,
                )
        except Paused as err:
            typer.echo(f"{err}; run the same command without --pause-at to go on", err=True)
            raise typer.Exit(code=4) from None
        except Interrupted as err:
            typer.echo(f"interrupted: {err}; run the same command again to resume", err=True)
            raise typer.Exit(code=130) from None
        except KeyboardInterrupt:  # before the trainer took over: nothing trained
            typer.echo("interrupted before training began; run the same command again", err=True)
            raise typer.Exit(code=130) from None
    status = result["status"]
    if status == "done":
        typer.echo(
            f"done: eval loss {result['final_eval_loss']:.4f} "
            f"({result['final_eval_bpb']:.4f} bits/byte) after {result['tokens']:,} tokens"
        )
        return
    typer.echo(f"{status}: {result.get('reason') or result.get('error')}", err=True)
    raise typer.Exit(code=3 if status == "diverged" else 1)
