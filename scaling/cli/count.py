"""`scaling count`: exact parameter and FLOP accounting of a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import _load_config, app, fail, present


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

    present.count_tables(params.to_dict(), flops, seq_len, budget)
