"""What every law shares: settings, fitting with bootstrap, the questions it answers, and its
fit file.

A law is an estimator in the manner of scikit-learn: settings go into the constructor
(``ParametricLaw(loss="l2", bootstrap_samples=200)``), ``fit(points)`` sets the fitted
attributes (``params``, ``intervals``, ``samples``, ...) and returns the law, ``predict``
answers questions about budgets nobody trained, and ``to_json`` / ``Law.from_json`` round-trip
everything (bootstrap samples included, so a loaded law predicts with the same intervals).

The protocol the CLI, the planner's ``fit:`` rules and plotting rely on is ``answers``, the
questions a law can answer, each a method taking an optional bootstrap ``sample``:

- ``"loss"``:            ``loss(params, tokens, sample=None, **covariates)``
- ``"optimum"``:         ``optimum(compute, sample=None)`` and ``compute_for(params=|tokens=)``
- ``"hyperparameters"``: ``hyperparameters(compute, sample=None)`` (lr, batch_tokens)

``covariates`` names the inputs beyond N and D that ``loss`` and ``predict`` take (unique
tokens, number of experts). The file format carries ``format``; a file of a newer format is
refused with a message, an older one is read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike

from scaling.config import ConfigError
from scaling.fileio import write_atomic

LAWS: dict[str, type[Law]] = {}
FORMAT = 2  # 1: settings under their old names (bootstrap for bootstrap_samples)
MIN_BOOTSTRAP_FITTED = 0.5  # the fraction of resamples that must fit for intervals to mean much
COMMON_SETTINGS = {"bootstrap_samples": 0, "bootstrap_unit": "points", "seed": 0, "level": 0.95}
# The optimisers work on small matrices: one BLAS thread is as fast idle, and OpenBLAS's
# thread per core, spinning against another process on a busy machine, made a 0.7 s fit take
# 45 s (benchmarks/fit_under_load.py). None: leave the thread count alone.
FIT_BLAS_THREADS: int | None = 1


def blas_threads():
    """A context in which BLAS (numpy, scipy) uses ``FIT_BLAS_THREADS`` threads."""
    import contextlib

    if FIT_BLAS_THREADS is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=FIT_BLAS_THREADS, user_api="blas")


BOOTSTRAP_UNITS = ("points", "runs", "budgets")


class FitError(ConfigError):
    """A fit that cannot be made from these points, or a question a law cannot answer."""


def toolkit_version() -> str:
    from scaling import __version__

    return __version__


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


# Values this close (relative to their size) are equal but for round-off: a fit through them
# finds round-off, not a law (a parabola "through" equal losses opens up or down by chance).
ROUND_OFF = 1e-9


def all_equal(values: ArrayLike) -> bool:
    """Whether ``values`` are the same number but for round-off (``ROUND_OFF``)."""
    values = np.asarray(values, dtype=float)
    return bool(np.ptp(values) <= ROUND_OFF * np.max(np.abs(values))) if values.size else True


def require_varying(values: ArrayLike, source: str, law: str, what: str = "losses") -> None:
    """A FitError unless ``values`` differ beyond round-off: equal losses carry no trend, and
    every law fitted through them would report round-off as a fit."""
    if all_equal(values):
        raise FitError(
            f"{source}: all {len(values)} {what} are equal ({float(np.asarray(values)[0]):.6g}), "
            f"so they cannot identify the {law} law's parameters: it needs {what} that differ"
        )


def positive(name: str, value: float | None) -> float | None:
    """``value`` checked to be a positive finite number (None passes through)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FitError("must be a positive number", param=name, value=value) from None
    if not math.isfinite(number) or number <= 0:
        raise FitError("must be a positive finite number", param=name, value=value)
    return number


