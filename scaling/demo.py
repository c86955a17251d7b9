"""The whole study in one command: plan, prepare, train, fit, plot, predict, and check the
prediction on a run nobody fitted.

Every stage is a file on disk (docs/architecture.md), so an interrupted demo resumes where it
stopped: planning keeps unchanged runs, training resumes from checkpoints, the holdout too,
and laws already fitted on the same points are not fitted again.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from scaling.config import ConfigError, RunConfig
from scaling.fileio import atomic_path

BOOTSTRAP = 200
HOLDOUT_FACTOR = 4.0  # the holdout budget over the largest fitted one
LAWS = ("parametric", "kaplan", "isoflop")
# Laws with a loss surface L(N, D), averaged for the holdout's prediction with weights from
# their backtests (fitting.averaging). At the demo's scale the two forms bracket the holdout:
# Chinchilla's additive form 4-5% pessimistic 4x out, Kaplan's about 3% optimistic.
LOSS_LAWS = ("parametric", "kaplan")


def demo_spec(tiny: bool, path: Path | None = None, seed: int | None = None):
    """The demo's sweep: ``path`` or the packaged spec (sweeps/demo.toml); ``tiny`` shrinks
    the packaged one to run in a minute; ``seed`` replaces the sweep's seed (every run's
    initialisation and data order, so every run id)."""
    spec = _demo_spec(tiny, path)
    if seed is None:
        return spec
    return spec.model_copy(update={"sweep": spec.sweep.model_copy(update={"seed": seed})})


def _demo_spec(tiny: bool, path: Path | None):
    import tomllib

    from scaling.planning.spec import SweepSpec, load_spec

    if path is not None:
        if tiny:
            raise ConfigError(
                "--tiny shrinks the packaged demo spec; with --spec, make your spec small"
            )
        return load_spec(path)
    raw = tomllib.loads(resources.files("scaling").joinpath("specs/demo.toml").read_text())
    if tiny:
        raw["data"].update(include_tests=False, max_bytes=1_500_000, val_fraction=0.05)
        # 8-wide heads: the finer widths give three distinct shapes per budget at this scale
        raw["model"].update(head_dim=8, d_model_multiple=8)
        raw["grid"][0].update(budgets=[1e10, 2e10, 4e10], sizes=3, spread=3.0)
        raw["train"].update(
            eval_windows=32, checkpoint_interval=1000, batch_tokens=4096, micro_batch_size=64
        )
        raw["sweep"]["min_steps"] = 5
    return SweepSpec.model_validate(raw)


def check_study(spec, where: str) -> None:
    """The demo's study fits one architecture's IsoFLOP profiles: the spec must have an
    isoflop grid and no grid that adds other runs (axes, fixed sizes, hparams sweeps)."""
    from scaling.planning.spec import IsoFLOPGrid

    if not any(isinstance(g, IsoFLOPGrid) for g in spec.grid):
        kinds = ", ".join(sorted({g.kind for g in spec.grid}))
        raise ConfigError(
            f"{where}: the demo's study needs an isoflop grid; this spec has {kinds} "
            "(plan it with scaling plan, then scaling launch and scaling fit)"
        )
    for grid in spec.grid:
        if not isinstance(grid, IsoFLOPGrid):
            raise ConfigError(
                f"{where}: grid {grid.name!r} ({grid.kind}) adds runs that the demo's study "
                "cannot fit as one architecture (plan it with scaling plan, then scaling "
                "launch and scaling fit)"
            )


class DemoReporter:
    """What the demo tells whoever runs it, as it goes; this base says nothing. The library
    draws nothing itself: `scaling demo` renders these calls (lines, and the launcher's live
    table while the runs train: ``scaling.cli.demo``), a notebook can print or ignore them."""

    def message(self, text: str) -> None:
        """A stage begins or ends (planned, fitting, the holdout)."""

    def run_started(self, run_id: str, number: int, total: int) -> None:
        """Run ``number`` of ``total`` pending runs starts training."""

    @contextlib.contextmanager
    def training(self, runs: Path) -> Iterator[None]:
        """Around the training of every pending run of ``runs``."""
        yield


def train_runs(runs: Path, progress: bool, reporter: DemoReporter) -> dict[str, str]:
    """Train every pending run of the plan in this process, through the launcher's in-process
    executor (claims, so a `scaling launch` beside the demo never trains the same run);
    ``progress``: each run's own progress bar."""
    from scaling.launching.local import InProcessExecutor, LaunchOptions

    executor = InProcessExecutor(runs, LaunchOptions(progress=progress))
    with reporter.training(runs):
        return executor.run(on_start=reporter.run_started)


