"""`scaling fit` and `scaling predict`.

The options of `scaling fit` that set a law are the laws' own parameters, read from their
constructors (``cli.law_options``): a law's new parameter is a new flag with no edit here. A
flag left out leaves the law's default; one given that the chosen law does not take is
refused (``--law all``: each law takes its own).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from scaling.cli import JsonOption, app, errors, fail, present
from scaling.cli.law_options import bound, flag, law_parameters, parse_pairs, with_law_options
from scaling.fitting.api import CURVE_LAWS, LAW_NAMES, POINT_LAWS  # named once, in print order
from scaling.results import BUDGET_TOLERANCE


def _fit(
    source: Annotated[
        Path,
        typer.Argument(
            help="A runs directory, a CSV/Parquet of points, or builtin:NAME (published points; "
            "scaling published lists them)."
        ),
    ],
    law: Annotated[
        str, typer.Option(help=f"{', '.join(LAW_NAMES)} or all (the point laws).")
    ] = "parametric",
    holdout: Annotated[
        str | None, typer.Option(help="Backtest: 'largest' (budget) or 'largest-params'.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Fit file (a folder with --law all). Default for a runs directory: RUNS/fits/."
        ),
    ] = None,
    exclude: Annotated[str | None, typer.Option(help='Drop points, e.g. "loss > 4".')] = None,
    drop_highest: Annotated[int, typer.Option(help="Drop the k highest-loss points.")] = 0,
    params_col: Annotated[str, typer.Option(help="Column of parameters.")] = "params",
    tokens_col: Annotated[str, typer.Option(help="Column of tokens.")] = "tokens",
    flops_col: Annotated[str, typer.Option(help="Column of FLOPs.")] = "flops",
    loss_col: Annotated[str, typer.Option(help="Column of the loss.")] = "loss",
    budget_col: Annotated[str, typer.Option(help="Column of the IsoFLOP budget.")] = "budget",
    unique_tokens_col: Annotated[
        str, typer.Option(help="Column of unique tokens.")
    ] = "unique_tokens",
    experts_col: Annotated[str, typer.Option(help="Column of expert counts.")] = "n_experts",
    lr_col: Annotated[str, typer.Option(help="Column of learning rates.")] = "lr",
    batch_col: Annotated[
        str, typer.Option(help="Column of batch sizes (tokens).")
    ] = "batch_tokens",
    budget_tolerance: Annotated[
        float, typer.Option(help="Group points without a budget when log10 FLOPs differ by less.")
    ] = BUDGET_TOLERANCE,
    flops_per_param_token: Annotated[
        float,
        typer.Option(
            help="k of C = k·N·D when one of params, tokens, flops is derived (a runs "
            "directory's points carry the FLOPs of the sweep's own formula)."
        ),
    ] = 6.0,
    audit: Annotated[
        bool,
        typer.Option(
            help="Refit Approach 3 under the choices that matter (Huber δ, L2, L1, outliers "
            "dropped, each budget left out, starts, Approach 2) and compare the answers' "
            "spread with the bootstrap intervals; writes no fit file."
        ),
    ] = False,
    compute: Annotated[
        float | None,
        typer.Option(help="--audit: the compute to answer at (default: the largest budget)."),
    ] = None,
    include_predicted: Annotated[
        bool,
        typer.Option(
            help="Fit a table's predicted points (its 'predicted' rows: scaling predict "
            "--branches) with its measured ones; without it such a table is refused."
        ),
    ] = False,
    as_json: JsonOption = False,
    **law_options: Any,
) -> None:
    """Fit a scaling law to a runs directory or a table of (params, tokens, loss) points,
    with bootstrap intervals and an optional backtest; write the fit file.

    Example: scaling fit points.csv --law parametric --bootstrap 200 --out fits/chinchilla.json

    Example: scaling fit builtin:chinchilla --drop-highest 5 (Epoch AI's 240 points)
    """
    from scaling import published  # light: a bad name answers before the heavy imports

    if published.is_builtin(source):
        if message := published.unknown(str(source)):
            raise fail(message)
    elif not source.exists():  # before the heavy imports: a typo answers at once
        raise fail(f"{source}: no such file or directory")
    base = law_options.get("base")
    if base is not None and not base.is_file():
        raise fail(f"--base {base}: no such fit file")
    if law in CURVE_LAWS:  # curves with their lr schedules, not points
        if holdout or audit or exclude or drop_highest:
            raise fail(f"--law {law} fits whole curves: --holdout, --audit, --exclude and "
                       "--drop-highest are for the point laws")  # fmt: skip
        given = {name: value for name, value in law_options.items() if value is not None}
        return _fit_curves(source, law, out, given, as_json)
    from scaling.fitting.api import fit_laws, load_source
    from scaling.fitting.points import prepare_points

    columns = {
        "params": params_col,
        "tokens": tokens_col,
        "flops": flops_col,
        "loss": loss_col,
        "budget": budget_col,
        "unique_tokens": unique_tokens_col,
        "n_experts": experts_col,
        "lr": lr_col,
        "batch_tokens": batch_col,
    }
    given = {name: value for name, value in law_options.items() if value is not None}
    with errors(FIT_FLAGS):
        if "pinned" in given:
            given["pinned"] = parse_pairs(given["pinned"], "pinned", "E=1.69", float)
        if "bounds" in given:
            given["bounds"] = parse_pairs(given["bounds"], "bounds", "alpha=0:0.5", bound)
        if base is not None:
            given["base"] = _base_params(base)
        table, runs = load_source(source)
        points = prepare_points(
            table,
            {ours: theirs for ours, theirs in columns.items() if theirs != ours},
            flops_per_param_token,
            budget_tolerance,
            exclude,
            drop_highest,
            source=str(source),
            include_predicted=include_predicted,
        )
        if audit:
            _audit(points, law, out, compute, given, as_json)
            return
        outcomes, skipped = fit_laws(
            list(POINT_LAWS) if law == "all" else [law],
            points,
            runs,
            out,
            holdout,
            explicit=tuple(given),
            **given,
        )
    if not outcomes:  # only --law all gets here without a fit: each law was skipped
        reasons = "; ".join(
            f"{entry['law']}: {entry['reason'].removeprefix(f'{source}: ')}" for entry in skipped
        )
        raise fail(f"no law could be fitted to {source}, nothing written ({reasons})")
    if as_json:
        payload = [outcome.to_dict() for outcome in outcomes]
        typer.echo(
            json.dumps(
                payload[0] if law != "all" else {"fits": payload, "skipped": skipped},
                default=float,
            )
        )
        return
    for outcome in outcomes:
        present.law_table(outcome)
    for entry in skipped:
        typer.echo(f"skipped {entry['law']}: {entry['reason']}")
    for outcome in outcomes:
        if outcome.path is not None:
            typer.echo(f"wrote {outcome.path}")


def _fit_curves(source: Path, law: str, out: Path | None, given: dict[str, Any], as_json):
    """A loss-curve law fitted on the curves of ``source``: its table and fit file."""
    from scaling.fitting.api import fit_curve_law

    with errors(FIT_FLAGS):
        outcome = fit_curve_law(law, str(source), out, **given)
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), default=float))
        return
    present.law_table(outcome)
    if outcome.path is not None:
        typer.echo(f"wrote {outcome.path}")


def _echo_schedule(law_name: str, prediction: dict[str, Any]) -> None:
    bounds = prediction.get("intervals", {}).get("loss")
    rows = []
    for i, (step, loss) in enumerate(zip(prediction["steps"], prediction["loss"], strict=True)):
        row = {"step": step, "loss": loss}
        if bounds is not None:
            row["interval"] = bounds[i]
        rows.append(row)
    typer.echo(json.dumps({"law": law_name, "predictions": rows}))


def _audit(points, law: str, out: Path | None, compute: float | None, given, as_json) -> None:
    from scaling.fitting.audit import audit
    from scaling.fitting.parametric import ParametricLaw

    if law != "parametric":
        raise fail(f"--audit refits Approach 3 (--law parametric), not --law {law}")
    if out is not None:
        raise fail("--audit writes no fit file; leave out --out")
    if compute is None:
        compute = float(points.column("flops").max())
    own = ParametricLaw.signature()
    options = {k: v for k, v in given.items() if k in own}
    samples = options.pop("bootstrap_samples", None) or 100
    result = audit(points, compute, bootstrap_samples=samples, **options)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), default=float))
        return
    present.audit_table(result)


def _base_params(path: Path) -> dict[str, float]:
    from scaling.fitting import Law

    law = Law.from_json(path)
    if law.law != "parametric":
        raise fail(f"--base {path}: holds a {law.law} law; give a parametric fit file")
    return law.params_


# typer reads a command's options from its signature: the fixed ones, the laws' after --law
_fit.__signature__ = with_law_options(_fit, after=2)  # type: ignore[attr-defined]
fit = app.command("fit")(_fit)

FIT_FLAGS = {
    **{name: flag(name) for name in law_parameters()},
    "law": "--law",
    "flops_per_param_token": "--flops-per-param-token",
    "budget_tolerance": "--budget-tolerance",
    "drop_highest": "--drop-highest",
    "holdout": "--holdout",
    "exclude": "--exclude",
    "compute": "--compute",
}
PREDICT_FLAGS = {
    "level": "--level",
    "compute": "--compute",
    "params": "--params",
    "tokens": "--tokens",
    "unique_tokens": "--unique-tokens",
    "n_experts": "--experts",
    "schedule": "--schedule",
    "fractions": "--fractions",
    "cooldown": "--cooldown",
    "fit": "--fit",
}


@app.command()
def predict(
    source: Annotated[
        Path | None, typer.Argument(help="A runs directory (its newest fits) or a fit file.")
    ] = None,
    fit_file: Annotated[Path | None, typer.Option("--fit", help="A fit file.")] = None,
    compute: Annotated[float | None, typer.Option(help="A FLOP budget.")] = None,
    params: Annotated[float | None, typer.Option(help="A model size (parameters).")] = None,
    tokens: Annotated[float | None, typer.Option(help="A token count.")] = None,
    unique_tokens: Annotated[
        float | None, typer.Option(help="Unique tokens (the data-constrained law).")
    ] = None,
    experts: Annotated[
        int | None, typer.Option(help="Number of experts (the moe law; 0 = dense).")
    ] = None,
    level: Annotated[
        float | None,
        typer.Option(help="Coverage of the intervals (default: the fit's own, 0.95 unless set)."),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help="A loss-curve law's loss at every step of a schedule: a CSV/Parquet (step, "
            "lr), a run's config.json, or wsd:steps=S,lr=X,warmup=W,cooldown=F / "
            "cosine:steps=S,lr=X,warmup=W,min_lr=F."
        ),
    ] = None,
    branches: Annotated[
        Path | None,
        typer.Option(
            help="A runs directory: its points and, predicted by the loss-curve law of --fit, "
            "the end of a WSD cooldown branch at each of --fractions of its runs of that model "
            "(rows marked predicted, with loss_low, loss_high); --out writes them as a CSV."
        ),
    ] = None,
    fractions: Annotated[
        str | None,
        typer.Option(help="--branches: where each branch ends, fractions of a run, e.g. 0.1,0.2."),
    ] = None,
    cooldown: Annotated[
        float | None,
        typer.Option(help="--branches: a branch's cooldown fraction (default: the run's own)."),
    ] = None,
    optimal_schedule: Annotated[
        str | None,
        typer.Option(
            help="The schedule a multi-power law predicts to end lowest (Luo et al.), for "
            "steps=S,lr=X[,warmup=W][,iterations=N]: non-increasing after the warm-up, with the "
            "cosine and WSD schedules' predicted final losses beside it; --out writes it as a "
            "CSV (step, lr) that --schedule reads back."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="--branches: the points CSV to write; --optimal-schedule: the schedule."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Predict from a fitted law: at --compute C the optimal N*, D*, tokens per parameter,
    loss, and (where an hparams law was fitted) learning rate and batch size, each with its
    interval; --params N or --tokens D alone give the optimal counterpart and compute; --params
    and --tokens together give the loss there (with --unique-tokens or --experts for the laws
    that take them).

    Example: scaling predict RUNS --compute 1e21

    Example: scaling predict --fit mpl.json --schedule wsd:steps=2000,lr=3e-3,cooldown=0.2

    Example: scaling predict --fit mpl.json --branches RUNS --fractions 0.1,0.2 --out points.csv

    Example: scaling predict --fit mpl.json --optimal-schedule steps=2000,lr=3e-3,warmup=100
    """
    if optimal_schedule is not None:
        others = (compute, params, tokens, unique_tokens, experts, schedule, level, branches)
        if any(value is not None for value in (*others, fractions, cooldown)):
            raise fail("--optimal-schedule stands alone: give it with --fit (and --out, --json)")
        return _optimal_schedule(fit_file or source, optimal_schedule, out, as_json)
    if branches is not None or fractions is not None or out is not None or cooldown is not None:
        others = (compute, params, tokens, unique_tokens, experts, schedule, level)
        if any(value is not None for value in others):
            raise fail("--branches predicts branch points alone: leave out --compute, --params, "
                       "--tokens, --unique-tokens, --experts, --schedule and --level")  # fmt: skip
        return _predict_branches(fit_file or source, branches, fractions, cooldown, out, as_json)
    given = fit_file or source
    if given is not None and not given.exists():  # before the heavy imports
        raise fail(f"{given}: no such fit file or runs directory")
    from scaling.fitting.api import predict_from

    covariates = {"unique_tokens": unique_tokens, "n_experts": experts}
    with errors(PREDICT_FLAGS):
        if fit_file is None and source is None:
            raise fail("give a runs directory or --fit FILE")
        law_name, prediction = predict_from(
            fit_file or source,
            compute=compute,
            params=params,
            tokens=tokens,
            level=level,
            schedule=schedule,
            **{k: v for k, v in covariates.items() if v is not None},
        )
    if schedule is not None and as_json:  # every step; the table shows a sample
        return _echo_schedule(law_name, prediction)
    if schedule is not None:
        return present.schedule_table(law_name, prediction, level)
    if as_json:
        typer.echo(json.dumps(prediction))
        return
    present.prediction_table(law_name, prediction, level)


def _optimal_schedule(fit_file, request: str, out, as_json: bool) -> None:
    """`scaling predict --fit MPL.json --optimal-schedule steps=S,lr=X,...`: the schedule, its
    predicted final loss against cosine and WSD, a sample of its steps (``--json``: every
    step)."""
    if fit_file is None or fit_file.is_dir():
        raise fail("--optimal-schedule needs --fit MPL.json, a multi-power law's fit file")
    if not fit_file.exists():
        raise fail(f"{fit_file}: no such fit file")
    from scaling.fitting.api import optimal_schedule_from

    with errors({**PREDICT_FLAGS, "law": "--fit"}), present.iterations(as_json) as tick:
        found = optimal_schedule_from(fit_file, request, out, progress=tick)
    if as_json:
        typer.echo(json.dumps(found))
        return
    present.optimal_schedule_table(found)
    if out is not None:
        typer.echo(f"wrote {out} ({len(found['schedule'])} steps)")


def _predict_branches(fit_file, runs, fractions, cooldown, out, as_json) -> None:
    """`scaling predict --fit CURVE.json --branches RUNS --fractions F,...`: the runs' points
    and the predicted ends of WSD cooldown branches, as a table or a CSV."""
    if fit_file is None or runs is None or fractions is None:
        raise fail("predicted branch points need --fit CURVE.json, --branches RUNS and --fractions")
    for given, what in ((fit_file, "fit file"), (runs, "runs directory")):
        if not given.exists():
            raise fail(f"{given}: no such {what}")
    try:
        numbers = [float(x) for x in fractions.split(",") if x.strip()]
    except ValueError:
        raise fail(f"--fractions {fractions!r}: give numbers in (0, 1], e.g. 0.1,0.2") from None
    from scaling.fitting.api import predict_branches

    with errors(PREDICT_FLAGS):
        frame = predict_branches(fit_file, runs, numbers, cooldown, out)
    rows = frame[frame["predicted"].astype(bool)]
    if as_json:
        typer.echo(rows.to_json(orient="records"))
        return
    present.predicted_points_table(rows)
    if out is not None:
        typer.echo(f"wrote {out} ({len(frame) - len(rows)} measured, {len(rows)} predicted points)")
