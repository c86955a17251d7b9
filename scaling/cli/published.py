"""`scaling published`: the published points bundled with the package, and their provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, app, errors, fail, json_rows, present


@app.command()
def published(
    name: Annotated[
        str | None, typer.Argument(help="A dataset: where it comes from (default: list them).")
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option("--csv", help="Write the dataset's points to this CSV (a new file)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the published points bundled with scaling, or show where one comes from.

    Each dataset carries its paper, figure, extraction, licence and how its numbers were
    read. Fit one with `scaling fit builtin:NAME`.

    Example: scaling fit builtin:chinchilla --drop-highest 5 (Epoch AI's 240 points)
    """
    from scaling import published as bundled

    if name is None:
        if csv is not None:
            raise fail("--csv: name the dataset to write, e.g. scaling published chinchilla --csv")
        rows = [
            {"name": f"builtin:{d.name}", "rows": len(d.points()), "summary": d.summary}
            for d in bundled.DATASETS.values()
        ]
        if as_json:
            typer.echo(json.dumps(rows))
            return
        present.published_table(rows)
        return

    if message := bundled.unknown(name):
        raise fail(message)
    with errors():
        record = bundled.provenance(name)
        points = bundled.load(name)
    if csv is not None:
        if csv.exists():
            raise fail(f"--csv {csv}: exists; give a new file (nothing was written)")
        if not csv.parent.is_dir():
            raise fail(f"--csv {csv}: no folder {csv.parent}; nothing was written")
        from scaling.fileio import write_atomic

        with errors():  # a full disk leaves no cut CSV that a rerun would refuse to replace
            write_atomic(csv, points.to_csv(index=False))
    if as_json:
        typer.echo(json.dumps({**record, "points": json_rows(points)}))
        return
    typer.echo(f"builtin:{record['name']}: {record['summary']} ({len(points)} points)")
    paper, extraction = record["paper"], record["extraction"]
    if "figure" in record:
        typer.echo(f"figure: {record['figure']}")
    if "data" in record:
        typer.echo(f"data: {record['data']}")
    typer.echo(f"paper: {paper['authors']}, {paper['title']}, arXiv:{paper['arxiv']}")
    by = extraction["by"] + (f", {extraction['paper']}" if "paper" in extraction else "")
    typer.echo(f"extracted by: {by}")
    typer.echo(f"  {extraction['repository']} at {extraction['commit']}")
    typer.echo(f"  files: {extraction['files']}")
    for key, label in (("params_axis", "parameter axis"), ("axes", "axes"), ("file", "file")):
        if key in record:
            typer.echo(f"{label}: {record[key]}")
    typer.echo(f"licence: {record['licence']}")
    typer.echo(f"use: {record['use']}")
    fit = record["published_fit"]
    typer.echo(
        "published fit: " + ", ".join(f"{k} = {v:.6g}" for k, v in fit.items() if k != "source")
    )
    typer.echo(f"  ({fit['source']})")
    typer.echo("how it was read (scaling published NAME --json for everything):")
    for step in record["procedure"]:
        typer.echo(f"  - {step}")
    if csv is not None:
        typer.echo(f"wrote {csv}")
