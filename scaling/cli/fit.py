"""`scaling fit` and `scaling predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from scaling.cli import JsonOption, app, fail


def _parse_pins(pins: list[str] | None) -> dict[str, float]:
    out = {}
    for item in pins or []:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise fail(f"--pin {item!r}: expected NAME=NUMBER, e.g. --pin E=1.69") from None
        if not sep:
            raise fail(f"--pin {item!r}: expected NAME=NUMBER, e.g. --pin E=1.69")
    return out


def _law_table(law, extra: dict | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{law.law}: {law.formula}", title_justify="left")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    for name, value in law.params.items():
        low_high = law.intervals.get(name)
        interval = f"[{low_high[0]:.4g}, {low_high[1]:.4g}]" if low_high else ""
        table.add_row(name, f"{value:.6g}", interval)
    derived = law.allocation_exponents()
    for name in ("a", "b"):
        if name in derived:
            low_high = derived.get("derived_intervals", {}).get(name) or law.intervals.get(name)
            interval = f"[{low_high[0]:.4g}, {low_high[1]:.4g}]" if low_high else ""
            table.add_row(
                f"{name} (N_opt ∝ C^a, D_opt ∝ C^b)" if name == "a" else name,
                f"{derived[name]:.4f}",
                interval,
            )
    console.print(table)
    console.print(
        f"{law.n_points} points used, {len(law.excluded)} excluded"
        + (f", objective {law.objective:.4g}" if law.objective is not None else "")
    )
    for entry in law.excluded[:10]:
        console.print(
            f"  excluded row {entry['row']} ({entry.get('run_id') or '-'}): {entry['reason']}"
        )
    if "bootstrap" in law.details:
        console.print(f"  bootstrap: {law.details['bootstrap']}")
    for budget in law.details.get("budgets", []):
        if budget.get("reason"):
            console.print(f"  budget {budget['budget']:.3g} left out: {budget['reason']}")
    if extra and "largest_budget" in extra:
        opt = Table(title="compute-optimal allocation", title_justify="left")
        for column in ("compute", "N_opt", "D_opt", "tokens/param", "loss"):
            opt.add_column(column, justify="right")
        for row in extra["optima"]:
            opt.add_row(
                f"{row['compute']:.3g}",
                f"{row['params']:.4g}",
                f"{row['tokens']:.4g}",
                f"{row['tokens_per_param']:.1f}",
                f"{row['loss']:.4f}",
            )
        console.print(opt)
    if extra and "backtest" in extra:
        console.print(f"backtest: {json.dumps(extra['backtest'], default=str)}")


@app.command()
def fit(
    source: Annotated[Path, typer.Argument(help="A runs directory, or a CSV/Parquet of points.")],
    law: Annotated[
        str,
        typer.Option(
            help="parametric, isoflop, envelope, kaplan, "
            "data-constrained, moe, hparams, downstream or all."
        ),
    ] = "parametric",
    bootstrap_samples: Annotated[int, typer.Option("--bootstrap", help="Bootstrap refits.")] = 0,
    bootstrap_unit: Annotated[
        str, typer.Option(help="Resample points, runs or budgets.")
    ] = "points",
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
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
    loss: Annotated[str, typer.Option(help="Parametric objective: huber, l2 or l1.")] = "huber",
    pin: Annotated[list[str] | None, typer.Option(help="Hold a parameter, e.g. E=1.69.")] = None,
    optimum: Annotated[
        str, typer.Option(help="IsoFLOP optimum: parabola or parametric.")
    ] = "parabola",
    method: Annotated[
        str, typer.Option(help="Hparams optimum: near-optimal or parabola.")
    ] = "near-optimal",
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
    metric_col: Annotated[
        str, typer.Option(help="Task metric for the downstream law.")
    ] = "accuracy",
    budget_tolerance: Annotated[
        float, typer.Option(help="Group points without a budget when log10 FLOPs differ by less.")
    ] = 0.05,
    flops_per_param_token: Annotated[
        float, typer.Option(help="k of C = k·N·D when one of params, tokens, flops is derived.")
    ] = 6.0,
    as_json: JsonOption = False,
) -> None:
    """Fit a scaling law to a runs directory or a table of (params, tokens, loss) points,
    with bootstrap intervals and an optional backtest; write the fit file.

    Example: scaling fit points.csv --law parametric --bootstrap 200 --out fits/chinchilla.json
    """
    from scaling.config import ConfigError
    from scaling.fitting.api import LAW_NAMES, fit_law, load_source
    from scaling.fitting.backtest import backtest
    from scaling.fitting.points import prepare_points

    names = list(LAW_NAMES) if law == "all" else [law]
    if law != "all" and law not in LAW_NAMES:
        raise fail(f"--law {law!r}: must be one of {', '.join(LAW_NAMES)} or all")
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
    options = {
        "bootstrap_samples": bootstrap_samples,
        "bootstrap_unit": bootstrap_unit,
        "seed": seed,
        "loss": loss,
        "pinned": _parse_pins(pin),
        "optimum": optimum,
        "method": method,
        "metric": metric_col,
        "flops_per_param_token": flops_per_param_token,
    }
    try:
        table, runs = load_source(source)
        columns = {ours: theirs for ours, theirs in columns.items() if theirs != ours}
        points = prepare_points(
            table,
            columns,
            flops_per_param_token,
            budget_tolerance,
            exclude,
            drop_highest,
            source=str(source),
        )
    except ConfigError as err:
        raise fail(str(err)) from None

    results, failures = [], []
    for name in names:
        try:
            fitted = fit_law(name, points, runs, **options)
            extra: dict = {}
            if hasattr(fitted, "optimum") and fitted.allocation_exponents():
                largest = float(points.frame["budget"].max())
                extra["largest_budget"] = largest
                extra["optima"] = [fitted.optimum(largest * m) for m in (1, 10, 100)]
            if holdout:
                extra["backtest"] = backtest(
                    points,
                    lambda p, n=name: fit_law(n, p, None, **{**options, "bootstrap_samples": 0}),
                    holdout,
                )
                fitted.details["backtest"] = extra["backtest"]
            results.append((fitted, extra))
        except ConfigError as err:
            if law != "all":
                raise fail(str(err)) from None
            failures.append({"law": name, "reason": str(err)})

    written = []
    for fitted, _ in results:
        target = out
        if law == "all" or target is None:
            folder = (
                out if (law == "all" and out is not None) else (runs / "fits" if runs else None)
            )
            target = folder / f"{fitted.law}.json" if folder is not None else None
        if target is not None:
            fitted.to_json(target)
            written.append(str(target))
    if as_json:
        payload = [{**f.to_dict(), **{k: v for k, v in e.items()}} for f, e in results]
        for item in payload:
            item.pop("samples", None)
        typer.echo(
            json.dumps(
                payload[0] if law != "all" else {"fits": payload, "skipped": failures},
                default=float,
            )
        )
        return
    for fitted, extra in results:
        _law_table(fitted, extra)
    for failure in failures:
        typer.echo(f"skipped {failure['law']}: {failure['reason']}")
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def predict(
    source: Annotated[
        Path | None, typer.Argument(help="A runs directory (its newest fit) or a fit file.")
    ] = None,
    fit_file: Annotated[Path | None, typer.Option("--fit", help="A fit file.")] = None,
    compute: Annotated[float | None, typer.Option(help="A FLOP budget.")] = None,
    params: Annotated[float | None, typer.Option(help="A model size (parameters).")] = None,
    tokens: Annotated[float | None, typer.Option(help="A token count.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Predict from a fitted law: at --compute C the optimal N*, D*, tokens per parameter,
    loss, and (where an hparams law was fitted) learning rate and batch size, each with its
    interval; --params N or --tokens D give the optimal counterpart and compute.

    Example: scaling predict RUNS --compute 1e21
    """
    from scaling.config import ConfigError
    from scaling.fitting.api import newest_fit
    from scaling.fitting.base import Law

    try:
        if fit_file is None and source is None:
            raise fail("give a runs directory or --fit FILE")
        hparams = None
        if fit_file is not None or (source is not None and source.is_file()):
            law = Law.from_json(fit_file or source)
        else:
            law = Law.from_json(newest_fit(source, exclude=("hparams",)))
            try:
                hparams = Law.from_json(newest_fit(source, law="hparams"))
            except ConfigError:
                hparams = None
        if law.law == "hparams":
            law, hparams = None, law
        prediction = {}
        if law is not None:
            prediction = law.predict(compute=compute, params=params, tokens=tokens)
        if hparams is not None:
            budget = prediction.get("compute", compute)
            if budget is not None:
                extra = hparams.predict(compute=budget)
                prediction.setdefault("intervals", {}).update(extra.pop("intervals", {}))
                prediction.update(extra)
    except ConfigError as err:
        raise fail(str(err)) from None
    if as_json:
        typer.echo(json.dumps(prediction))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"prediction ({law.law if law else 'hparams'} law)", title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    intervals = prediction.get("intervals", {})
    for key, value in prediction.items():
        if key == "intervals":
            continue
        low_high = intervals.get(key)
        table.add_row(
            key,
            f"{value:.5g}",
            f"[{low_high[0]:.4g}, {low_high[1]:.4g}]"
            if low_high and low_high[0] != low_high[1]
            else "",
        )
    Console().print(table)
