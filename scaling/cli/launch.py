"""`scaling launch` and `scaling status`."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, app, errors, fail, json_rows, present

RunsArg = Annotated[Path, typer.Argument(metavar="RUNS", help="A planned runs directory.")]
StaleOption = Annotated[
    float,
    typer.Option(
        help="Seconds without a heartbeat after which a running claim is stale and taken over."
    ),
]


@app.command()
def launch(
    runs: RunsArg,
    executor: Annotated[str, typer.Option(help="local or slurm.")] = "local",
    max_parallel: Annotated[
        int | None, typer.Option(help="Local: runs at once (default 1).", show_default=False)
    ] = None,
    gpus_per_run: Annotated[
        int | None,
        typer.Option(
            help="Local: GPUs per run (default 1); >1 starts torchrun.", show_default=False
        ),
    ] = None,
    order: Annotated[str, typer.Option(help="small-first or large-first.")] = "small-first",
    only: Annotated[
        str | None,
        typer.Option(
            help="Run ids (prefixes, comma-separated), a budget, or a query over plan.csv."
        ),
    ] = None,
    skip: Annotated[str | None, typer.Option(help="Like --only, for runs to leave out.")] = None,
    retries: Annotated[
        int | None,
        typer.Option(help="Local: retries of a failed run (default 0).", show_default=False),
    ] = None,
    retry_diverged: Annotated[
        bool | None, typer.Option(help="Local: retry diverged runs too.", show_default=False)
    ] = None,
    stale_after: StaleOption = 120.0,
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Start nothing: print what would run (local: runs, order, devices, estimated "
            "wall time; Slurm: the sbatch script)."
        ),
    ] = False,
    slurm: Annotated[
        list[str] | None,
        typer.Option(
            help="Slurm resources, KEY=VALUE (partition, account, time_min, nodes, gpus_per_node, "
            "cpus_per_task, mem_gb, array_parallelism); override [launch.slurm]."
        ),
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Local: the live table (default on).", show_default=False)
    ] = None,
    prune: Annotated[
        bool | None,
        typer.Option(
            "--prune",
            help="Local: successive halving over the runs of one model and budget (an lr or "
            "batch sweep): pause them at each rung, forecast each one's final loss from its "
            "curve, and stop those whose interval lies wholly above the best one's (state "
            "pruned, checkpoint kept).",
            show_default=False,
        ),
    ] = None,
    rungs: Annotated[
        str | None,
        typer.Option(
            help="Local, with --prune: the rungs, as fractions of each run's steps "
            "(default 0.125,0.25,0.5,0.75).",
            show_default=False,
        ),
    ] = None,
    prune_level: Annotated[
        float | None,
        typer.Option(
            help="Local, with --prune: the coverage of the forecast intervals compared "
            "(default 0.8, as a fit's; higher prunes less).",
            show_default=False,
        ),
    ] = None,
    resume_pruned: Annotated[
        bool | None,
        typer.Option(
            "--resume-pruned",
            help="Local: train pruned runs on from their checkpoints (their pruned result kept "
            "as result.pruned.json).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Train every pending run of a plan, each exactly once, resuming any that stopped.

    Two launchers on one directory share the work. Ctrl-C checkpoints the running runs;
    launching again resumes them. A flag the chosen executor does not use is refused.
    Example: scaling launch scaling-demo --max-parallel 2
    """
    given = {
        "--max-parallel": max_parallel,
        "--gpus-per-run": gpus_per_run,
        "--retries": retries,
        "--retry-diverged": retry_diverged,
        "--progress/--no-progress": progress,
        "--slurm": slurm,
        "--prune": prune,
        "--rungs": rungs,
        "--prune-level": prune_level,
        "--resume-pruned": resume_pruned,
    }
    if executor not in ("local", "slurm"):
        raise fail(f"--executor {executor!r}: local or slurm")
    unused = [
        flag for flag, value in given.items() if value is not None and flag not in USES[executor]
    ]
    if unused:
        raise fail(
            f"{', '.join(unused)}: not used by --executor {executor} ({USES_NOTE[executor]})"
        )
    if as_json and not dry_run:
        raise fail("--json: with --dry-run only")
    given_alone = [
        flag for flag, v in (("--rungs", rungs), ("--prune-level", prune_level)) if v is not None
    ]
    if given_alone and not prune:
        raise fail(f"{' and '.join(given_alone)}: with --prune only")
    if prune and resume_pruned:
        raise fail(
            "--prune and --resume-pruned: one or the other (resume the pruned runs first, "
            "then prune the rest)"
        )
    if prune and dry_run:
        raise fail("--prune: not with --dry-run (a dry run shows the unpruned plan; drop --prune)")
    max_parallel = 1 if max_parallel is None else max_parallel
    gpus_per_run = 1 if gpus_per_run is None else gpus_per_run
    retries = 0 if retries is None else retries
    if max_parallel < 1 or gpus_per_run < 1 or retries < 0:
        raise fail("--max-parallel and --gpus-per-run must be at least 1, --retries at least 0")
    progress = True if progress is None else progress
    if prune:
        from scaling.pruner import DEFAULT_RUNGS, PruneOptions

        chosen = PruneOptions(
            rungs=_fractions(rungs) if rungs is not None else DEFAULT_RUNGS,
            level=0.8 if prune_level is None else prune_level,
        )
        with errors(LAUNCH_FLAGS):
            chosen.check()  # before torch's import: bad flags answer at once

    import torch

    torch.set_flush_denormal(True)

    from scaling.launching.local import LaunchOptions, LocalExecutor

    options = LaunchOptions(
        max_parallel=max_parallel,
        gpus_per_run=gpus_per_run,
        order=order,
        only=only,
        skip=skip,
        retries=retries,
        retry_diverged=bool(retry_diverged),
        resume_pruned=bool(resume_pruned),
        stale_after=stale_after,
        progress=progress,
    )
    with errors(LAUNCH_FLAGS):
        if executor == "slurm":
            from scaling.cli import _parse_override
            from scaling.launching.slurm import launch_slurm

            overrides = dict(_parse_override(item) for item in slurm or [])
            typer.echo(launch_slurm(runs, options, dry_run=dry_run, overrides=overrides))
            return
        if dry_run:
            from scaling.launching.dry_run import local_dry_run

            _print_dry_run(local_dry_run(runs, options), options, as_json)
            return
        if prune:
            from scaling.pruner import Pruner

            pruner = Pruner(runs, options, chosen, report=typer.echo)
            local = pruner.executor
            finished = _run_with_table(pruner, runs, progress, stale_after)
        else:
            local = LocalExecutor(runs, options)
            finished = _run_with_table(local, runs, progress, stale_after)
    outcome = local.outcome()
    unfinished = {state: ids for state, ids in outcome.items() if state not in ("done", "pruned")}
    pruned = outcome.get("pruned", [])
    typer.echo(
        f"{len(finished)} run(s) trained here; {len(outcome.get('done', []))} of "
        f"{len(local.selected)} selected done"
        + (f", {len(pruned)} pruned" if pruned else "")
        + (
            "; not done: "
            + "; ".join(
                f"{len(ids)} {_NOT_DONE.get(s, s)} ({', '.join(ids[:5])})"
                for s, ids in unfinished.items()
            )
            if unfinished
            else ": all done"
        )
    )
    if set(unfinished) - {"running"}:  # a run another live launcher holds is in good hands
        raise typer.Exit(code=1)


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise fail(f"--rungs {text!r}: fractions of a run's steps, comma-separated") from None


