"""How the CLI shows results to a person: every table and the lines around it, in one style
(titles left, numbers right, intervals as [low, high]). Commands compute and call these;
``--json`` output is each command's own (machines read it, not people). The library draws
nothing: the live tables of `scaling launch` and `scaling demo` render ``status_table`` here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.table import Table

if TYPE_CHECKING:  # pandas costs half a second of every command's start: imported where used
    import pandas as pd


def _console() -> Console:
    return Console()  # made per call: it writes to the sys.stdout of that moment (tests swap it)


def _table(title: str | None = None) -> Table:
    return Table(title=title, title_justify="left")


def interval(low_high, fmt: str = ".4g", zero_width: bool = False) -> str:
    """``[low, high]``, or "" where there is none, or where it has no width (a quantity held
    fixed) unless ``zero_width``."""
    if not low_high or (low_high[0] == low_high[1] and not zero_width):
        return ""
    return f"[{low_high[0]:{fmt}}, {low_high[1]:{fmt}}]"


def law_table(outcome) -> None:
    """`scaling fit`: a law's parameters with their intervals, the points used and left out,
    and the compute-optimal allocation at the budgets asked for."""
    law = outcome.law
    console = _console()
    table = _table(f"{law.law}: {law.formula}")
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column(f"{law.level:.0%} interval", justify="right")
    # a parameter held fixed has a zero-width interval: say so rather than print it as fitted
    held = {
        **dict.fromkeys(getattr(law, "base", None) or {}, "given (--base)"),
        **dict.fromkeys(getattr(law, "pinned", None) or {}, "pinned"),
    }
    for name, value in law.params_.items():
        bounds = interval(law.intervals_.get(name), zero_width=True)
        table.add_row(name, f"{value:.6g}", held.get(name, bounds))
    derived = law.allocation_exponents()
    for name in ("a", "b"):
        if name in derived:
            low_high = derived.get("derived_intervals", {}).get(name) or law.intervals_.get(name)
            table.add_row(
                f"{name} (N_opt ∝ C^a, D_opt ∝ C^b)" if name == "a" else name,
                f"{derived[name]:.4f}",
                interval(low_high, zero_width=True),
            )
    console.print(table)
    predicted = law.details_.get("predicted_points")
    console.print(
        f"{law.n_points_} points used"
        + (f" ({predicted} of them predicted, not measured)" if predicted else "")
        + f", {len(law.excluded_)} excluded"
        + (f", objective {law.objective_:.4g}" if law.objective_ is not None else "")
    )
    for entry in law.excluded_[:10]:
        console.print(
            f"  excluded row {entry['row']} ({entry.get('run_id') or '-'}): {entry['reason']}"
        )
    if "bootstrap" in law.details_:
        console.print(f"  bootstrap: {law.details_['bootstrap']}")
    for warning in law.details_.get("warnings", []):
        console.print(f"  [yellow]warning[/]: {warning}")
    for budget in law.details_.get("budgets", []):
        if budget.get("reason"):
            console.print(f"  budget {budget['budget']:.3g} left out: {budget['reason']}")
    if outcome.optima:
        opt = _table("compute-optimal allocation")
        for column in ("compute", "N_opt", "D_opt", "tokens/param", "loss"):
            opt.add_column(column, justify="right")
        for row in outcome.optima:
            ranges = row.get("intervals", {})

            def cell(key, fmt, row=row, ranges=ranges):
                text = format(row[key], fmt)
                if key in ranges:
                    text += f" [{ranges[key][0]:{fmt}}, {ranges[key][1]:{fmt}}]"
                return text

            opt.add_row(
                f"{row['compute']:.3g}",
                cell("params", ".4g"),
                cell("tokens", ".4g"),
                cell("tokens_per_param", ".1f"),
                cell("loss", ".4f"),
            )
        console.print(opt)
    if outcome.backtest is not None:
        console.print(f"backtest: {json.dumps(outcome.backtest, default=str)}")


def audit_table(result) -> None:
    """`scaling fit --audit`: Approach 3 under each analysis choice, and the spread of the
    choices against the bootstrap."""
    console = _console()
    table = _table(f"Approach 3 refitted under each choice; answers at C = {result.compute:.3g}")
    for column in ("choice", "points", "a", "b", "N_opt", "D_opt", "loss"):
        table.add_column(column, justify="left" if column == "choice" else "right")
    for c in result.choices:
        if c.note:
            table.add_row(c.choice, str(c.n_points), f"[dim]{c.note}[/]")
            continue
        table.add_row(
            c.choice, str(c.n_points), f"{c.a:.3f}", f"{c.b:.3f}",
            f"{c.params:.3g}", f"{c.tokens:.3g}", f"{c.loss:.3f}",
        )  # fmt: skip
    console.print(table)
    spread = result.spread()
    summary = _table("spread over the choices against the bootstrap")
    summary.add_column("answer")
    summary.add_column("choices", justify="right")
    for unit in result.intervals:
        summary.add_column(f"{result.level:.0%} by {unit}", justify="right")
    for key, label in (("a", "a"), ("b", "b"), ("params", "N_opt"), ("tokens", "D_opt"),
                       ("loss", "loss")):  # fmt: skip
        cells = [spread[key], *(interval[key] for interval in result.intervals.values())]
        summary.add_row(label, *(f"{low:.3g} - {high:.3g}" for low, high in cells))
    console.print(summary)
    for unit, note in result.notes.items():
        console.print(f"  no bootstrap by {unit}: {note}")
    verdicts = result.verdicts()
    for verdict in verdicts:
        console.print(f"[yellow]verdict[/]: {verdict}")
    if not verdicts:
        console.print("verdict: the choices move a and N_opt less than the bootstrap interval")


def plan_table(frame, report, changes, out) -> None:
    """`scaling plan`: the runs grouped by budget, then the plan's summary."""
    console = _console()
    table = _table("plan")
    columns = [
        "run_id",
        "grid",
        "budget",
        "params",
        "n_layers",
        "d_model",
        "n_heads",
        "tokens",
        "tokens/param",
        "steps",
        "lr",
        "flops",
    ]
    for column in columns:
        table.add_column(column, justify="left" if column in ("run_id", "grid") else "right")
    for _, group in frame.sort_values(["budget", "params"]).groupby("budget", sort=False):
        for row in group.itertuples():
            table.add_row(
                row.run_id,
                row.grid,
                f"{row.budget:.3g}",
                f"{row.params:,}",
                str(row.n_layers),
                str(row.d_model),
                str(row.n_heads),
                f"{row.tokens:,}",
                f"{row.tokens_per_param:.1f}",
                str(row.steps),
                f"{row.lr:.3g}",
                f"{row.flops:.3g}",
            )
        table.add_section()
    console.print(table)
    largest = report["largest_run"]
    console.print(
        f"{report['runs']} runs, {report['total_flops']:.3g} FLOPs in all"
        + (
            f" ({report['branch_flops']:.3g} of them WSD branches' cooldowns)"
            if report.get("branch_flops")
            else ""
        )
        + "; largest "
        f"{largest['run_id']} ({largest['params']:,} parameters, {largest['tokens']:,} tokens). "
        f"Corpus: {report['corpus_tokens']:.3g} training tokens ({report['corpus_tokens_are']}); "
        f"the longest run takes {report['max_epochs']:.2f} epochs"
        + (
            f", {report['runs_repeating_data']} runs repeat data"
            if report["runs_repeating_data"]
            else ""
        )
        + "."
    )
    console.print(
        f"Estimated wall time on {report['device']}: "
        f"{report['estimated_wall_s'] / 60:.1f} minutes at "
        f"{report['assumed_flops_per_s']:.3g} FLOP/s on average."
    )
    for line in report["duplicates"]:
        console.print(f"[yellow]deduplicated[/]: {line}")
    for line in report["warnings"]:
        console.print(f"[yellow]warning[/]: {line}")
    if changes is not None:
        console.print(
            f"wrote {out}: {len(changes['new'])} new, {len(changes['kept'])} kept "
            f"(unchanged), {len(changes['dropped'])} no longer in the spec"
            + (f" ({', '.join(changes['dropped'][:5])})" if changes["dropped"] else "")
        )