class Law:
    """Base of every law. Subclasses set ``law``, ``formula``, ``defaults`` (their own
    settings), ``answers`` and ``covariates``, and implement ``_fit`` and ``_refit``."""

    law: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    answers: ClassVar[frozenset[str]] = frozenset()
    covariates: ClassVar[tuple[str, ...]] = ()
    # What a fit file's parameters must be, checked when it is read: the names every fit of
    # this law holds, those > 0 in the fit and in each bootstrap sample (they are divided by or
    # raised to a power), and those > 0 in the fit alone (a degenerate resample may put an
    # exponent at or below 0; that sample's optimum is undefined and left out of intervals).
    parameters: ClassVar[tuple[str, ...]] = ()
    positive_params: ClassVar[tuple[str, ...]] = ()
    positive_in_fit: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.law:
            LAWS[cls.law] = cls

    def __init__(self, **settings: Any):
        allowed = {**COMMON_SETTINGS, **self.defaults}
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            raise FitError(
                f"{self.law}: unknown setting {unknown[0]!r}; settings are {', '.join(allowed)}"
            )
        self.settings: dict[str, Any] = {**allowed, **settings}
        if int(self.settings["bootstrap_samples"]) < 0:
            raise FitError(
                "must be 0 or more", param="bootstrap_samples", value=settings["bootstrap_samples"]
            )
        level = self.settings["level"]
        if not isinstance(level, int | float) or not 0 < level < 1:
            raise FitError(
                "the interval's coverage, in (0, 1), e.g. 0.8", param="level", value=level
            )
        if self.settings["bootstrap_unit"] not in BOOTSTRAP_UNITS:
            raise FitError(
                f"must be one of {', '.join(BOOTSTRAP_UNITS)}",
                param="bootstrap_unit",
                value=self.settings["bootstrap_unit"],
            )
        self.params: dict[str, float] = {}
        self.intervals: dict[str, list[float]] = {}
        self.samples: list[dict[str, float]] = []
        self.n_points = 0
        self.points_digest = ""
        self.excluded: list[dict[str, Any]] = []
        self.objective: float | None = None
        self.details: dict[str, Any] = {}
        self.version = toolkit_version()

    @classmethod
    def from_params(
        cls, params: dict[str, float], samples: list[dict[str, float]] | None = None, **settings
    ) -> Self:
        """A law with known parameters (a published one, or a test's truth)."""
        law = cls(**settings)
        law.params = {k: float(v) for k, v in params.items()}
        law.samples = list(samples or [])
        return law

    def get_params(self) -> dict[str, Any]:
        """The settings, as scikit-learn names them."""
        return dict(self.settings)

    def __repr__(self) -> str:
        changed = {
            k: v for k, v in self.settings.items() if v != {**COMMON_SETTINGS, **self.defaults}[k]
        }
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        state = f" fitted on {self.n_points} points" if self.params else ""
        return f"{type(self).__name__}({args}){state}"

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, data) -> Self:
        """Fit on ``data`` (``Points`` or a DataFrame with canonical columns), then refit
        ``bootstrap_samples`` resamples. Where fewer than half the resamples can be fitted, the
        survivors are not a sample of the law's uncertainty: no intervals, and ``details``
        says why."""
        from scaling.fitting.bootstrap import bootstrap
        from scaling.fitting.points import as_points

        points = as_points(data)
        requested = int(self.settings["bootstrap_samples"])
        with blas_threads():
            params, objective, details = self._fit(points)
            samples, intervals, fitted = bootstrap(
                self._bootstrap_frame(points),
                lambda frame: self._refit(frame, params),
                requested,
                self.settings["bootstrap_unit"],
                self.settings["seed"],
                self.settings["level"],
            )
        if requested and len(samples) < MIN_BOOTSTRAP_FITTED * requested:
            details["bootstrap"] = (
                f"only {len(samples)} of {requested} resamples could be fitted; "
                "no intervals (more points per budget would give them)"
            )
            samples, intervals = [], {}
        elif len(samples) < requested:  # which resamples the samples are, to pair them
            details["bootstrap_resamples"] = fitted
        self.params, self.objective, self.details = params, objective, details
        self.samples, self.intervals = samples, intervals
        self.n_points, self.points_digest = len(points), points.digest
        self.excluded = list(points.excluded)
        return self

    def _fit(self, points) -> tuple[dict[str, float], float | None, dict[str, Any]]:
        """(params, objective, details) on ``points``; raise FitError when impossible. Every
        law implements it (the envelope law, fitted on curves, overrides ``fit`` itself)."""
        raise NotImplementedError(f"{type(self).__name__} defines no _fit")

    def _refit(self, frame, params: dict[str, float]) -> dict[str, float] | None:
        """Parameters on one bootstrap resample (warm-started from ``params``); None when
        that resample admits no fit. Every law that ``fit`` bootstraps implements it."""
        raise NotImplementedError(f"{type(self).__name__} defines no _refit")

    def _bootstrap_frame(self, points):
        return points.frame

    # -- the questions -------------------------------------------------------------------------
    def _cannot(self, question: str) -> FitError:
        can = ", ".join(sorted(self.answers)) or "nothing"
        return FitError(f"the {self.law} law gives no {question}; it answers: {can}")

    def loss(self, params, tokens, sample: dict[str, float] | None = None, **covariates):
        raise self._cannot("loss")

    def sizes(self, frame):
        """The N that ``loss`` takes, from a frame of points or runs: total parameters,
        unless the law counts another way (Kaplan's non-embedding N)."""
        return frame["params"]

    def optimum(self, compute: float, sample: dict[str, float] | None = None) -> dict[str, float]:
        raise self._cannot("compute-optimal allocation")

    def compute_for(
        self, sample: dict[str, float] | None = None, params=None, tokens=None
    ) -> float:
        raise self._cannot("compute-optimal allocation")

    def hyperparameters(
        self, compute: float, sample: dict[str, float] | None = None
    ) -> dict[str, float]:
        raise self._cannot("learning rate or batch size")

    def allocation_exponents(self) -> dict[str, Any]:
        """``a`` and ``b`` of N_opt ∝ C^a and D_opt ∝ C^b where the law implies them."""
        return {}

    def _answer(self, sample, compute, params, tokens, covariates) -> dict[str, float]:
        p = sample or self.params
        if params is not None and tokens is not None:
            if "loss" not in self.answers:
                raise self._cannot("loss")
            out = {"params": params, "tokens": tokens, **covariates}
            out["loss"] = float(self.loss(params, tokens, p, **covariates))
            return out
        if "optimum" in self.answers:
            if compute is None:
                compute = self.compute_for(p, params=params, tokens=tokens)
            return self.optimum(compute, p)
        if "hyperparameters" in self.answers and compute is not None:
            return {"compute": compute, **self.hyperparameters(compute, p)}
        if "loss" in self.answers:
            raise FitError(
                f"the {self.law} law predicts the loss of a given size and token count: "
                "give both params and tokens"
            )
        raise FitError(f"the {self.law} law predicts from a compute budget alone")

    def predict(
        self,
        compute: float | None = None,
        params: float | None = None,
        tokens: float | None = None,
        level: float | None = None,
        **covariates: float,
    ) -> dict[str, Any]:
        """Ask the law: ``params`` and ``tokens`` together give the loss there; ``compute``, or
        ``params`` or ``tokens`` alone, give the compute-optimal allocation (and, for a
        hyperparameter law, the learning rate and batch size at that compute). ``covariates``:
        the law's own (``self.covariates``). Each answer carries its bootstrap interval."""
        self._check_fitted()
        compute, params, tokens = (
            positive(name, value)
            for name, value in (("compute", compute), ("params", params), ("tokens", tokens))
        )
        unknown = sorted(set(covariates) - set(self.covariates))
        if unknown:
            takes = ", ".join(self.covariates) or "no covariates"
            raise FitError(f"the {self.law} law takes no {unknown[0]}; it takes {takes}")
        covariates = {k: positive(k, v) if k != "n_experts" else v for k, v in covariates.items()}
        given = sum(v is not None for v in (compute, params, tokens))
        if given == 0 or (compute is not None and given > 1):
            raise FitError("give compute, params, tokens, or params and tokens together")

        def answer(sample):
            return self._answer(sample, compute, params, tokens, covariates)

        point = answer(None)
        out: dict[str, Any] = {k: float(v) for k, v in point.items()}
        level = self.settings["level"] if level is None else level
        if not 0 < level < 1:
            raise FitError(
                "the interval's coverage, in (0, 1), e.g. 0.8", param="level", value=level
            )
        if self.samples:
            draws = [answer(sample) for sample in self.samples]
            out["intervals"] = {
                key: percentile_interval(np.array([d[key] for d in draws], dtype=float), level)
                for key in point
            }
        return out

    def _check_fitted(self) -> None:
        if not self.params:
            raise FitError(f"the {self.law} law is not fitted yet: call fit(points) first")

    # -- the fit file --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "format": FORMAT,
            "formula": self.formula,
            "answers": sorted(self.answers),
            "covariates": list(self.covariates),
            "params": self.params,
            "intervals": self.intervals,
            **self.allocation_exponents(),
            "n_points": self.n_points,
            "points_digest": self.points_digest,
            "excluded": self.excluded,
            "options": self.settings,
            "objective": self.objective,
            "details": self.details,
            "samples": self.samples,
            "version": self.version,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(_jsonable(self.to_dict()), indent=2) + "\n"
        if path is not None:
            write_atomic(path, text)
        return text

    @classmethod
    def params_problem(cls, params: dict[str, float], fitted: bool) -> tuple[str, str] | None:
        """(the parameter, what is wrong) with one set of finite parameters read from a fit
        file, the fit's own (``fitted``) or a bootstrap sample's; None when they will do."""
        for name in cls.parameters:
            if name not in params:
                return "", f"no {name!r}; the {cls.law} law's are {', '.join(cls.parameters)}"
        for name in cls.positive_params + (cls.positive_in_fit if fitted else ()):
            if params[name] <= 0:
                return name, f"{params[name]!r} must be positive"
        return None

    @classmethod
    def details_problem(cls, details: dict[str, Any]) -> str | None:
        """What is wrong with the ``details`` of a fit file that its readers rely on, or
        None. Details are a record; a law whose readers draw from them checks them here."""
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "fit file") -> Law:
        """The law a fit file holds, every field checked first: anything a law could not
        answer with (a missing key, a wrong type, a NaN, a parameter of the wrong sign) is one
        FitError naming ``source`` and the field. Earlier formats are read as they were
        written (format 1: ``bootstrap`` for ``bootstrap_samples``)."""
        if not isinstance(data, dict):
            raise FitError(f"{source}: not a fit file (not a JSON object)")
        name = data.get("law", "")
        law_cls = LAWS.get(name) if isinstance(name, str) else None
        if law_cls is None:
            raise FitError(f"{source}: unknown law {name!r}; known: {', '.join(sorted(LAWS))}")
        if cls is not Law and not issubclass(law_cls, cls):
            raise FitError(f"{source}: holds a {name} law, not a {cls.law or cls.__name__}")
        version = data.get("format", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT:
            raise FitError(
                f"{source}: fit file format {version!r} is newer than this toolkit reads "
                f"({FORMAT}); upgrade scaling"
            )
        settings = _read_settings(data.get("options", {}), version, law_cls, source)
        try:  # the law checks the values of its settings (level in (0, 1), ...)
            law = law_cls(**settings)
        except FitError as err:
            raise FitError(f"{source}: options: {err}") from None
        if "params" not in data:
            raise FitError(f"{source}: no 'params': not a fit file (scaling fit writes them)")
        law.params = _read_params(data["params"], law_cls, source, "params", fitted=True)
        samples = _read_field(data, "samples", list, [], source, "a list of parameter sets")
        law.samples = [
            _read_params(sample, law_cls, source, f"samples[{i}]", fitted=False)
            for i, sample in enumerate(samples)
        ]
        law.intervals = _read_intervals(data.get("intervals", {}), source)
        law.n_points = _read_field(data, "n_points", int, 0, source, "a whole number")
        law.points_digest = _read_field(data, "points_digest", str, "", source, "a string")
        law.excluded = _read_field(data, "excluded", list, [], source, "a list")
        law.objective = _read_field(data, "objective", float, None, source, "a number or null")
        law.details = _read_field(data, "details", dict, {}, source, "an object")
        law.version = _read_field(data, "version", str, "", source, "a string")
        if problem := law_cls.details_problem(law.details) or _resamples_problem(law):
            raise FitError(f"{source}: details: {problem}")
        return law

    @classmethod
    def from_json(cls, source: str | Path) -> Law:
        """A law from a fit file (path) or from the JSON text itself."""
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
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise FitError(f"{label}: not a fit file ({err})") from None
        return cls.from_dict(data, label)


# -- reading a fit file ------------------------------------------------------------------------
MAX_NESTING = 64  # a fit file nests 6 levels (details, a budget's row, its intervals)
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_COLON = re.compile(r"\s*:")


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


def _resamples_problem(law: Law) -> str | None:
    """What is wrong with the record of which resample each bootstrap sample came from."""
    indices = law.details.get("bootstrap_resamples")
    if indices is None:
        return None
    whole = all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)
    if not isinstance(indices, list) or not whole or len(set(indices)) != len(indices):
        return "bootstrap_resamples must be a list of distinct resample numbers"
    if len(indices) != len(law.samples):
        return f"bootstrap_resamples names {len(indices)} resamples for {len(law.samples)} samples"
    return None


