"""Figures from results and fits. Each function returns a matplotlib Figure, for notebooks;
``scaling plot`` saves them. One style: log axes, FLOPs in scientific notation, sizes for a
paper column (3.4 × 2.6 in) or a row (7 × 2.6 in).

A figure draws the laws it is given and never fits one: the IsoFLOP parabolas and minima are
the IsoFLOP law's own (with its exclusions and options), the curves and bands are each law's
``optimum`` and ``loss`` at its parameters and bootstrap samples, a loss-curve law's predicted
curve its ``curve`` along the run's own schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files, never a window: this runs on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scaling.fitting import CurveLaw, Law, LrCurves, ParametricLaw  # noqa: E402

CHINCHILLA = ParametricLaw.from_params(
    {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
)
STYLE = {
    "figure.dpi": 150,
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.bbox": "tight",
}
plt.rcParams.update(STYLE)


def _size_axis(axis) -> None:
    """Parameter or token counts as 20k, 50k, 1M...: labels at 1, 2 and 5 of each decade."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0,)))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)))
    axis.set_major_formatter(ticker.EngFormatter(sep=""))
    axis.set_minor_formatter(ticker.EngFormatter(sep=""))


def _budget_colours(budgets):
    budgets = sorted({float(b) for b in budgets if np.isfinite(b)})
    cmap = plt.get_cmap("viridis")
    return {b: cmap(i / max(len(budgets) - 1, 1)) for i, b in enumerate(budgets)}


def isoflop_profiles(points: pd.DataFrame, law: Law | None = None) -> plt.Figure:
    """Loss against parameters per budget; with an IsoFLOP law, each budget's parabola as the
    law fitted it and its minimum (the budgets the law left out have points only)."""
    fig, ax = plt.subplots(figsize=(3.4, 2.6))
    colours = _budget_colours(points["budget"])
    for budget, group in points.groupby("budget"):
        ax.scatter(
            group["params"], group["loss"], s=12, color=colours[budget], label=f"{budget:.0e} FLOPs"
        )
    if law is not None:
        for row in law.budget_optima().to_dict(orient="records"):
            colour = colours.get(row["budget"], "grey")
            if isinstance(row.get("parabola"), list):
                c2, c1, c0 = row["parabola"]
                grid = np.linspace(*row["log_params_range"], 100)
                ax.plot(np.exp(grid), c0 + c1 * grid + c2 * grid**2, color=colour, lw=1)
            if row["used"]:
                ax.plot(row["params"], row["loss"], "k*", ms=6)
    ax.set(
        xscale="log", xlabel="parameters N", ylabel="loss (nats/token)", title="IsoFLOP profiles"
    )
    _size_axis(ax.xaxis)
    ax.legend(frameon=False)
    return fig


def allocation(points: pd.DataFrame, laws: list[Law], target: float | None = None) -> plt.Figure:
    """N_opt and D_opt against compute: the IsoFLOP law's per-budget minima (when one is
    given), each law's power law with its bootstrap band, Chinchilla's published law for
    reference, and the extrapolation to ``target``."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    minima = [law.budget_optima() for law in laws if law.law == "isoflop"]
    optima = minima[0][minima[0]["used"]] if minima else None
    low = points["budget"].min() / 3
    high = max(target or 0, points["budget"].max()) * 3
    grid = np.logspace(np.log10(low), np.log10(high), 100)
    for ax, key, label in ((axes[0], "params", "N_opt"), (axes[1], "tokens", "D_opt")):
        if optima is not None:
            ax.scatter(
                optima["budget"], optima[key], color="k", s=14, zorder=3, label="IsoFLOP minima"
            )
        for law, colour in zip(laws, ("C0", "C1", "C2"), strict=False):
            ax.plot(
                grid,
                [law.optimum(c)[key] for c in grid],
                color=colour,
                lw=1.2,
                label=f"{law.law} fit",
            )
            if law.samples_:
                draws = np.array(
                    [[law.optimum(c, s)[key] for c in grid] for s in law.samples_[:200]]
                )
                lo, hi = np.nanpercentile(draws, [2.5, 97.5], axis=0)
                ax.fill_between(grid, lo, hi, color=colour, alpha=0.2, lw=0)
        ax.plot(
            grid,
            [CHINCHILLA.optimum(c)[key] for c in grid],
            "k--",
            lw=0.8,
            label="Chinchilla (2022)",
        )
        if target:
            ax.axvline(target, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=label)
    axes[0].legend(frameon=False)
    fig.suptitle("compute-optimal allocation", fontsize=9)
    return fig


def _drawable(law: Law, points: pd.DataFrame) -> bool:
    if not all(np.isfinite(v) for v in law.params_.values()):
        return False
    if "optimum" in law.answers:
        budgets = [points["budget"].min(), points["budget"].max()]
        values = [law.optimum(c)[k] for c in budgets for k in ("params", "tokens")]
        return all(np.isfinite(v) and v > 0 for v in values)
    return True


def loss_curves(curves: pd.DataFrame) -> plt.Figure:
    """Every run's loss against compute, coloured by size, with the compute-optimal frontier."""
    from scaling.fitting.envelope import envelope_optima

    fig, ax = plt.subplots(figsize=(3.4, 2.6))
    sizes = np.log10(curves["params"].astype(float))
    norm = plt.Normalize(sizes.min(), sizes.max())
    cmap = plt.get_cmap("plasma")
    for _, run in curves.groupby("run_id"):
        run = run.sort_values("flops")
        ax.plot(
            run["flops"],
            run["loss"],
            color=cmap(norm(np.log10(run["params"].iloc[0]))),
            lw=0.8,
            alpha=0.8,
        )
    frontier = envelope_optima(curves, n_grid=30)
    ax.plot(frontier["budget"], frontier["loss"], "k-", lw=1.5, label="frontier")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="log10 N")
    ax.set(xscale="log", xlabel="compute C (FLOPs)", ylabel="train loss", title="loss curves")
    ax.legend(frameon=False)
    return fig