def cache_table(entries) -> None:
    """`scaling data`: prepared corpora in the cache."""
    table = _table()
    for column in (
        "key",
        "source",
        "tokenizer",
        "vocab",
        "train tokens",
        "val tokens",
        "tokens/byte",
    ):
        table.add_column(
            column, justify="right" if "tok" in column or column == "vocab" else "left"
        )
    for entry in entries:
        meta = entry.meta
        table.add_row(
            meta["key"],
            meta["source"],
            meta["tokenizer"]["kind"],
            str(meta["vocab_size"]),
            f"{meta['train']['tokens']:,}",
            f"{meta['val']['tokens']:,}",
            f"{meta['tokens_per_byte']:.3f}",
        )
    _console().print(table)


def coord_check_table(result) -> None:
    """`scaling coord-check`: RMS per layer and width at the last step, and the slope."""
    slopes = result.slopes()
    table = _table(f"RMS at step {result.steps} ({result.parametrization}, {result.seeds} seeds)")
    table.add_column("layer")
    for width in result.widths:
        table.add_column(str(width), justify="right")
    table.add_column("slope", justify="right")
    for layer, values in result.rms.items():
        slope = slopes[layer]
        style = "" if abs(slope) <= 0.1 else "yellow"
        table.add_row(
            layer,
            *(f"{v:.3g}" for v in values[-1]),
            f"[{style}]{slope:+.2f}[/]" if style else f"{slope:+.2f}",
        )
    _console().print(table)