def earlier_fits(runs, points, options: dict[str, Any]) -> dict[str, Any]:
    """The demo's laws that an earlier pass fitted and backtested on the same points with the
    same settings and toolkit version: a resumed demo does not fit them again."""
    import json

    from scaling import __version__
    from scaling.fitting import FitError, Law
    from scaling.fitting.api import make_law

    found = {}
    for name in LAWS:
        try:
            law = Law.from_json(runs.fit_path(name))
        except FitError:  # none yet, or unreadable: fitted again
            continue
        # a fit never changes its parameters: the file's are those it was asked for
        wanted = json.loads(json.dumps(make_law(name, **options).get_params()))
        if (
            law.law == name
            and law.points_digest_ == points.digest
            and json.loads(json.dumps(law.get_params())) == wanted
            and law.version_ == __version__
            and "backtest" in law.details_
        ):
            found[name] = law
    return found


def holdout_size(laws: dict[str, Any], points, budget: float) -> tuple[float, str]:
    """The size to train the holdout at: the first law whose optimum at ``budget`` is a sane
    size (within 100x of the sizes trained), else the best run of the largest budget."""
    frame = points.frame
    low, high = frame["params"].min() / 100, frame["params"].max() * 100
    for name, law in laws.items():
        if "optimum" not in law.answers:
            continue
        size = law.optimum(budget)["params"]
        if math.isfinite(size) and low <= size <= high:
            return float(size), f"{name} law"
    largest = frame[frame["budget"] == frame["budget"].max()]
    return float(largest.loc[largest["loss"].idxmin(), "params"]), "best run of the largest budget"


def holdout_config(spec, spec_dir: Path, size: float, budget: float) -> RunConfig:
    """A run of about ``size`` parameters on the tokens that spend ``budget``: resolved by the
    planner like any run of the spec (its architecture, lr and batch rules, FLOP formula)."""
    from scaling.planning.plan import resolve_run

    return resolve_run(spec, spec_dir, size, budget=budget, grid="holdout")