def parametric_contours(law: Law, points: pd.DataFrame) -> plt.Figure:
    """Contours of the fitted L(N, D) with the efficient frontier and the points."""
    fig, ax = plt.subplots(figsize=(3.4, 2.6))
    n = np.logspace(np.log10(points["params"].min() / 3), np.log10(points["params"].max() * 3), 80)
    d = np.logspace(np.log10(points["tokens"].min() / 3), np.log10(points["tokens"].max() * 3), 80)
    N, D = np.meshgrid(n, d)
    contour = ax.contour(N, D, law.loss(N, D), levels=12, cmap="viridis", linewidths=0.7)
    ax.clabel(contour, fontsize=5, fmt="%.2f")
    budgets = np.logspace(np.log10(6 * n[0] * d[0]), np.log10(6 * n[-1] * d[-1]), 50)
    frontier = [law.optimum(c) for c in budgets]
    ax.plot(
        [f["params"] for f in frontier],
        [f["tokens"] for f in frontier],
        "r-",
        lw=1.2,
        label="efficient frontier",
    )
    ax.scatter(points["params"], points["tokens"], s=8, color="k", zorder=3, label="runs")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(n[0], n[-1]),
        ylim=(d[0], d[-1]),
        xlabel="parameters N",
        ylabel="tokens D",
        title="L(N, D) = E + A/N^α + B/D^β",
    )
    ax.legend(frameon=False, loc="upper left")
    return fig


def residuals(law: Law, points: pd.DataFrame) -> plt.Figure:
    """log(predicted) − log(observed) loss of each point, against compute."""
    fig, ax = plt.subplots(figsize=(3.4, 2.2))
    predicted = np.asarray(law.loss(points["params"], points["tokens"]), float)
    ax.scatter(points["flops"], np.log(predicted) - np.log(points["loss"]), s=10)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(
        xscale="log",
        xlabel="compute C (FLOPs)",
        ylabel="log residual",
        title=f"{law.law} fit residuals",
    )
    return fig


def hparams(points: pd.DataFrame, law: Law | None = None) -> plt.Figure:
    """Loss against learning rate per budget, with the law's optimal learning rate."""
    fig, ax = plt.subplots(figsize=(3.4, 2.6))
    colours = _budget_colours(points["budget"])
    for budget, group in points.groupby("budget"):
        best = group.loc[group.groupby("lr")["loss"].idxmin()].sort_values("lr")
        ax.plot(best["lr"], best["loss"], "o-", ms=3, color=colours[budget], label=f"{budget:.0e}")
        best_lr = law.hyperparameters(budget).get("lr") if law is not None else None
        if best_lr is not None:
            ax.axvline(best_lr, color=colours[budget], ls=":", lw=0.8)
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss", title="learning-rate sweeps")
    ax.legend(frameon=False, title="budget")
    return fig


def holdout(summary: dict[str, Any]) -> plt.Figure:
    """The demo's check: the predicted loss (with its interval) against the measured one."""
    fig, ax = plt.subplots(figsize=(3.0, 2.4))
    predicted, measured = summary["predicted_loss"], summary["measured_loss"]
    low, high = summary.get("predicted_interval") or (predicted, predicted)
    ax.errorbar(
        [0],
        [predicted],
        yerr=[[predicted - low], [high - predicted]],
        fmt="o",
        capsize=4,
        label="predicted (95%)",
    )
    ax.plot([1], [measured], "s", color="C3", label="measured")
    ax.set(
        xticks=[0, 1],
        xticklabels=["predicted", "measured"],
        xlim=(-0.7, 1.7),
        ylabel="eval loss",
        title=f"holdout at {summary['budget']:.1e} FLOPs",
    )
    ax.legend(frameon=False)
    return fig


