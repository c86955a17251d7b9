"""The whole study in one command: plan, prepare, train, fit, plot, predict, and check the
prediction on a run nobody fitted.

Every stage is a file on disk (DESIGN.md), so an interrupted demo resumes where it stopped:
planning keeps unchanged runs, training resumes from checkpoints, the holdout run too.
"""

from __future__ import annotations

import contextlib
import math
from importlib import resources
from pathlib import Path
from typing import Any

from scaling.config import ConfigError, RunConfig
from scaling.fileio import write_json_atomic

BOOTSTRAP = 200
HOLDOUT_FACTOR = 4.0  # the holdout budget over the largest fitted one


def demo_spec(tiny: bool, path: Path | None = None):
    """The demo's sweep: ``path`` or the packaged spec (sweeps/demo.toml); ``tiny`` shrinks
    the packaged one to run in a minute."""
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


def train_in_process(runs: Path, run_ids: list[str], progress: bool) -> None:
    """Train the runs one after the other in this process, each claimed like the launcher
    does (so a `scaling launch` beside the demo never trains the same run), under the
    launcher's live table when ``progress`` and the output is a terminal."""
    from rich.console import Console
    from rich.live import Live

    from scaling.config import load_run_config
    from scaling.launching import state
    from scaling.launching.status import render, status_frame
    from scaling.training.trainer import train

    table = progress and Console().is_terminal
    heartbeat = state.Heartbeat(state.DEFAULT_STALE_AFTER / 4)
    display = (
        Live(get_renderable=lambda: render(status_frame(runs)), refresh_per_second=1)
        if table
        else contextlib.nullcontext()
    )
    try:
        with display:
            for number, run_id in enumerate(run_ids, start=1):
                run_dir = runs / "runs" / run_id
                if not state.try_claim(run_dir):
                    continue  # done already, or another launcher has it
                heartbeat.runs.add(run_dir)
                try:
                    if progress and not table:
                        print(f"[{number}/{len(run_ids)}] training {run_id}", flush=True)
                    train(load_run_config(run_dir / "config.json"), run_dir, progress=False)
                finally:
                    heartbeat.runs.discard(run_dir)
                    state.release(run_dir)
    finally:
        heartbeat.stop()


def holdout_size(laws: dict[str, Any], points, budget: float) -> tuple[float, str]:
    """The size to train the holdout at: the first law whose optimum at ``budget`` is a sane
    size (within 100x of the sizes trained), else the best run of the largest budget."""
    frame = points.frame
    low, high = frame["params"].min() / 100, frame["params"].max() * 100
    for name, law in laws.items():
        size = law.optimum(budget)["params"]
        if math.isfinite(size) and low <= size <= high:
            return float(size), f"{name} law"
    largest = frame[frame["budget"] == frame["budget"].max()]
    return float(largest.loc[largest["loss"].idxmin(), "params"]), "best run of the largest budget"


def holdout_config(spec, size: float, budget: float) -> RunConfig:
    """A run of about ``size`` parameters on the tokens that spend ``budget``."""
    from scaling.counting import flops_per_token
    from scaling.planning.plan import run_id_of
    from scaling.planning.shapes import search_shape

    shape = search_shape(size, spec.architecture, spec.shape, spec.sweep.size)
    train = dict(spec.train)
    per_token = flops_per_token(shape.config, train["seq_len"], spec.sweep.flop_formula)
    steps = max(1, round(budget / per_token / train["batch_tokens"]))
    train.update(tokens=steps * train["batch_tokens"], flop_formula=spec.sweep.flop_formula)
    config = RunConfig(model=shape.config, data=spec.data, train=train)
    return config.model_copy(update={"run_id": run_id_of(config)})


