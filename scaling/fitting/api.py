"""One entry point over every law, the one the CLI and the demo use: load points, fit by name
(with an optional backtest and the compute-optimal table), choose where the fit file goes,
and find the fit files of a runs directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaling import published, results
from scaling.fileio import write_atomic
from scaling.fitting.backtest import backtest
from scaling.fitting.base import LAWS, Law
from scaling.fitting.curves import LrCurves, curves_from_runs, curves_from_table
from scaling.fitting.errors import FitError
from scaling.fitting.optimal_schedule import optimal_schedule, parse_request
from scaling.fitting.points import Curves, Points, as_curves, read_table
from scaling.fitting.predicted import predicted_points
from scaling.rundir import RunsDir

if TYPE_CHECKING:
    import pandas as pd

LAW_NAMES = (
    "parametric",
    "isoflop",
    "envelope",
    "kaplan",
    "data-constrained",
    "moe",
    "hparams",
    "downstream",
    "multi-power",
    "lr-annealing",
)
# The loss-curve laws: fitted on curves with their lr schedules (``fitting.curves``), asked
# for the loss along a schedule; ``--law all`` fits the others.
CURVE_LAWS = ("multi-power", "lr-annealing")
POINT_LAWS = tuple(name for name in LAW_NAMES if name not in CURVE_LAWS)
OPTIMA_MULTIPLES = (1, 10, 100)  # the compute-optimal table: the largest budget and beyond


def load_source(source: str | Path) -> tuple[pd.DataFrame, RunsDir | None]:
    """(table, runs directory or None) from a runs directory, a CSV/Parquet file or a
    bundled published dataset (``builtin:chinchilla``; see ``scaling.published``)."""
    if published.is_builtin(source):
        return published.load(str(source)), None
    path = Path(source)
    if path.is_dir():
        return results.load(path), RunsDir(path)
    return read_table(path), None


def load_curves_source(source: str | Path) -> tuple[LrCurves, RunsDir | None]:
    """(curves, runs directory or None) for a loss-curve law: a runs directory (every run's
    lr rebuilt from its config), a CSV/Parquet of ``run, step, lr, loss``, or a bundled
    dataset of curves (``builtin:multipower-25m``)."""
    if published.is_builtin(source):
        return curves_from_table(published.load(str(source)), str(source)), None
    path = Path(source)
    if path.is_dir():
        return curves_from_runs(path), RunsDir(path)
    return curves_from_table(read_table(path), str(path)), None


def fit_curve_law(
    name: str, source: str | Path, out: Path | None = None, **options: Any
) -> FitOutcome:
    """Fit the loss-curve law ``name`` on the curves of ``source`` and write its fit file
    (``out``, else RUNS/fits/<law>.json for a runs directory)."""
    if name not in CURVE_LAWS:
        raise FitError(f"must be one of {', '.join(CURVE_LAWS)}", param="law", value=name)
    curves, runs = load_curves_source(source)
    law = make_law(name, **options).fit(curves)
    outcome = FitOutcome(law, path=fit_target(name, out, runs, many=False))
    if outcome.path is not None:
        law.to_json(outcome.path)
    return outcome


def law_class(name: str) -> type[Law]:
    if name not in LAWS:
        raise FitError(f"must be one of {', '.join(LAW_NAMES)} or all", param="law", value=name)
    return LAWS[name]


def make_law(name: str, **options: Any) -> Law:
    """The law called ``name`` with those of ``options`` that are its parameters (the others
    belong to other laws: a CLI passes one set of options to every law of ``--law all``);
    None: the law's default."""
    cls = law_class(name)
    known = cls.signature()
    return cls(**{k: v for k, v in options.items() if k in known and v is not None})


def fit_law(
    name: str,
    points: Points | None,
    runs: RunsDir | None = None,
    curves: pd.DataFrame | Curves | None = None,
    **options: Any,
) -> Law:
    """Fit the law called ``name`` on ``points`` (the envelope law: on the loss curves of
    ``runs``, or ``curves``). ``options``: any law's parameters."""
    law = make_law(name, **options)
    if name != "envelope":
        return law.fit(points)
    if curves is None:
        if runs is None:
            raise FitError(
                f"{points.source}: the envelope law needs loss curves: give a runs directory "
                "(its metrics.jsonl files)"
            )
        curves = results.load_curves(runs.path)
    source = runs.path if runs else (points.source if points is not None else "curves")
    return law.fit(as_curves(curves, str(source)))


