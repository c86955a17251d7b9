"""`scaling data prepare` and `scaling data info`."""

from __future__ import annotations

import json

import typer

from scaling.cli import ConfigArg, JsonOption, SetOption, _load_config, app, errors, present

data_app = typer.Typer(
    help="Prepare tokenized data (once per corpus and tokenizer) and list the cache.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(config: ConfigArg = None, set_: SetOption = None, as_json: JsonOption = False):
    """Tokenize a corpus into train.bin / val.bin in the cache ($SCALING_CACHE, default
    ~/.cache/scaling); reuse the cache entry when it exists.

    Example: scaling data prepare --set source=builtin:python-stdlib --set vocab_size=4096
    """
    from scaling.config import DataConfig
    from scaling.data import prepare_data

    cfg = _load_config(DataConfig, "data", config, set_)
    with errors():
        prepared = prepare_data(cfg, progress=not as_json)
    meta = prepared.meta
    if as_json:
        typer.echo(json.dumps({"path": str(prepared.path), "reused": prepared.reused, **meta}))
        return
    verb = "reused" if prepared.reused else "prepared"
    typer.echo(f"{verb} {prepared.path}")
    present.cache_table([prepared])
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
    present.cache_table(entries)