def run_demo(
    out: Path, tiny: bool = False, progress: bool = True, spec_path: Path | None = None
) -> dict[str, Any]:
    from scaling import results
    from scaling.data import prepare_data
    from scaling.fitting import fit_parametric, prepare_points
    from scaling.fitting.isoflop import fit_isoflop
    from scaling.launching.local import LaunchOptions, select_runs
    from scaling.planning.output import plan_frame, write_plan
    from scaling.planning.plan import plan_sweep
    from scaling.training.trainer import train

    spec = demo_spec(tiny, spec_path)
    plan = plan_sweep(spec, out)
    write_plan(plan, spec, out)
    say = print if progress else (lambda *a, **k: None)
    say(f"planned {len(plan.runs)} runs into {out}")
    prepare_data(spec.data, progress=progress)
    train_in_process(out, select_runs(plan_frame(plan), LaunchOptions()), progress)

    points = prepare_points(results.load(out), source=str(out))
    n_boot = 30 if tiny else BOOTSTRAP
    say(f"fitting the parametric and IsoFLOP laws to {len(points)} points, {n_boot} bootstraps")
    parametric = fit_parametric(points, bootstrap_samples=n_boot, seed=0)
    parametric.to_json(out / "fits" / "parametric.json")
    laws: dict[str, Any] = {"parametric": parametric}
    try:  # tiny budgets may have no interior minimum; the demo goes on without this law
        laws["isoflop"] = fit_isoflop(points, bootstrap_samples=n_boot, seed=0)
        laws["isoflop"].to_json(out / "fits" / "isoflop.json")
        iso_summary = {
            "a": laws["isoflop"].params["a"],
            "b": laws["isoflop"].params["b"],
            "intervals": {k: laws["isoflop"].intervals.get(k) for k in ("a", "b")},
        }
    except ConfigError as err:
        iso_summary = {"error": str(err)}

    largest = float(points.frame["budget"].max())
    budget = HOLDOUT_FACTOR * largest
    size, size_from = holdout_size(laws, points, budget)
    config = holdout_config(spec, size, budget)
    holdout_dir = out / "holdout" / config.run_id
    say(f"holdout: {config.train.tokens:,} tokens at {budget:.3g} FLOPs (never fitted)")
    measured = train(config, holdout_dir, progress=progress)
    from scaling.counting import count_params

    n_actual = count_params(config.model).total
    predicted = parametric._with_intervals(
        {"loss": float(parametric.loss(n_actual, config.train.tokens))},
        lambda p: {"loss": float(parametric.loss(n_actual, config.train.tokens, p))},
    )
    interval = predicted.get("intervals", {}).get("loss")
    summary = {
        "fitted_budgets": sorted(points.frame["budget"].unique().tolist()),
        "parametric": {
            "params": parametric.params,
            "intervals": parametric.intervals,
            **{k: v for k, v in parametric.allocation_exponents().items()},
        },
        "isoflop": iso_summary,
        "prediction_at_10x": parametric.predict(compute=10 * largest),
        "budget": budget,
        "holdout_run": config.run_id,
        "holdout_size_from": size_from,
        "holdout_params": n_actual,
        "holdout_tokens": config.train.tokens,
        "predicted_loss": predicted["loss"],
        "predicted_interval": interval,
        "measured_loss": measured.get("final_eval_loss"),
        "measured_status": measured["status"],
    }
    low, high = interval or (math.nan, math.nan)
    summary["within_interval"] = (
        bool(low <= summary["measured_loss"] <= high)
        if (summary["measured_loss"] is not None and interval and math.isfinite(low))
        else None
    )
    write_json_atomic(out / "summary.json", summary)
    _draw(out, points, laws, summary)
    return summary


def _draw(out: Path, points, laws, summary) -> None:
    import matplotlib.pyplot as plt

    from scaling import results
    from scaling.plotting import figures_for

    (out / "figures").mkdir(exist_ok=True)
    try:
        curves = results.load_curves(out)
    except ValueError:
        curves = None
    for name, figure in figures_for(points.frame, laws, curves, summary).items():
        figure.savefig(out / "figures" / f"{name}.png")
        plt.close(figure)


def describe(summary: dict[str, Any]) -> str:
    p = summary["parametric"]
    iso = summary["isoflop"]
    at10 = summary["prediction_at_10x"]

    def interval(values):
        return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "[no interval]"

    measured = summary["measured_loss"]
    verdict = (
        ""
        if summary["within_interval"] is None
        else (" (inside the interval)" if summary["within_interval"] else " (outside the interval)")
    )
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
        f"holdout at {summary['budget']:.3g} FLOPs ({summary['holdout_params']:,} parameters, "
        f"{summary['holdout_tokens']:,} tokens): predicted {summary['predicted_loss']:.3f} "
        f"{interval(summary['predicted_interval'])}, measured "
        + ("none (the run did not finish)" if measured is None else f"{measured:.3f}")
        + verdict,
    ]
    return "\n".join(lines)