def run_demo(
    out: Path,
    tiny: bool = False,
    progress: bool = True,
    spec_path: Path | None = None,
    seed: int | None = None,
    reporter: DemoReporter | None = None,
) -> dict[str, Any]:
    """The whole study into ``out`` (resumable); its summary, also written as summary.json.
    ``progress``: the data preparation's and each training's progress bars; ``reporter``:
    the stages as they go (silent by default)."""
    from scaling import results
    from scaling.counting import count_params
    from scaling.data import prepare_data
    from scaling.fitting import FitError, prepare_points
    from scaling.fitting.api import fit_laws
    from scaling.fitting.averaging import averaged_loss, backtest_weights, paired_intervals
    from scaling.planning.output import write_plan
    from scaling.planning.plan import plan_sweep
    from scaling.rundir import RunsDir
    from scaling.training.lifecycle import train

    spec = demo_spec(tiny, spec_path, seed)
    spec_dir = spec_path.parent if spec_path is not None else out
    check_study(spec, str(spec_path or "the demo spec"))
    plan = plan_sweep(spec, spec_dir)
    runs = RunsDir(out)
    write_plan(plan, spec, out)
    reporter = reporter or DemoReporter()
    say = reporter.message
    say(f"planned {len(plan.runs)} runs into {out}")
    prepare_data(spec.data, progress=progress)
    train_runs(out, progress, reporter)

    points = prepare_points(results.load(out), source=str(out))
    options = {"bootstrap_samples": 30 if tiny else BOOTSTRAP, "seed": 0}
    earlier = earlier_fits(runs, points, options)
    todo = [name for name in LAWS if name not in earlier]
    if earlier:
        say(f"{_laws(earlier)}: fitted on these points by an earlier pass")
    if todo:
        say(
            f"fitting {_laws(todo)} to {len(points)} points, {options['bootstrap_samples']} "
            "bootstraps, each backtested without the largest budget"
        )
    laws, reasons = {}, {}
    for name in LAWS:
        if name in earlier:
            laws[name] = earlier[name]
            continue
        try:
            (outcome,), _ = fit_laws([name], points, runs, holdout="largest", **options)
            laws[name] = outcome.law
        except FitError as err:
            reasons[name] = str(err)
    if "parametric" not in laws:
        raise ConfigError(
            f"{out}: the parametric law could not be fitted ({reasons['parametric']})"
        )
    parametric = laws["parametric"]
    backtests = {
        name: laws[name].details_["backtest"]["loss_mean_abs_rel_error"]
        for name in LOSS_LAWS
        if name in laws and "loss_mean_abs_rel_error" in laws[name].details_.get("backtest", {})
    }
    weights = backtest_weights(backtests) if backtests else {"parametric": 1.0}
    if "isoflop" in laws:
        iso = laws["isoflop"]
        iso_summary = {
            "a": iso.params_["a"],
            "b": iso.params_["b"],
            "intervals": {k: iso.intervals_.get(k) for k in ("a", "b")},
        }
    else:  # tiny budgets may have no interior minimum; the demo goes on without this law
        iso_summary = {"error": reasons["isoflop"]}

    largest = float(points.frame["budget"].max())
    budget = HOLDOUT_FACTOR * largest
    size, size_from = holdout_size(laws, points, budget)
    config = holdout_config(spec, spec_dir, size, budget)
    if config.train.branches:  # the holdout answers one question: its loss at its budget
        config = config.model_copy(
            update={"train": config.train.model_copy(update={"branches": ()})}
        )
    say(f"holdout: {config.train.tokens:,} tokens at {budget:.3g} FLOPs (never fitted)")
    measured = train(config, runs.holdout(config.run_id).path, progress=progress)
    counts = count_params(config.model)
    n_actual = counts.total
    sizes = {"params": counts.total, "params_nonembedding": counts.non_embedding}
    predicted = averaged_loss(laws, weights, sizes, config.train.tokens)
    # The averaged prediction's own interval (its laws' bootstraps paired resample by resample)
    # covered the holdout about as often as its level says over eleven seeds, three of them run
    # after it was chosen; the mixture of the laws' samples spans both forms and covered every
    # seed at 80% (BENCHMARKS.md). The mixture stays, as the fallback and for comparison.
    paired = paired_intervals(laws, weights, sizes, config.train.tokens)
    intervals = paired or predicted["intervals"]
    summary = {
        "fitted_budgets": sorted(points.frame["budget"].unique().tolist()),
        "parametric": {
            "params": parametric.params_,
            "intervals": parametric.intervals_,
            **parametric.allocation_exponents(),
        },
        "isoflop": iso_summary,
        "kaplan": (
            {"params": laws["kaplan"].params_, "intervals": laws["kaplan"].intervals_}
            if "kaplan" in laws
            else {"error": reasons["kaplan"]}
        ),
        "backtest_loss_errors": backtests,
        "loss_law_weights": weights,
        "predicted_by_law": predicted["by_law"],
        "prediction_at_10x": parametric.predict(compute=10 * largest),
        "budget": budget,
        "holdout_run": config.run_id,
        "holdout_size_from": size_from,
        "holdout_params": n_actual,
        "holdout_tokens": config.train.tokens,
        "holdout_n_experts": config.model.n_experts,
        "predicted_loss": predicted["loss"],
        "predicted_interval": intervals[0.95],
        "predicted_interval_80": intervals[0.8],
        "interval_kind": "paired" if paired else "mixture",
        "mixture_interval": predicted["intervals"][0.95],
        "mixture_interval_80": predicted["intervals"][0.8],
        "seed": spec.sweep.seed,
        "measured_loss": measured.get("final_eval_loss"),
        "measured_status": measured["status"],
    }
    low, high = intervals[0.95]
    summary["within_interval"] = (
        bool(low <= summary["measured_loss"] <= high)
        if summary["measured_loss"] is not None
        else None
    )
    runs.write_summary(summary)
    _draw(runs, points, laws, summary)
    return summary