@dataclass
class FitOutcome:
    """A fitted law, its compute-optimal table (laws that allocate), its backtest, its file."""

    law: Law
    optima: list[dict[str, float]] = field(default_factory=list)
    backtest: dict[str, Any] | None = None
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.law.to_dict().items() if k != "samples"}
        if self.optima:
            out["largest_budget"] = self.optima[0]["compute"]
            out["optima"] = self.optima
        if self.backtest is not None:
            out["backtest"] = self.backtest
        if self.path is not None:
            out["path"] = str(self.path)
        return out


def compute_optimal_table(law: Law, largest_budget: float) -> list[dict[str, Any]]:
    """The optimum (with intervals) at the largest fitted budget, 10x and 100x it."""
    if "optimum" not in law.answers:
        return []
    return [law.predict(compute=largest_budget * m) for m in OPTIMA_MULTIPLES]


def fit_target(name: str, out: Path | None, runs: RunsDir | None, many: bool) -> Path | None:
    """Where the fit file of law ``name`` goes: ``out`` (a file; a folder when fitting
    ``many``), else RUNS/fits/<law>.json for a runs directory, else nowhere."""
    if out is not None and not many:
        return out
    if out is not None:
        return out / f"{name}.json"
    return runs.fit_path(name) if runs is not None else None


def fit_laws(
    names: list[str],
    points: Points,
    runs: RunsDir | None = None,
    out: Path | None = None,
    holdout: str | None = None,
    explicit: tuple[str, ...] = (),
    **options: Any,
) -> tuple[list[FitOutcome], list[dict[str, str]]]:
    """Fit each law of ``names``, write its fit file, and return (outcomes, skipped). With one
    name a law that cannot be fitted raises; with several it is skipped with the reason.
    ``explicit``: the options the caller set on purpose; with one law, one that is not its
    parameter is refused (with several, each law takes its own)."""
    for name in names:
        law_class(name)
    if len(names) == 1:
        own = set(law_class(names[0]).signature())
        foreign = sorted(set(explicit) - own)
        if foreign:
            raise FitError(
                f"the {names[0]} law has no such setting; its settings: " + ", ".join(sorted(own)),
                param=foreign[0],
                value=options.get(foreign[0]),
            )
    outcomes, skipped = [], []
    largest = float(points.frame["budget"].max()) if len(points) else float("nan")
    for name in names:
        try:
            law = fit_law(name, points, runs, **options)
            outcome = FitOutcome(law, compute_optimal_table(law, largest))
            if outcome.optima:  # the table printed is the table kept
                law.details_["compute_optimal"] = outcome.optima
            if holdout:
                quiet = {**options, "bootstrap_samples": 0}
                outcome.backtest = backtest(
                    points, lambda p, n=name, q=quiet: fit_law(n, p, None, **q), holdout
                )
                law.details_["backtest"] = outcome.backtest
        except FitError as err:
            if len(names) == 1:
                raise
            skipped.append({"law": name, "reason": str(err)})
            continue
        outcome.path = fit_target(name, out, runs, many=len(names) > 1)
        if outcome.path is not None:
            law.to_json(outcome.path)
        outcomes.append(outcome)
    return outcomes, skipped


def read_fits(runs: RunsDir) -> dict[str, Law]:
    """Every fit file of a runs directory, by law name (the newest file of each law)."""
    laws: dict[str, tuple[float, Law]] = {}
    for path in runs.fit_files():
        law = Law.from_json(path)
        mtime = path.stat().st_mtime
        if law.law not in laws or mtime > laws[law.law][0]:
            laws[law.law] = (mtime, law)
    return {name: law for name, (_, law) in laws.items()}


def newest_fit(runs: RunsDir, answers: str | None = None, exclude: tuple[str, ...] = ()) -> Law:
    """The newest fit file of a runs directory whose law answers ``answers`` (loss, optimum,
    hyperparameters), leaving out the laws in ``exclude``."""
    found = None
    for path in runs.fit_files():
        law = Law.from_json(path)
        if (answers is None or answers in law.answers) and law.law not in exclude:
            mtime = path.stat().st_mtime
            if found is None or mtime > found[0]:
                found = (mtime, law)
    if found is None:
        what = f"law that answers {answers}" if answers else "fit file"
        raise FitError(f"{runs.fits}: no {what} yet (run scaling fit first)")
    return found[1]


