"""The ``scaling`` command line. Thin: parse, call the library, print.

Heavy modules (torch, pandas, scipy) are imported inside the commands that need them, so
``scaling --help`` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Plan, train and fit scaling-law experiments for language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from scaling import __version__

        typer.echo(f"scaling {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ] = None,
) -> None:
    """Plan, train and fit scaling-law experiments for language models."""


def fail(message: str) -> typer.Exit:
    """Bad input: one line on stderr, exit code 2."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _parse_override(item: str) -> tuple[str, object]:
    import tomllib

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise fail(f"--set {item!r}: expected KEY=VALUE, e.g. --set d_model=512")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word such as swiglu
    return key.strip(), parsed


def _load_config(cls, section: str, path: Path | None, overrides: list[str] | None):
    """``[section]`` of a TOML file (see ``load_section``) with ``--set KEY=VALUE`` overrides;
    bad input exits 2 with one line."""
    from scaling.config import ConfigError, load_section

    parsed = dict(_parse_override(item) for item in overrides or [])
    try:
        return load_section(cls, path, section, parsed)
    except ConfigError as err:
        raise fail(str(err)) from None


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


data_app = typer.Typer(
    help="Prepare tokenized data (once per corpus and tokenizer) and list the cache.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

ConfigArg = Annotated[
    Path | None,
    typer.Argument(help="A TOML with a [data] table (a sweep spec works), or data keys alone."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field, KEY=VALUE (repeatable)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


@data_app.command("prepare")
def data_prepare(config: ConfigArg = None, set_: SetOption = None, as_json: JsonOption = False):
    """Tokenize a corpus into train.bin / val.bin in the cache ($SCALING_CACHE, default
    ~/.cache/scaling); reuse the cache entry when it exists.

    Example: scaling data prepare --set source=builtin:python-stdlib --set vocab_size=4096
    """
    from scaling.config import ConfigError, DataConfig
    from scaling.data import prepare_data

    cfg = _load_config(DataConfig, "data", config, set_)
    try:
        prepared = prepare_data(cfg, progress=not as_json)
    except ConfigError as err:
        raise fail(str(err)) from None
    meta = prepared.meta
    if as_json:
        typer.echo(json.dumps({"path": str(prepared.path), "reused": prepared.reused, **meta}))
        return
    verb = "reused" if prepared.reused else "prepared"
    typer.echo(f"{verb} {prepared.path}")
    _print_cache_table([prepared])
    if meta["replaced_chars"]:
        typer.echo(
            f"note: {meta['replaced_chars']} undecodable bytes were replaced (U+FFFD) in "
            f"{len(meta['files_with_replacements'])} file(s), e.g. "
            f"{meta['files_with_replacements'][0]}"
        )


@data_app.command("info")
def data_info(as_json: JsonOption = False):
    """List the prepared data in the cache."""
    from scaling.data import cache_dir, list_cache

    entries = list_cache()
    if as_json:
        typer.echo(json.dumps([{"path": str(e.path), **e.meta} for e in entries]))
        return
    if not entries:
        typer.echo(f"no prepared data in {cache_dir() / 'data'}")
        return
    _print_cache_table(entries)


def _print_cache_table(entries) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in (
        "key",
        "source",
        "tokenizer",
        "vocab",
        "train tokens",
        "val tokens",
        "tokens/byte",
    ):
        table.add_column(
            column, justify="right" if "tok" in column or column == "vocab" else "left"
        )
    for entry in entries:
        meta = entry.meta
        table.add_row(
            meta["key"],
            meta["source"],
            meta["tokenizer"]["kind"],
            str(meta["vocab_size"]),
            f"{meta['train']['tokens']:,}",
            f"{meta['val']['tokens']:,}",
            f"{meta['tokens_per_byte']:.3f}",
        )
    Console().print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