def status_table(frame: pd.DataFrame) -> Group:
    """`scaling status` and the live table of `scaling launch` and `scaling demo`: per run,
    then totals per budget."""
    import pandas as pd

    from scaling.launching.state import STATES

    runs = _table("runs")
    for column in (
        "run_id",
        "budget",
        "params",
        "state",
        "tokens",
        "loss",
        "tokens/s",
        "wall",
        "ETA",
    ):
        runs.add_column(column, justify="left" if column in ("run_id", "state") else "right")
    colours = {
        "done": "green",
        "pruned": "magenta",
        "running": "cyan",
        "failed": "red",
        "diverged": "red",
        "stale": "yellow",
        "cancelled": "yellow",
        "queued": "blue",
        "pending": "white",
    }
    for row in frame.sort_values(["budget", "params"]).itertuples():
        runs.add_row(
            row.run_id,
            f"{row.budget:.3g}",
            f"{row.params:,}",
            f"[{colours[row.state]}]{row.state}[/]",
            f"{row.tokens_done:,.0f}/{row.tokens_total:,.0f}",
            "" if pd.isna(row.loss) else f"{row.loss:.4f}",
            "" if pd.isna(row.tokens_per_s) else f"{row.tokens_per_s:,.0f}",
            "" if pd.isna(row.wall_s) else f"{row.wall_s:,.0f}s",
            "" if pd.isna(row.eta_s) else f"{row.eta_s:,.0f}s",
        )
    budgets = _table("budgets")
    for column in ("budget", *STATES):
        budgets.add_column(column, justify="right")
    for budget, group in frame.groupby("budget"):
        counts = group["state"].value_counts()
        budgets.add_row(f"{budget:.3g}", *(str(counts.get(s, 0)) for s in STATES))
    done = frame["tokens_done"].sum() / max(frame["tokens_total"].sum(), 1)
    return Group(
        runs,
        budgets,
        f"{(frame['state'] == 'done').sum()}/{len(frame)} runs done, {done:.0%} of all tokens",
    )


