"""The ``scaling`` command line. Thin: parse, call the library, print.

Heavy modules (torch, pandas, scipy) are imported inside the commands that need them, so
``scaling --help`` answers at once.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
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


@contextlib.contextmanager
def errors(flags: dict[str, str] | None = None) -> Iterator[None]:
    """The CLI's one error handler: a ``ConfigError`` from the library becomes one line on
    stderr and exit code 2, its parameter names (``loss=``) said as this command's flags
    (``--loss``) where ``flags`` maps them."""
    from scaling.config import ConfigError

    try:
        yield
    except ConfigError as err:
        raise fail(err.phrased(flags or {})) from None
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise fail(
                f"{where}no space left on the device; what was written before is complete: "
                "free some space and run the same command again"
            ) from None
        if err.filename is None:  # not a path the user gave or the command chose: a bug
            raise
        # a folder where a file goes, a file where a folder goes, a read-only mount, no
        # permission: the path and the system's reason
        raise fail(f"{where}{err.strerror or err}; nothing there was changed") from None


def json_rows(frame) -> list[dict]:
    """A table's rows for ``json.dumps``: every float exact (pandas' ``to_json`` keeps 10
    digits, at most 15) and a missing value None."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


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
    from scaling.config import load_section

    parsed = dict(_parse_override(item) for item in overrides or [])
    with errors():
        return load_section(cls, path, section, parsed)


ConfigArg = Annotated[
    Path | None,
    typer.Argument(help="A TOML with a [data] table (a sweep spec works), or data keys alone."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field, KEY=VALUE (repeatable)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


# The commands register themselves on ``app`` when their modules are imported.
from scaling.cli import (  # noqa: E402, F401
    coord_check,
    count,
    data,
    demo,
    export,
    fit,
    launch,
    plan,
    plot,
    published,
    train,
)