def predict_from(
    source: str | Path,
    compute: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    level: float | None = None,
    schedule: str | None = None,
    **covariates: Any,
) -> tuple[str, dict[str, Any]]:
    """(law name, prediction) from a fit file, or from a runs directory's newest fit that
    answers the question; at a compute budget, a fitted hyperparameter law adds its learning
    rate and batch size (with their intervals). With ``schedule`` (``curves.schedule_from``)
    a loss-curve law's loss at every step of it (``CurveLaw.predict``)."""
    path = Path(source)
    if schedule is not None:
        return _predict_curve(path, schedule, level)
    hparams = None
    if path.is_dir():
        runs = RunsDir(path)
        question = "loss" if params is not None and tokens is not None else "optimum"
        try:
            law = newest_fit(runs, question, exclude=("hparams",))
        except FitError:
            law = None
        try:
            hparams = newest_fit(runs, "hyperparameters")
        except FitError:
            if law is None:
                raise
    else:
        law = Law.from_json(path)
    if law is not None and "hyperparameters" in law.answers:
        law, hparams = None, law
    prediction: dict[str, Any] = {}
    if law is not None:
        prediction = law.predict(
            compute=compute, params=params, tokens=tokens, level=level, **covariates
        )
    budget = prediction.get("compute", compute)
    if hparams is not None and budget is not None:
        extra = hparams.predict(compute=budget, level=level)
        prediction.setdefault("intervals", {}).update(extra.pop("intervals", {}))
        prediction.update(extra)
    elif hparams is not None and law is None:
        raise FitError(
            "a hyperparameter law predicts from a compute budget", param="compute", value=compute
        )
    return (law or hparams).law, prediction


def _predict_curve(path: Path, schedule: str, level: float | None):
    law = newest_fit(RunsDir(path), "curve") if path.is_dir() else Law.from_json(path)
    if "curve" not in law.answers:
        raise FitError(
            f"{path}: holds a {law.law} law; a schedule is predicted by a loss-curve law "
            f"({', '.join(CURVE_LAWS)})",
            param="schedule",
            value=schedule,
        )
    return law.law, law.predict(level=level, schedule=schedule)


def optimal_schedule_from(
    fit: str | Path, request: str, out: Path | None = None, progress=None
) -> dict[str, Any]:
    """The schedule the multi-power law of the fit file ``fit`` predicts to end lowest
    (``optimal_schedule``; ``request``: ``steps=S,lr=X[,warmup=W][,iterations=N]``), with the
    cosine and WSD schedules' predicted final losses; written to ``out`` as a CSV (step, lr),
    a schedule that ``--schedule`` reads back."""
    values = parse_request(request)
    law = Law.from_json(fit)
    found = optimal_schedule(law, progress=progress, **values)
    if out is not None:
        rows = "".join(f"{j},{x!r}\n" for j, x in enumerate(found.lr.tolist()))
        write_atomic(out, "step,lr\n" + rows)
    return {"law": law.law, **values, **found.to_dict()}


def predict_branches(
    fit: str | Path,
    runs: str | Path,
    fractions: list[float],
    cooldown: float | None = None,
    out: Path | None = None,
) -> pd.DataFrame:
    """The points of ``runs`` with the WSD cooldown branches at ``fractions`` that the
    loss-curve law of the fit file ``fit`` predicts for the runs of its model
    (``predicted.predicted_points``); written as a CSV to ``out`` when given."""
    law = Law.from_json(fit)
    if "curve" not in law.answers:
        raise FitError(
            f"{fit}: holds a {law.law} law; predicted branch points come from a loss-curve law "
            f"({', '.join(CURVE_LAWS)})",
            param="fit",
            value=str(fit),
        )
    if not fractions:
        raise FitError("give at least one fraction", param="fractions", value=fractions)
    frame = predicted_points(law, runs, fractions, cooldown=cooldown)
    if out is not None:
        write_atomic(out, frame.to_csv(index=False))
    return frame


__all__ = [
    "CURVE_LAWS",
    "LAW_NAMES",
    "POINT_LAWS",
    "FitOutcome",
    "compute_optimal_table",
    "fit_curve_law",
    "fit_law",
    "fit_laws",
    "load_curves_source",
    "load_source",
    "make_law",
    "newest_fit",
    "optimal_schedule_from",
    "predict_branches",
    "predict_from",
    "read_fits",
]