def prediction_table(law_name: str, prediction: dict, level: float | None) -> None:
    """`scaling predict`: each quantity with its interval."""
    table = _table(f"prediction ({law_name} law)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("interval" if level is None else f"{level:.0%} interval", justify="right")
    intervals = prediction.get("intervals", {})
    for key, value in prediction.items():
        if key != "intervals":
            table.add_row(key, f"{value:.5g}", interval(intervals.get(key)))
    _console().print(table)


def schedule_table(law_name: str, prediction: dict, level: float | None, rows: int = 20) -> None:
    """`scaling predict --schedule`: the loss at ``rows`` evenly spaced steps of the schedule
    (``--json`` gives every step)."""
    steps, loss = prediction["steps"], prediction["loss"]
    bounds = prediction.get("intervals", {}).get("loss")
    table = _table(f"predicted loss ({law_name} law), {len(steps)} steps")
    table.add_column("step", justify="right")
    table.add_column("loss", justify="right")
    if bounds is not None:
        table.add_column("interval" if level is None else f"{level:.0%} interval", justify="right")
    count = min(rows, len(steps))
    for i in sorted({round(k * (len(steps) - 1) / max(1, count - 1)) for k in range(count)}):
        cells = [str(steps[i]), f"{loss[i]:.5g}"]
        if bounds is not None:
            cells.append(interval(bounds[i], zero_width=True))
        table.add_row(*cells)
    _console().print(table)


@contextlib.contextmanager
def iterations(quiet: bool) -> Iterator[Callable[[int, float], None] | None]:
    """A progress bar for the optimal schedule's iterations (none with ``--json``): yields
    the callback ``optimal_schedule`` calls with (iteration, predicted final loss)."""
    if quiet:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("optimising the schedule", total=None)

        def tick(iteration: int, loss: float) -> None:
            bar.update(task, completed=iteration, description=f"predicted final loss {loss:.5g}")

        yield tick


def optimal_schedule_table(found: dict, rows: int = 12) -> None:
    """`scaling predict --optimal-schedule`: the predicted final losses (the optimum, cosine,
    WSD) and the schedule at ``rows`` evenly spaced steps."""
    losses = _table(f"predicted final loss ({found['law']} law), {found['steps']} steps")
    for column in ("schedule", "final loss", "optimum's gain"):
        losses.add_column(column, justify="left" if column == "schedule" else "right")
    losses.add_row("optimal", f"{found['loss']:.5g}", "")
    for name, loss in found["baselines"].items():
        losses.add_row(name, f"{loss:.5g}", f"{found['gain'][name]:.4g}")
    steps = found["schedule"]
    sample = _table("the optimal schedule (scaling predict --json: every step)")
    sample.add_column("step", justify="right")
    sample.add_column("lr", justify="right")
    count = min(rows, len(steps))
    for i in sorted({round(k * (len(steps) - 1) / max(1, count - 1)) for k in range(count)}):
        sample.add_row(str(steps[i]["step"]), f"{steps[i]['lr']:.4g}")
    _console().print(Group(losses, sample))


def predicted_points_table(rows) -> None:
    """`scaling predict --branches`: each predicted branch point (run, fraction, tokens,
    FLOPs, loss and its interval)."""
    table = _table(f"predicted points ({len(rows)}), not measured")
    for column in ("run", "fraction", "tokens", "flops", "loss", "interval"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows.to_dict(orient="records"):
        low, high = row.get("loss_low"), row.get("loss_high")
        bounds = [low, high] if low == low and high == high else None  # NaN: not bootstrapped
        table.add_row(
            str(row["run_id"]),
            f"{row['fraction']:g}",
            f"{row['tokens']:.4g}",
            f"{row['flops']:.4g}",
            f"{row['loss']:.5g}",
            interval(bounds, zero_width=True) if bounds else "-",
        )
    _console().print(table)


def count_tables(params: dict, flops: dict, seq_len: int, budget: float | None) -> None:
    """`scaling count`: parameters by kind, FLOPs per token by method (and the tokens a
    budget buys)."""
    table = _table("parameters")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for key, value in params.items():
        table.add_row(key, f"{value:,}")
    flop_table = _table(f"training FLOPs per token (seq_len {seq_len})")
    flop_table.add_column("method")
    flop_table.add_column("FLOPs/token", justify="right")
    if budget is not None:
        flop_table.add_column(f"tokens for {budget:.3g} FLOPs", justify="right")
    for method, value in flops.items():
        row = [method, f"{value:.4g}"]
        if budget is not None:
            row.append(f"{budget / value:.4g}")
        flop_table.add_row(*row)
    console = _console()
    console.print(table)
    console.print(flop_table)


def dry_run_table(frame: pd.DataFrame, duration) -> None:
    """`scaling launch --dry-run`: what would run, in order, where and for how long;
    ``duration(seconds)`` formats a time."""
    table = _table("would run (dry run: nothing started or claimed)")
    for column in ("#", "run_id", "params", "FLOPs", "state", "action", "devices", "start", "wall"):
        table.add_column(
            column,
            justify="left" if column in ("run_id", "state", "action", "devices") else "right",
        )
    for row in frame.itertuples():
        table.add_row(
            str(row.order),
            row.run_id,
            f"{row.params:,}",
            f"{row.flops:.3g}",
            row.state,
            row.action,
            row.devices,
            "" if row.start_s is None or row.start_s != row.start_s else duration(row.start_s),
            "" if row.wall_s is None or row.wall_s != row.wall_s else duration(row.wall_s),
        )
    _console().print(table)


def published_table(rows: list[dict]) -> None:
    """`scaling published`: the bundled datasets."""
    table = _table("published points (scaling fit builtin:NAME)")
    for column in ("name", "rows", "summary"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], str(row["rows"]), row["summary"])
    _console().print(table)