def _binned(steps: np.ndarray, values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Means over ``width`` consecutive logged steps (a per-batch train loss is noisy)."""
    whole = len(values) // width * width
    if whole == 0:
        return steps, values
    return (
        steps[:whole].reshape(-1, width).mean(axis=1),
        values[:whole].reshape(-1, width).mean(axis=1),
    )


def curve_fits(
    curves: LrCurves,
    laws: Mapping[str, CurveLaw | Mapping[str, CurveLaw]],
    titles: Mapping[str, str] | None = None,
) -> plt.Figure:
    """Each run's measured loss curve beside the loss each curve law predicts from that run's
    schedule alone (``law.curve(lr)``), one panel per run, the lr on a faint second axis.

    ``laws`` by label: a law that predicts every curve, or by curve name the law that predicts
    that curve (a law fitted without it: a held-out prediction). The measured loss is drawn
    as logged (light) and as means over bins of logged steps (dark), since one batch's train
    loss is noisy; the predicted curves are drawn at every step."""
    n = len(curves.curves)
    columns = min(n, 3)
    rows = -(-n // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.4 * columns + 0.4, 2.3 * rows), squeeze=False, sharey=True
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    low, high = np.inf, -np.inf
    for ax, curve in zip(axes.flat, curves.curves, strict=False):
        ax.plot(curve.steps, curve.loss, color="0.75", lw=0.5, label="measured")
        width = max(1, len(curve.steps) // 40)
        ax.plot(
            *_binned(curve.steps, curve.loss, width), color="k", lw=1.0, label="measured, binned"
        )
        for (label, given), colour in zip(laws.items(), ("C0", "C3", "C2", "C1"), strict=False):
            law = given.get(curve.name) if isinstance(given, Mapping) else given
            if law is None:
                continue
            steps = np.arange(len(curve.lr))
            ax.plot(steps, law.curve(curve.lr, steps), color=colour, lw=1.2, label=label)
        # the interesting range is after the first fast drop: the top is set by the measured
        # loss a tenth of the way in, not by the loss of the untrained model
        late = curve.loss[curve.steps >= 0.1 * len(curve.lr)]
        if len(late):
            low, high = min(low, late.min()), max(high, np.percentile(late, 99))
        twin = ax.twinx()
        twin.plot(np.arange(len(curve.lr)), curve.lr, color="0.6", lw=0.8, ls="--")
        twin.set_ylim(0, curve.lr.max() * 1.05)
        twin.tick_params(labelsize=6, colors="0.5")
        twin.grid(False)
        ax.set(xlabel="step", title=(titles or {}).get(curve.name, curve.name))
    if np.isfinite(low):
        span = high - low
        axes[0, 0].set_ylim(low - 0.05 * span, high + 0.05 * span)
    for ax in axes[:, 0]:
        ax.set_ylabel("train loss")
    axes.flat[0].legend(frameon=False, loc="upper right")
    fig.suptitle("loss curves: measured and predicted from the schedule (dashed: lr)", fontsize=9)
    fig.tight_layout()
    return fig


def figures_for(
    points: pd.DataFrame,
    laws: dict[str, Law],
    curves: pd.DataFrame | None = None,
    summary: dict[str, Any] | None = None,
    lr_curves: LrCurves | None = None,
) -> dict[str, plt.Figure]:
    """Every figure the data and the laws support: ``points`` (canonical columns, may be
    empty), ``laws`` by name (any fitted laws; each figure takes those that answer its
    question), loss ``curves`` and a demo ``summary`` if there, and ``lr_curves`` (each run's
    schedule and logged losses) for the loss-curve laws' figure."""
    figures: dict[str, plt.Figure] = {}
    curve_laws = {name: law for name, law in laws.items() if "curve" in law.answers}
    if lr_curves is not None and curve_laws:
        figures["curve_fits"] = curve_fits(lr_curves, curve_laws)
    # the point figures below ask the point laws alone: a loss-curve law answers none of them
    laws = {name: law for name, law in laws.items() if name not in curve_laws}
    if points.empty:
        return figures
    # a degenerate fit (an exponent run off to infinity on too few points) has no curve to draw
    laws = {name: law for name, law in laws.items() if _drawable(law, points)}
    if points["budget"].nunique() >= 2:
        figures["isoflop_profiles"] = isoflop_profiles(points, laws.get("isoflop"))
    preferred = [laws[k] for k in ("parametric", "isoflop", "envelope") if k in laws]
    others = [law for law in laws.values() if law not in preferred]
    allocating = [law for law in preferred + others if "optimum" in law.answers][:3]
    if allocating:
        target = summary.get("budget") if summary else None
        figures["allocation"] = allocation(points, allocating, target)
    if curves is not None and curves["params"].nunique() >= 2:
        figures["loss_curves"] = loss_curves(curves)
    surface = laws.get("parametric")
    if surface is not None:
        figures["parametric_contours"] = parametric_contours(surface, points)
    loss_law = surface or next((law for law in laws.values() if "loss" in law.answers), None)
    if loss_law is not None and not loss_law.covariates:
        figures["residuals"] = residuals(loss_law, points)
    if "lr" in points and points["lr"].nunique() > 1:
        hyper = next((law for law in laws.values() if "hyperparameters" in law.answers), None)
        figures["hparams"] = hparams(points, hyper)
    if summary and "measured_loss" in summary:
        figures["holdout"] = holdout(summary)
    return figures
