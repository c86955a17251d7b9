"""The fit file: what a law writes (format 3) and how any fit file is read back, every field
checked first, so that whatever a law could not answer with (a missing key, a wrong type, a
NaN, a parameter of the wrong sign, nesting a parser cannot follow) is one FitError naming the
file and the field.

Format 3 holds the law's constructor parameters (``options``: what ``get_params`` gives,
never changed by ``fit``) and every fitted value: ``params``, ``intervals``, ``samples``,
``resamples`` (the bootstrap resample each sample was fitted on), ``compute`` (how the points
counted compute: ``fitting.compute``), ``objective``, ``details``, ``n_points``,
``points_digest``, ``excluded``, ``version``. Earlier formats are read as they were written:

- format 2 held the resolved ``flops_per_param_token`` among the options: it becomes the
  constant k of ``compute``; the resamples were recorded in ``details`` only when some could
  not be fitted; Kaplan's N was ``details["N"]``.
  Two parameters had the names of questions (``RENAMED``): the objective was ``loss``, the
  IsoFLOP law's ``budget_optimum`` was ``optimum``.
- format 1 (no ``format`` key) also named ``bootstrap_samples`` ``bootstrap``.

This module does not import the laws: it reads into the class the registry names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from scaling.fitting.compute import Compute
from scaling.fitting.errors import FitError, finite_number

FORMAT = 3
# Parameters of formats 1 and 2 renamed in 3: their names were those of questions the law
# answers as methods (``law.loss(...)``, ``law.optimum(...)``).
RENAMED = {"loss": "objective", "optimum": "budget_optimum"}
MAX_NESTING = 64  # a fit file nests 6 levels (details, a budget's row, its intervals)
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_COLON = re.compile(r"\s*:")


def contents(law) -> dict[str, Any]:
    """What ``law`` writes: format 3."""
    return {
        "law": law.law,
        "format": FORMAT,
        "formula": law.formula,
        "answers": sorted(law.answers),
        "covariates": list(law.covariates),
        "params": law.params_,
        "intervals": law.intervals_,
        **law.allocation_exponents(),
        "compute": law.compute_.to_dict(),
        "n_points": law.n_points_,
        "points_digest": law.points_digest_,
        "excluded": law.excluded_,
        "options": law.get_params(),
        "objective": law.objective_,
        "details": law.details_,
        "samples": law.samples_,
        "resamples": law.resamples_,
        "version": law.version_,
    }


def read(source: str | Path) -> tuple[Any, str]:
    """(the parsed JSON, a label for messages) from a fit file's path or its text."""
    text = str(source)
    label = "fit file"
    if not text.lstrip().startswith("{"):
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise FitError(f"{path}: no such fit file")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise FitError(f"{path}: cannot read ({err})") from None
    if (field := _too_deep(text)) is not None:
        raise FitError(
            f"{label}: {field or 'the file'}: nested more than {MAX_NESTING} levels deep; "
            "a fit file's values are numbers and lists or objects a few levels deep"
        )
    try:
        return json.loads(text), label
    except (json.JSONDecodeError, RecursionError) as err:
        raise FitError(f"{label}: not a fit file ({err})") from None


def law_from(data: Any, source: str, registry: dict[str, type], expected: type):
    """The law a fit file's ``data`` holds, of the class ``registry`` names for it (a
    subclass of ``expected``), its fitted attributes set."""
    if not isinstance(data, dict):
        raise FitError(f"{source}: not a fit file (not a JSON object)")
    name = data.get("law", "")
    law_cls = registry.get(name) if isinstance(name, str) else None
    if law_cls is None:
        raise FitError(f"{source}: unknown law {name!r}; known: {', '.join(sorted(registry))}")
    if not issubclass(law_cls, expected):
        raise FitError(f"{source}: holds a {name} law, not a {expected.law or expected.__name__}")
    version = data.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT:
        raise FitError(
            f"{source}: fit file format {version!r} is newer than this toolkit reads "
            f"({FORMAT}); upgrade scaling"
        )
    options = _read_field(data, "options", dict, {}, source, "an object of settings")
    options = dict(options)
    if version == 1 and "bootstrap" in options:
        options["bootstrap_samples"] = options.pop("bootstrap")
    if version < 3:  # parameters renamed where they met a question's name (``law.loss()``)
        for old, new in RENAMED.items():
            if old in options:
                options[new] = options.pop(old)
    details = dict(_read_field(data, "details", dict, {}, source, "an object"))
    compute = _read_compute(data, options, details, version, law_cls, source)
    parameters = _read_options(options, law_cls, source)
    try:  # the law checks the values of its parameters (level in (0, 1), ...)
        law = law_cls(**parameters)
    except FitError as err:
        raise FitError(f"{source}: options: {err}") from None
    if "params" not in data:
        raise FitError(f"{source}: no 'params': not a fit file (scaling fit writes them)")
    law.params_ = _read_params(data["params"], law_cls, source, "params", fitted=True)
    samples = _read_field(data, "samples", list, [], source, "a list of parameter sets")
    law.samples_ = [
        _read_params(sample, law_cls, source, f"samples[{i}]", fitted=False)
        for i, sample in enumerate(samples)
    ]
    law.intervals_ = _read_intervals(data.get("intervals", {}), source)
    law.compute_ = compute
    law.n_points_ = _read_field(data, "n_points", int, 0, source, "a whole number")
    law.points_digest_ = _read_field(data, "points_digest", str, "", source, "a string")
    law.excluded_ = _read_field(data, "excluded", list, [], source, "a list")
    law.objective_ = _read_field(data, "objective", float, None, source, "a number or null")
    law.version_ = _read_field(data, "version", str, "", source, "a string")
    if version < 3:
        law.resamples_ = _old_resamples(details, len(law.samples_), law.bootstrap_samples)
        details.pop("N", None)
    else:
        law.resamples_ = data.get("resamples", list(range(len(law.samples_))))
    law.details_ = details
    if problem := law_cls.details_problem(details):
        raise FitError(f"{source}: details: {problem}")
    if problem := _resamples_problem(law.resamples_, len(law.samples_), version):
        raise FitError(f"{source}: {problem}")
    return law


