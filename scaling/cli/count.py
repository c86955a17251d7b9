"""`scaling count`: exact parameter and FLOP accounting of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import _load_config, app, fail


@app.command()
def count(
    config: Annotated[
        Path | None,
        typer.Argument(help="A model TOML (top-level keys or a [model] table). Optional."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a field, KEY=VALUE (repeatable)."),
    ] = None,
    seq_len: Annotated[int, typer.Option(help="Sequence length for attention FLOPs.")] = 1024,
    budget: Annotated[
        float | None, typer.Option(help="A FLOP budget: also print the tokens it buys.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Exact parameter counts and training FLOPs per token of a model, without building it.

    Example: scaling count --set d_model=512 --set n_layers=8 --set n_heads=8 --budget 1e18
    """
    from scaling.config import ModelConfig
    from scaling.counting import FLOP_METHODS, count_params, flops_per_token

    cfg = _load_config(ModelConfig, "model", config, set_)
    if seq_len < 1 or seq_len > cfg.max_seq_len:
        raise fail(f"--seq-len {seq_len}: must be between 1 and max_seq_len ({cfg.max_seq_len})")
    if budget is not None and budget <= 0:
        raise fail(f"--budget {budget}: must be a positive number of FLOPs")

    params = count_params(cfg)
    flops = {m: flops_per_token(cfg, seq_len, m) for m in FLOP_METHODS}
    report = {
        "params": params.to_dict(),
        "flops_per_token": flops,
        "seq_len": seq_len,
        "d_ff": cfg.ff_dim,
        "head_dim": cfg.head_dim,
    }
    if budget is not None:
        report["budget"] = budget
        report["tokens_for_budget"] = {m: budget / f for m, f in flops.items()}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title="parameters", title_justify="left")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for key, value in params.to_dict().items():
        table.add_row(key, f"{value:,}")
    flop_table = Table(title=f"training FLOPs per token (seq_len {seq_len})", title_justify="left")
    flop_table.add_column("method")
    flop_table.add_column("FLOPs/token", justify="right")
    if budget is not None:
        flop_table.add_column(f"tokens for {budget:.3g} FLOPs", justify="right")
    for method, value in flops.items():
        row = [method, f"{value:.4g}"]
        if budget is not None:
            row.append(f"{budget / value:.4g}")
        flop_table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(flop_table)