def _laws(names) -> str:
    return f"the {', '.join(names)} law{'s' if len(names) > 1 else ''}"


def _draw(runs, points, laws, summary) -> None:
    import matplotlib.pyplot as plt

    from scaling import results
    from scaling.plotting import figures_for

    try:
        curves = results.load_curves(runs.path)
    except ConfigError:
        curves = None
    for name, figure in figures_for(points.frame, laws, curves, summary).items():
        with atomic_path(runs.figures / f"{name}.png") as tmp:
            figure.savefig(tmp, format="png")
        plt.close(figure)


def describe(summary: dict[str, Any]) -> str:
    p = summary["parametric"]
    iso = summary["isoflop"]
    at10 = summary["prediction_at_10x"]

    def interval(values):
        return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "[no interval]"

    measured = summary["measured_loss"]
    verdict = ""
    if measured is not None:
        error = measured / summary["predicted_loss"] - 1
        inside = [
            f"{name} interval"
            for name, key in (("80%", "predicted_interval_80"), ("95%", "predicted_interval"))
            if summary.get(key) and summary[key][0] <= measured <= summary[key][1]
        ]
        where = f"inside the {' and the '.join(inside)}" if inside else "outside both intervals"
        verdict = f" ({error:+.1%} from the prediction; {where})"
    lines = [
        f"parametric law: a = {p['a']:.3f} {interval(p.get('derived_intervals', {}).get('a'))}, "
        f"b = {p['b']:.3f} {interval(p.get('derived_intervals', {}).get('b'))}",
        (
            f"IsoFLOP law:    a = {iso['a']:.3f} {interval(iso['intervals'].get('a'))}, "
            f"b = {iso['b']:.3f} {interval(iso['intervals'].get('b'))}"
        )
        if "a" in iso
        else f"IsoFLOP law:    not fitted ({iso['error']})",
        f"at 10x the largest budget ({at10['compute']:.3g} FLOPs): N* = {at10['params']:,.0f}, "
        f"D* = {at10['tokens']:,.0f}, loss {at10['loss']:.3f}",
        _choice(summary),
        f"holdout at {summary['budget']:.3g} FLOPs ({summary['holdout_params']:,} parameters, "
        f"{summary['holdout_tokens']:,} tokens): predicted {summary['predicted_loss']:.3f}, "
        f"80% {interval(summary.get('predicted_interval_80'))}, "
        f"95% {interval(summary['predicted_interval'])}{_kind(summary)}; measured "
        + ("none (the run did not finish)" if measured is None else f"{measured:.3f}")
        + verdict,
    ]
    return "\n".join(lines)


def _kind(summary: dict[str, Any]) -> str:
    if summary.get("interval_kind", "paired") == "paired":
        return ""
    return " (the mixture of the laws' bootstraps: their resamples could not be paired)"


def _choice(summary: dict[str, Any]) -> str:
    errors, weights = summary["backtest_loss_errors"], summary["loss_law_weights"]
    by_law = summary["predicted_by_law"]
    parts = ", ".join(
        f"{name} {by_law[name]:.3f} (backtest error {errors[name]:.1%}, weight {weights[name]:.2f})"
        if name in errors
        else f"{name} {by_law[name]:.3f}"
        for name in weights
    )
    return f"the holdout's loss, by law: {parts}"