# The flags each executor reads; any other given is refused rather than ignored.
USES = {
    "local": {
        "--max-parallel",
        "--gpus-per-run",
        "--retries",
        "--retry-diverged",
        "--progress/--no-progress",
        "--prune",
        "--rungs",
        "--prune-level",
        "--resume-pruned",
    },
    "slurm": {"--slurm"},
}
USES_NOTE = {
    "local": "Slurm resources go with --executor slurm",
    "slurm": "Slurm takes parallelism and GPUs from [launch.slurm] and --slurm KEY=VALUE "
    "(array_parallelism, gpus_per_node, nodes), and requeues instead of retrying",
}


def _print_dry_run(frame, options, as_json: bool) -> None:
    """The local executor's plan: a table (or JSON), then one line of totals."""
    to_train = frame[frame["action"] != "skip"] if len(frame) else frame
    wall = float((to_train["start_s"] + to_train["wall_s"]).max()) if len(to_train) else 0.0
    if as_json:
        typer.echo(
            json.dumps(
                {"runs": json_rows(frame), "to_train": len(to_train), "estimated_wall_s": wall}
            )
        )
        return
    present.dry_run_table(frame, _duration)
    typer.echo(
        f"{len(to_train)} of {len(frame)} selected run(s) would train here, "
        f"{options.max_parallel} at a time, in about {_duration(wall)} (estimated from the "
        "plan's FLOPs); nothing was started or claimed"
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


_NOT_DONE = {
    "running": "running elsewhere",
    "stale": "stale (their owner stopped beating; launch again after --stale-after)",
    "unreadable": "with an unreadable result.json (scaling status names it)",
}


LAUNCH_FLAGS = {
    "order": "--order",
    "selection": "--only/--skip",
    "gpus_per_run": "--gpus-per-run",
    "rungs": "--rungs",
    "level": "--prune-level",
}


@contextlib.contextmanager
def _stopped():
    """Ctrl-C or SIGTERM: the runs checkpointed and their claims were released; say so and
    exit with the signal's code (130, 143), not the code of bad input."""
    from scaling.launching.local import Stopped

    try:
        yield
    except (KeyboardInterrupt, Stopped) as err:
        signum = err.signum if isinstance(err, Stopped) else signal.SIGINT
        typer.echo("stopped: running runs checkpointed; launch again to resume", err=True)
        raise typer.Exit(code=128 + int(signum)) from None


def _run_with_table(local, runs: Path, progress: bool, stale_after: float) -> dict[str, str]:
    from rich.console import Console
    from rich.live import Live

    from scaling.launching.status import status_frame

    console = Console()
    if not (progress and console.is_terminal):
        seen: dict[str, str] = {}

        def report(executor):  # each run's state whenever it changes (a pruner's rungs too)
            for run_id, status in executor.finished.items():
                if seen.get(run_id) != status:
                    seen[run_id] = status
                    console.print(f"{run_id}: {status}")

        with _stopped():
            return local.run(on_tick=report)
    last = [0.0]
    with Live(present.status_table(status_frame(runs, stale_after)), console=console) as live:

        def refresh(executor):
            if time.time() - last[0] > 1.0:
                live.update(present.status_table(status_frame(runs, stale_after)))
                last[0] = time.time()

        with _stopped():
            finished = local.run(on_tick=refresh)
        live.update(present.status_table(status_frame(runs, stale_after)))
    return finished


@app.command()
def status(
    runs: RunsArg,
    watch: Annotated[bool, typer.Option(help="Refresh every few seconds until Ctrl-C.")] = False,
    stale_after: StaleOption = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Where the grid stands: per run its state, tokens, loss, wall time; per budget the
    counts of pending, queued (waiting in Slurm), running, stale, cancelled (by scancel),
    done, failed and diverged runs."""
    from scaling.launching.status import status_frame

    with errors():
        frame = status_frame(runs, stale_after)
    if as_json:
        typer.echo(json.dumps(json_rows(frame)))
        return
    from rich.console import Console
    from rich.live import Live

    if not watch:
        Console().print(present.status_table(frame))
        return
    with Live(present.status_table(frame), refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(2)
                with errors():
                    live.update(present.status_table(status_frame(runs, stale_after)))
        except KeyboardInterrupt:
            pass
