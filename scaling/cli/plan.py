"""`scaling plan`: a sweep spec in, the list of runs out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, app, errors, fail, json_rows, present


@app.command()
def plan(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A sweep spec (TOML).")],
    out: Annotated[Path | None, typer.Option(help="The runs directory to write.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan; write nothing.")] = False,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors.")] = False,
    device: Annotated[
        str, typer.Option(help="For the wall-time estimate: cpu, a100, h100, h200.")
    ] = "cpu",
    mfu: Annotated[float | None, typer.Option(help="Assumed MFU (default 0.4 on GPUs).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Plan a sweep: shapes for every target size, tokens for every budget, one config per
    run; writes RUNS/plan.csv, RUNS/sweep.toml and RUNS/runs/<run_id>/config.json.

    Replanning into the same directory keeps every unchanged run (same run_id) and its results,
    adds the new ones, and lists the runs the spec no longer has (nothing is deleted).
    Example: scaling plan sweeps/demo.toml --out scaling-demo
    """
    from scaling.devices import PLANNING_DEVICES
    from scaling.planning.output import plan_frame, summary, write_plan
    from scaling.planning.plan import plan_sweep
    from scaling.planning.spec import load_spec

    if device not in PLANNING_DEVICES:
        raise fail(f"--device {device!r}: must be one of {', '.join(PLANNING_DEVICES)}")
    if mfu is not None and not 0 < mfu <= 1:
        raise fail(f"--mfu {mfu}: must be in (0, 1]")
    if out is None and not dry_run:
        raise fail("--out RUNS is needed (or --dry-run)")
    with errors():
        spec = load_spec(spec_path)
        the_plan = plan_sweep(spec, spec_path.parent)
        report = summary(the_plan, spec, device, mfu)
    if strict and the_plan.warnings:
        raise fail(
            f"{spec_path}: --strict and {len(the_plan.warnings)} warning(s), first: "
            f"{the_plan.warnings[0]}"
        )
    with errors():
        changes = None if dry_run else write_plan(the_plan, spec, out)
    frame = plan_frame(the_plan)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "summary": report,
                    "changes": changes,
                    "runs": json_rows(frame),
                }
            )
        )
        return
    present.plan_table(frame, report, changes, out)