def _old_resamples(details: dict, samples: int, requested: Any) -> list[int] | None:
    """Which resample each sample of a format 1 or 2 file came from: recorded where some
    could not be fitted, else all in order when every one was; None where nobody knows."""
    recorded = details.pop("bootstrap_resamples", None)
    if recorded is not None:
        return recorded
    return list(range(samples)) if finite_number(requested) and samples == requested else None


def _resamples_problem(indices: Any, samples: int, version: int) -> str | None:
    """What is wrong with the record of which resample each bootstrap sample came from."""
    if indices is None:
        return None
    field = "resamples" if version >= 3 else "details: bootstrap_resamples"
    whole = isinstance(indices, list) and all(
        isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices
    )
    if not whole or len(set(indices)) != len(indices):
        return f"{field} must be a list of distinct resample numbers"
    if len(indices) != samples:
        return f"{field} names {len(indices)} resamples for {samples} samples"
    return None


def _read_compute(data, options, details, version, law_cls, source) -> Compute:
    """How the law counts compute: format 3's ``compute``; before, the constant k that the
    fit resolved into ``flops_per_param_token`` (6 where it held none), and Kaplan's N."""
    if version >= 3:
        return Compute.from_dict(data.get("compute", {}), f"{source}: compute")
    k = options.pop("flops_per_param_token", None)
    if k is not None and not (finite_number(k) and k > 0):
        raise FitError(
            f"{source}: options.flops_per_param_token: {_shown(k)} must be a positive number "
            "or null"
        )
    size = "non_embedding" if details.get("N") == "params_nonembedding" else "total"
    if k is None:
        return Compute(size=size)
    return Compute(k=float(k), how="constant", size=size)


def _too_deep(text: str) -> str | None:
    """The top-level key whose value nests deeper than ``MAX_NESTING`` ('' when no key
    holds it), or None. Python's parser recurses once per level and fails with a
    RecursionError, which names nothing; this scan counts the levels without recursing."""
    depth, key = 0, ""
    for token in _JSON_TOKENS.finditer(text):
        mark = token.group()
        if mark[0] == '"':
            if depth == 1 and _COLON.match(text, token.end()):
                key = mark[1:-1]
        elif mark in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return key
        else:
            depth -= 1
    return None


def _read_field(data: dict, key: str, kind: type, default: Any, source: str, allowed: str):
    """``data[key]`` checked to be of ``kind`` (float: any number or null), else FitError."""
    value = data.get(key, default)
    if kind is float:
        ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise FitError(f"{source}: {key}: {_shown(value)} must be {allowed}")
    return value


def _shown(value: Any) -> str:
    """A value as a message quotes it: short, whatever its size."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _read_params(value: Any, law_cls, source: str, field: str, fitted: bool) -> dict[str, float]:
    """One set of parameters (the fit's, or a bootstrap sample's): finite numbers by name,
    as the law needs them (``Law.params_problem``)."""
    if not isinstance(value, dict):
        raise FitError(f"{source}: {field}: {_shown(value)} must be an object of parameters")
    params = {}
    for name, number in value.items():
        if not finite_number(number):
            raise FitError(f"{source}: {field}.{name}: {_shown(number)} must be a finite number")
        params[name] = float(number)
    if problem := law_cls.params_problem(params, fitted):
        name, message = problem
        raise FitError(f"{source}: {field}{'.' + name if name else ''}: {message}")
    return params


def _read_intervals(value: Any, source: str) -> dict[str, list[float | None]]:
    """Intervals by name, each [low, high] (null where the bootstrap gave no number)."""
    if not isinstance(value, dict):
        raise FitError(f"{source}: intervals: {_shown(value)} must be an object")
    for name, pair in value.items():
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(end is None or finite_number(end) for end in pair)
        ):
            raise FitError(f"{source}: intervals.{name}: {_shown(pair)} must be [low, high]")
    return value


def _read_options(options: dict, law_cls, source: str) -> dict[str, Any]:
    """The law's parameters from a fit file's ``options``, each of its default's type. Keys
    that are not this law's parameters (another toolkit version's) are passed over."""
    known = law_cls.signature()
    parameters = {}
    for name, value in options.items():
        if name not in known:
            continue
        if problem := _option_problem(value, known[name].default):
            raise FitError(f"{source}: options.{name}: {_shown(value)} must be {problem}")
        parameters[name] = value
    return parameters


def _option_problem(value: Any, default: Any) -> str | None:
    """What ``value`` must be instead, for a parameter whose default is ``default``; or None."""
    if default is None:  # the one such parameter is an object (the data-constrained base)
        return (
            None if value is None or isinstance(value, dict) else "an object of parameters or null"
        )
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return None if whole and not isinstance(value, bool) else "a whole number"
    if isinstance(default, float):
        return None if finite_number(value) else "a number"
    if isinstance(default, str | dict):
        kind = "a string" if isinstance(default, str) else "an object"
        return None if isinstance(value, type(default)) else kind
    return None


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value