def finite_number(value: Any) -> bool:
    """Whether ``value`` read from JSON is a finite number (true and false are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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


def _read_params(
    value: Any, law_cls: type[Law], source: str, field: str, fitted: bool
) -> dict[str, float]:
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


# Settings whose default is None (unset): what a fit file may hold there instead.
OPTIONAL_SETTINGS = {
    "flops_per_param_token": ("a positive number", lambda v: finite_number(v) and v > 0),
    "base": ("an object of parameters", lambda v: isinstance(v, dict)),
}


def _read_settings(options: Any, version: int, law_cls: type[Law], source: str) -> dict:
    """The law's settings from a fit file's ``options``, each of its default's type. Keys
    that are not this law's settings (another toolkit version's) are passed over."""
    if not isinstance(options, dict):
        raise FitError(f"{source}: options: {_shown(options)} must be an object of settings")
    options = dict(options)
    if version == 1 and "bootstrap" in options:
        options["bootstrap_samples"] = options.pop("bootstrap")
    known = {**COMMON_SETTINGS, **law_cls.defaults}
    settings = {}
    for name, value in options.items():
        if name not in known:
            continue
        if problem := _setting_problem(name, value, known[name]):
            raise FitError(f"{source}: options.{name}: {_shown(value)} must be {problem}")
        settings[name] = value
    return settings


def _setting_problem(name: str, value: Any, default: Any) -> str | None:
    """What ``value`` must be instead, for a setting whose default is ``default``; or None."""
    if default is None:
        allowed, ok = OPTIONAL_SETTINGS.get(name, ("anything", lambda v: True))
        return None if value is None or ok(value) else f"{allowed} or null"
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value
