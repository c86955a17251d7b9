"""`scaling plan`: a sweep spec in, the list of runs out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, app, errors, fail, json_rows


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
    _print_plan(frame, report, changes, out)


def _print_plan(frame, report, changes, out) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="plan", title_justify="left")
    columns = [
        "run_id",
        "grid",
        "budget",
        "params",
        "n_layers",
        "d_model",
        "n_heads",
        "tokens",
        "tokens/param",
        "steps",
        "lr",
        "flops",
    ]
    for column in columns:
        table.add_column(column, justify="left" if column in ("run_id", "grid") else "right")
    for _, group in frame.sort_values(["budget", "params"]).groupby("budget", sort=False):
        for row in group.itertuples():
            table.add_row(
                row.run_id,
                row.grid,
                f"{row.budget:.3g}",
                f"{row.params:,}",
                str(row.n_layers),
                str(row.d_model),
                str(row.n_heads),
                f"{row.tokens:,}",
                f"{row.tokens_per_param:.1f}",
                str(row.steps),
                f"{row.lr:.3g}",
                f"{row.flops:.3g}",
            )
        table.add_section()
    console.print(table)
    largest = report["largest_run"]
    console.print(
        f"{report['runs']} runs, {report['total_flops']:.3g} FLOPs in all; largest "
        f"{largest['run_id']} ({largest['params']:,} parameters, {largest['tokens']:,} tokens). "
        f"Corpus: {report['corpus_tokens']:.3g} training tokens ({report['corpus_tokens_are']}); "
        f"the longest run takes {report['max_epochs']:.2f} epochs"
        + (
            f", {report['runs_repeating_data']} runs repeat data"
            if report["runs_repeating_data"]
            else ""
        )
        + "."
    )
    console.print(
        f"Estimated wall time on {report['device']}: "
        f"{report['estimated_wall_s'] / 60:.1f} minutes at "
        f"{report['assumed_flops_per_s']:.3g} FLOP/s on average."
    )
    for line in report["duplicates"]:
        console.print(f"[yellow]deduplicated[/]: {line}")
    for line in report["warnings"]:
        console.print(f"[yellow]warning[/]: {line}")
    if changes is not None:
        console.print(
            f"wrote {out}: {len(changes['new'])} new, {len(changes['kept'])} kept "
            f"(unchanged), {len(changes['dropped'])} no longer in the spec"
            + (f" ({', '.join(changes['dropped'][:5])})" if changes["dropped"] else "")
        )
