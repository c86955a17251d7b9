"""What every law shares: an estimator's parameters, one fit with one bootstrap, the questions
it answers, and its fit file.

A law is an estimator in the manner of scikit-learn. Its parameters are the keyword arguments
of its constructor (``ParametricLaw(objective="l2", bootstrap_samples=200)``), each annotated with
what it means; ``get_params`` reads them from the signature and ``fit`` never changes them.
``fit(data)`` sets the fitted attributes, each ending in ``_`` (``params_``, ``intervals_``,
``samples_``, ``resamples_``, ``compute_``, ``objective_``, ``details_``, ``n_points_``,
``points_digest_``, ``excluded_``, ``version_``), every one saved in the fit file, and returns
the law. The data's own type (``points.Points``, ``points.Curves``) says how the one bootstrap
resamples it.

The questions a law answers (``answers``) are methods, each taking an optional bootstrap
``sample``:

- ``"loss"``:            ``loss(params, tokens, sample=None, **covariates)`` (an array) and
                         ``at(params, tokens, ...)`` (the loss and what else the law says there)
- ``"optimum"``:         ``optimum(compute, sample=None)``, spending ``compute`` as the points
                         counted it (``compute_``), and ``compute_for(params=|tokens=)``
- ``"hyperparameters"``: ``hyperparameters(compute, sample=None)`` (lr, batch_tokens)

``predict`` is a convenience over them that adds bootstrap intervals. ``covariates`` names
the inputs beyond N and D that ``loss`` takes (unique tokens, number of experts). The fit file
(``fitting.fitfile``) carries ``format``; a file of a newer format is refused with a message,
an older one is read.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, get_type_hints

import numpy as np

from scaling import __version__
from scaling.fileio import write_atomic
from scaling.fitting import fitfile
from scaling.fitting.bootstrap import bootstrap, intervals, percentile_interval
from scaling.fitting.compute import Compute
from scaling.fitting.errors import FitError, coverage, one_of, positive
from scaling.fitting.points import SIZE_COLUMNS, UNITS, as_points

LAWS: dict[str, type[Law]] = {}
MIN_BOOTSTRAP_FITTED = 0.5  # the fraction of resamples that must fit for intervals to mean much
# The optimisers work on small matrices: one BLAS thread is as fast idle, and OpenBLAS's
# thread per core, spinning against another process on a busy machine, made a 0.7 s fit take
# 45 s (benchmarks/fit_under_load.py). None: leave the thread count alone.
FIT_BLAS_THREADS: int | None = 1


def blas_threads():
    """A context in which BLAS (numpy, scipy) uses ``FIT_BLAS_THREADS`` threads."""
    if FIT_BLAS_THREADS is None:
        return contextlib.nullcontext()
    # threadpoolctl limits the BLAS libraries loaded when the context starts: scipy's own
    # (its optimizers' L-BFGS calls it) must be loaded first, or a fit that imports scipy
    # inside the context runs it on a thread per core (a 9 s degenerate fit took 47 s so)
    import scipy.optimize  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=FIT_BLAS_THREADS, user_api="blas")


@dataclass
class Fit:
    """What a law's ``_fit`` finds: its parameters, its objective, details for the fit file,
    and ``warm``: what its bootstrap refits start from (used during ``fit``, not kept)."""

    params: dict[str, float]
    objective: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    warm: Any = None


class Law:
    """Base of every law. A subclass sets ``law``, ``formula``, ``answers``, ``covariates``
    and what its fit file's parameters must be, takes its own parameters as keyword arguments
    (passing the common ones on as ``**common``), and implements ``_fit`` and ``_refit``."""

    law: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    answers: ClassVar[frozenset[str]] = frozenset()
    covariates: ClassVar[tuple[str, ...]] = ()
    # What a fit file's parameters must be, checked when it is read: the names every fit of
    # this law holds, those > 0 in the fit and in each bootstrap sample (they are divided by or
    # raised to a power), and those > 0 in the fit alone (a degenerate resample may put an
    # exponent at or below 0; that sample's optimum is undefined and left out of intervals).
    parameters: ClassVar[tuple[str, ...]] = ()
    positive_params: ClassVar[tuple[str, ...]] = ()
    positive_in_fit: ClassVar[tuple[str, ...]] = ()
    # What its bootstrap may draw: its input's units (the loss-curve laws': curves).
    units: ClassVar[tuple[str, ...]] = UNITS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A parameter lives in the attribute of its name (``get_params``): one named as a
        # method (``loss``, ``optimum``) would hide the question behind a string.
        for name in inspect.signature(cls.__init__).parameters:
            if callable(getattr(cls, name, None)):
                raise TypeError(f"{cls.__name__}: parameter {name!r} hides the method {name}()")
        if cls.law:
            LAWS[cls.law] = cls

    def __init__(
        self,
        *,
        bootstrap_samples: Annotated[int, "Bootstrap refits (0: none)."] = 0,
        bootstrap_unit: Annotated[
            str, "What a bootstrap resample draws: points, runs or budgets."
        ] = "points",
        seed: Annotated[int, "Bootstrap seed."] = 0,
        level: Annotated[
            float, "Coverage of the intervals: 0.95, or 0.8 as Chinchilla reports."
        ] = 0.95,
    ):
        self.bootstrap_samples = bootstrap_samples
        self.bootstrap_unit = bootstrap_unit
        self.seed = seed
        self.level = level
        self._check()
        self.params_: dict[str, float] = {}
        self.intervals_: dict[str, list[float | None]] = {}
        self.samples_: list[dict[str, float]] = []
        self.resamples_: list[int] | None = []
        self.compute_ = Compute()
        self.objective_: float | None = None
        self.details_: dict[str, Any] = {}
        self.n_points_ = 0
        self.points_digest_ = ""
        self.excluded_: list[dict[str, Any]] = []
        self.version_ = __version__

    def _check(self) -> None:
        """Each parameter checked where it is set (a bad one is one line naming it)."""
        samples = self.bootstrap_samples
        if isinstance(samples, bool) or not isinstance(samples, int | float) or samples < 0:
            raise FitError("must be 0 or more", param="bootstrap_samples", value=samples)
        coverage(self.level)
        one_of("bootstrap_unit", self.bootstrap_unit, self.units)

    # -- the estimator's parameters ------------------------------------------------------------
    @classmethod
    def signature(cls) -> dict[str, inspect.Parameter]:
        """The law's parameters by name, from the keyword arguments of its constructor and
        those it passes on (the common ones), each with its default and annotation (its
        type, and what it means as ``Annotated`` metadata)."""
        found: dict[str, inspect.Parameter] = {}
        for klass in cls.__mro__:
            if "__init__" not in vars(klass) or not issubclass(klass, Law):
                continue
            hints = get_type_hints(klass.__init__, include_extras=True)
            for name, param in inspect.signature(klass.__init__).parameters.items():
                if param.kind is param.KEYWORD_ONLY and name not in found:
                    found[name] = param.replace(annotation=hints.get(name, param.annotation))
        return found

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The parameters of the constructor, as scikit-learn names them."""
        return {name: getattr(self, name) for name in self.signature()}

    def set_params(self, **params: Any) -> Self:
        unknown = sorted(set(params) - set(self.signature()))
        if unknown:
            raise FitError(
                f"the {self.law} law has no parameter {unknown[0]!r}; its parameters are "
                + ", ".join(self.signature())
            )
        for name, value in params.items():
            setattr(self, name, value)
        self._check()
        return self

    @classmethod
    def from_params(
        cls,
        params: dict[str, float],
        samples: list[dict[str, float]] | None = None,
        compute: Compute | None = None,
        **parameters: Any,
    ) -> Self:
        """A law with known parameters (a published one, or a test's truth), spending compute
        as ``compute`` says (default: C = 6·N·D)."""
        law = cls(**parameters)
        law.params_ = {k: float(v) for k, v in params.items()}
        law.samples_ = list(samples or [])
        law.resamples_ = list(range(len(law.samples_)))
        law.compute_ = compute or Compute()
        return law

    def __repr__(self) -> str:
        changed = {
            name: getattr(self, name)
            for name, param in self.signature().items()
            if getattr(self, name) != param.default
        }
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        state = f" fitted on {self.n_points_} points" if self.params_ else ""
        return f"{type(self).__name__}({args}){state}"

    # -- fitting -------------------------------------------------------------------------------
    def _data(self, data) -> Any:
        """The law's input from ``data``: points (a DataFrame is read by ``prepare_points``)."""
        return as_points(data)

    def fit(self, data) -> Self:
        """Fit on ``data`` (``Points``, or a DataFrame with canonical columns), then refit
        ``bootstrap_samples`` resamples drawn as the data says. Where fewer than half the
        resamples can be fitted, the survivors are not a sample of the law's uncertainty: no
        intervals, and ``details_`` says why."""
        data = self._data(data)
        requested = int(self.bootstrap_samples)
        with blas_threads():
            found = self._fit(data)
            samples, resamples = bootstrap(
                data,
                lambda resample: self._refit(resample, found),
                requested,
                self.bootstrap_unit,
                self.seed,
            )
        details = dict(found.details)
        if getattr(data, "predicted", 0):  # points a loss-curve law predicted (never silent)
            details["predicted_points"] = int(data.predicted)
        if requested and len(samples) < MIN_BOOTSTRAP_FITTED * requested:
            details["bootstrap"] = (
                f"only {len(samples)} of {requested} resamples could be fitted; "
                "no intervals (more points per budget would give them)"
            )
            samples, resamples = [], []
        self.params_, self.objective_, self.details_ = found.params, found.objective, details
        self.samples_, self.resamples_ = samples, resamples
        self.intervals_ = intervals(samples, self.level)
        self.compute_ = data.compute
        self.n_points_, self.points_digest_ = len(data), data.digest
        self.excluded_ = list(data.excluded)
        self.version_ = __version__
        return self

    def _fit(self, data) -> Fit:
        """The fit on ``data``; raise FitError when impossible. Every law implements it."""
        raise NotImplementedError(f"{type(self).__name__} defines no _fit")

    def _refit(self, data, found: Fit) -> dict[str, float] | None:
        """Parameters on one bootstrap resample (warm-started from ``found``); None when that
        resample admits no fit. Every law that is bootstrapped implements it."""
        raise NotImplementedError(f"{type(self).__name__} defines no _refit")

    # -- the questions -------------------------------------------------------------------------
    def _cannot(self, question: str) -> FitError:
        can = ", ".join(sorted(self.answers)) or "nothing"
        return FitError(f"the {self.law} law gives no {question}; it answers: {can}")

    def loss(self, params, tokens, sample: dict[str, float] | None = None, **covariates):
        raise self._cannot("loss")

    def at(self, params, tokens, sample: dict[str, float] | None = None, **covariates) -> dict:
        """The loss of a model of ``params`` trained on ``tokens`` (and what else the law
        says there)."""
        loss = float(self.loss(params, tokens, sample, **covariates))
        return {"params": params, "tokens": tokens, **covariates, "loss": loss}

    def sizes(self, frame):
        """The N that ``loss`` takes, from a frame of points or runs (or a dict of counts):
        the count the points were sized by (``compute_.size``: total parameters unless the
        sweep sized by active ones; Kaplan's non-embedding N)."""
        column = SIZE_COLUMNS[self.compute_.size]
        if column not in frame:
            raise FitError(f"the {self.law} law takes N as {column}; these rows have none")
        return frame[column]

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

    def predict(
        self,
        compute: float | None = None,
        params: float | None = None,
        tokens: float | None = None,
        level: float | None = None,
        **covariates: float,
    ) -> dict[str, Any]:
        """A convenience over the questions, each answer with its bootstrap interval at
        ``level`` (default: the law's): ``params`` and ``tokens`` together ask ``at`` (the
        loss there, with the law's ``covariates``); ``compute`` asks ``optimum`` (a
        hyperparameter law: ``hyperparameters``); ``params`` or ``tokens`` alone ask the
        optimum at the compute whose optimum has that size or token count (``compute_for``)."""
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
        ask = self._question(compute, params, tokens, covariates)
        point = ask(None)
        out: dict[str, Any] = {k: float(v) for k, v in point.items()}
        level = coverage(self.level if level is None else level)
        if self.samples_:
            draws = [ask(sample) for sample in self.samples_]
            out["intervals"] = {
                key: percentile_interval(np.array([d[key] for d in draws], dtype=float), level)
                for key in point
            }
        return out

    def _question(self, compute, params, tokens, covariates):
        """The question ``predict`` was asked, as a function of a bootstrap sample."""
        given = sum(v is not None for v in (compute, params, tokens))
        if given == 0 or (compute is not None and given > 1):
            raise FitError("give compute, params, tokens, or params and tokens together")
        if params is not None and tokens is not None:
            if "loss" not in self.answers:
                raise self._cannot("loss")
            return lambda sample: self.at(params, tokens, sample, **covariates)
        if "optimum" in self.answers:
            if compute is not None:
                return lambda sample: self.optimum(compute, sample)
            return lambda sample: self.optimum(
                self.compute_for(sample, params=params, tokens=tokens), sample
            )
        if "hyperparameters" in self.answers and compute is not None:
            return lambda sample: {"compute": compute, **self.hyperparameters(compute, sample)}
        if "loss" in self.answers:
            raise FitError(
                f"the {self.law} law predicts the loss of a given size and token count: "
                "give both params and tokens"
            )
        raise FitError(f"the {self.law} law predicts from a compute budget alone")

    def _check_fitted(self) -> None:
        if not self.params_:
            raise FitError(f"the {self.law} law is not fitted yet: call fit(points) first")

    # -- the fit file --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fit file's contents (``fitting.fitfile``, format 3)."""
        return fitfile.contents(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(fitfile.jsonable(self.to_dict()), indent=2) + "\n"
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
        """The law a fit file holds, every field checked first (``fitfile.law_from``)."""
        return fitfile.law_from(data, source, LAWS, cls)

    @classmethod
    def from_json(cls, source: str | Path) -> Law:
        """A law from a fit file (path) or from the JSON text itself."""
        data, label = fitfile.read(source)
        return cls.from_dict(data, label)
