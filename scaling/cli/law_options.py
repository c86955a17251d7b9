"""The options of `scaling fit` that set a law: each law's constructor parameters
(``Law.signature``: name, type, default and what it means as ``Annotated`` metadata) as typer
options, so a law's new parameter is a new flag with no edit to the command."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from scaling.cli import fail
from scaling.fitting import LAWS  # every law, light: pandas and scipy load when a law fits
from scaling.fitting.api import LAW_NAMES

# The flags whose names are not their parameter's (``--loss`` for ``objective``: a law's
# ``loss`` is the question it answers; the others are the names users have typed).
RENAMED_FLAGS = {
    "bootstrap_samples": "--bootstrap",
    "objective": "--loss",
    "pinned": "--pin",
    "bounds": "--bound",
    "budget_optimum": "--optimum",
    "metric": "--metric-col",
}
LIST_FORMS = {"pinned": "NAME=NUMBER", "bounds": "NAME=LOW:HIGH"}  # dicts given flag by flag


def law_parameters() -> dict[str, tuple[inspect.Parameter, dict[str, Any]]]:
    """Every law's parameters by name (the common ones first), with the laws that take each
    and their defaults."""
    found: dict[str, tuple[inspect.Parameter, dict[str, Any]]] = {}
    for name in LAW_NAMES:
        signature = LAWS[name].signature()
        common = [p for p in signature if p in LAWS["kaplan"].signature()]
        for key in common + [p for p in signature if p not in common]:
            found.setdefault(key, (signature[key], {}))[1][name] = signature[key].default
    return found


def flag(name: str) -> str:
    return RENAMED_FLAGS.get(name, "--" + name.replace("_", "-"))


def _cli_option(name: str, param: inspect.Parameter, laws: dict[str, Any]) -> inspect.Parameter:
    """The typer option of one law parameter: its type (a dict as repeated NAME=VALUE flags;
    the data-constrained base as a fit file), its meaning, the laws that take it and their
    default. Its default is None: not given, so the law keeps its own."""
    kind, meaning = typing.get_args(param.annotation)[:2]
    if name == "base":
        kind, meaning = Path, "Data-constrained: the base law, a parametric fit file."
    elif name in LIST_FORMS:
        kind, meaning = list[str], f"{meaning} Repeatable."
    elif typing.get_origin(kind) in (typing.Union, type(int | None)):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    said = [", ".join(laws)] if len(laws) < len(LAWS) else []
    said += [] if param.default is None else [f"default {param.default}"]
    said += [f"{law}: {default}" for law, default in laws.items() if default != param.default]
    names = [flag(name)]
    if kind is bool:  # a switch, as --tie-exponents always was
        names = [f"{flag(name)}/--no-{flag(name)[2:]}"]
    option = typer.Option(
        *names,
        help=f"{meaning} ({'; '.join(said)})" if said else meaning,
        metavar=LIST_FORMS.get(name),
    )
    annotation = Annotated[kind | None, option]
    return param.replace(kind=param.KEYWORD_ONLY, default=None, annotation=annotation)


def with_law_options(command: Callable, after: int) -> inspect.Signature:
    """``command``'s signature with every law's parameter as a keyword-only option after its
    first ``after`` parameters (they arrive in its ``**law_options``, None where not given)."""
    fixed = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.kind is not p.VAR_KEYWORD
    ]
    options = [_cli_option(n, p, laws) for n, (p, laws) in law_parameters().items()]
    return inspect.Signature(fixed[:after] + options + fixed[after:])


def bound(text: str) -> tuple[float | None, float | None]:
    low, sep, high = text.partition(":")
    if not sep:
        raise ValueError(text)
    return (float(low) if low.strip() else None, float(high) if high.strip() else None)


def parse_pairs(items: list[str], name: str, example: str, value) -> dict[str, Any]:
    """The repeated NAME=VALUE flags of parameter ``name`` as a dict, each value read by
    ``value``."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            out[key.strip()] = value(text)
        except ValueError:
            raise fail(
                f"{flag(name)} {item!r}: expected {LIST_FORMS[name]}, e.g. {flag(name)} {example}"
            ) from None
    return out
