"""Chinchilla Approaches 1 (envelope) and 2 (IsoFLOP profiles).

Both find compute-optimal (C, N_opt, D_opt) triples and fit N_opt = k_N·C^a and
D_opt = k_D·C^b (and the loss at the optimum, L_opt = k_L·C^c, a local description that does
not saturate: trust it only near the fitted budgets).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scaling.fitting.akima import SEED_NOISE, budget_optimum, check_seed_noise, replicate_intervals
from scaling.fitting.base import (
    FitError,
    Law,
    all_equal,
    blas_threads,
    finite_number,
    percentile_interval,
    require_varying,
)
from scaling.fitting.powerlaw import evaluate, fit_power_law, invert


class AllocationLaw(Law):
    """N_opt, D_opt and L_opt as power laws of compute."""

    formula = "N_opt = k_N * C^a; D_opt = k_D * C^b; L_opt = k_L * C^c"
    answers = frozenset({"optimum"})
    parameters = ("k_N", "a", "k_D", "b", "k_L", "c")
    positive_params = ("k_N", "k_D", "k_L")

    @classmethod
    def details_problem(cls, details: dict[str, Any]) -> str | None:
        """The per-budget optima the figures draw (``budget_optima``): rows with a positive
        budget, numbers or null for the optimum, a parabola of 3 coefficients."""
        rows = details.get("budgets", details.get("optima", []))
        if not isinstance(rows, list):
            return f"budgets: {rows!r:.40} must be a list of per-budget optima"
        for i, row in enumerate(rows):
            where = f"budgets[{i}]"
            if not isinstance(row, dict):
                return f"{where}: must be an object"
            if not (finite_number(row.get("budget")) and row["budget"] > 0):
                return f"{where}.budget: {row.get('budget')!r:.40} must be a positive number"
            if not isinstance(row.get("used", True), bool):
                return f"{where}.used: must be true or false"
            for key in ("params", "tokens", "loss"):
                if not (row.get(key) is None or finite_number(row[key])):
                    return f"{where}.{key}: {row[key]!r:.40} must be a number or null"
            for key, size in (("parabola", 3), ("log_params_range", 2)):
                value = row.get(key)
                if value is not None and not (
                    isinstance(value, list)
                    and len(value) == size
                    and all(map(finite_number, value))
                ):
                    return f"{where}.{key}: must be a list of {size} numbers"
        return None

    def allocation_exponents(self) -> dict[str, float]:
        return {"a": self.params["a"], "b": self.params["b"]} if self.params else {}

    def compute_for(self, sample=None, params=None, tokens=None) -> float:
        p = sample or self.params
        if params is not None:
            return float(invert(p["k_N"], p["a"], params))
        return float(invert(p["k_D"], p["b"], tokens))

    def optimum(self, compute: float, sample: dict[str, float] | None = None) -> dict[str, float]:
        p = sample or self.params
        N, D = evaluate(p["k_N"], p["a"], compute), evaluate(p["k_D"], p["b"], compute)
        return {
            "compute": float(compute),
            "params": float(N),
            "tokens": float(D),
            "tokens_per_param": float(D / N),
            "loss": float(evaluate(p["k_L"], p["c"], compute)),
        }

    def budget_optima(self) -> pd.DataFrame:
        """The per-budget optima the power laws were fitted through (column ``used``)."""
        rows = self.details.get("budgets") or self.details.get("optima") or []
        frame = pd.DataFrame(rows)
        if "used" not in frame:
            frame["used"] = True
        return frame


OPTIMA = ("parabola", "parametric", "bootstrap", "akima")


class IsoFLOPLaw(AllocationLaw):
    """Approach 2. Per budget, a parabola of loss in log N (and in log D); its vertex is the
    optimum. A budget with fewer than 3 sizes, no minimum, or a vertex outside its sampled
    range is left out with the reason. Settings: ``optimum="parametric"`` takes each kept
    budget's optimum from an Approach 3 fit instead (no parabola bias under asymmetric
    sampling); ``optimum="bootstrap"`` estimates it as Porian et al. (2024) do: the median
    vertex over resamples of the budget's points, its spread weighting the power-law fit, and
    budgets whose minimum lies at the edge kept; ``optimum="akima"`` is Porian et al.'s
    estimator as their code computes it (``scaling.fitting.akima``: an Akima interpolation's
    argmin on a dense grid, its median over replicates with ``seed_noise`` added to the losses,
    budgets whose minimum lies at an edge left out, the power laws weighted by the spreads);
    ``flops_per_param_token`` (None: the points' own) converts a vertex in N to tokens where
    the profile in D has no vertex.

    What the points identify: a budget's optimum needs 3 or more distinct sizes whose losses
    differ (through equal losses a parabola curves up or down by round-off alone, so such a
    budget is left out with its reason), and the power laws need optima at 2 or more budgets;
    with fewer the fit is refused."""

    law = "isoflop"
    defaults: ClassVar[dict[str, Any]] = {
        "optimum": "parabola",
        "flops_per_param_token": None,
        "seed_noise": SEED_NOISE,
    }

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        check_seed_noise(self.settings["seed_noise"], self.settings["optimum"])

    def _fit(self, points):
        frame = points.frame
        optimum = self.settings["optimum"]
        if optimum not in OPTIMA:
            raise FitError(f"must be one of {', '.join(OPTIMA)}", param="optimum", value=optimum)
        if self.settings["flops_per_param_token"] is None:
            self.settings["flops_per_param_token"] = points.flops_per_param_token
        n_budgets = frame["budget"].nunique()
        if n_budgets < 2:
            raise FitError(
                f"{points.source}: an IsoFLOP fit needs at least 2 budgets; the points "
                f"form {n_budgets} (give a budget column, or a wider budget_tolerance)"
            )
        self._parametric = None
        if optimum == "parametric":
            from scaling.fitting.parametric import ParametricLaw

            self._parametric = ParametricLaw(
                flops_per_param_token=self.settings["flops_per_param_token"]
            ).fit(points)
        optima = self._optima(frame)
        used = optima[optima["used"]]
        if len(used) < 2:
            by_reason: dict[str, list[str]] = {}  # one reason once, with its budgets
            for row in optima.itertuples():
                if row.reason:
                    by_reason.setdefault(row.reason, []).append(f"{row.budget:.3g}")
            reasons = "; ".join(f"{', '.join(b)}: {r}" for r, b in by_reason.items())
            raise FitError(
                f"{points.source}: fewer than 2 budgets have an interior minimum ({reasons})"
            )
        details: dict[str, Any] = {}
        if "_stars" in optima:  # Porian et al.'s own interval of a and b, from the replicates
            details["seed_noise_intervals"] = replicate_intervals(used, self.settings["level"])
            optima = optima.drop(columns="_stars")
        budgets = optima.to_dict(orient="records")
        return _fit_allocation(used), None, {"budgets": budgets, **details}

    def _optima(self, frame: pd.DataFrame) -> pd.DataFrame:
        k, s = float(self.settings["flops_per_param_token"] or 6.0), self.settings
        return isoflop_optima(frame, s["optimum"], k, self._parametric, s["seed_noise"], s["seed"])

    def _refit(self, frame, params):
        kept = self._optima(frame)
        kept = kept[kept["used"]]
        return _fit_allocation(kept) if len(kept) >= 2 else None


class EnvelopeLaw(AllocationLaw):
    """Approach 1 from loss curves (``fit`` takes the curves of ``results.load_curves``:
    run_id, params, tokens, flops, loss per logged step): at ``n_grid`` log-spaced FLOP values,
    the run of least loss; power laws through those. Bootstrap resamples whole runs.

    What the curves identify: losses that differ (where every loss is equal no run is better
    than another, and the winner would be an accident of order) and at least 2 model sizes
    winning somewhere; otherwise the fit is refused."""

    law = "envelope"
    defaults: ClassVar[dict[str, Any]] = {"n_grid": 20}

    def fit(self, data, source: str = "curves") -> EnvelopeLaw:
        curves = data.frame if hasattr(data, "frame") else data
        needed = {"run_id", "params", "tokens", "flops", "loss"} - set(curves)
        if needed:
            raise FitError(
                f"{source}: the envelope needs loss curves with columns run_id, params, "
                f"tokens, flops, loss; missing {', '.join(sorted(needed))}"
            )
        curves = curves[(curves["flops"] > 0) & np.isfinite(curves["loss"])]
        if curves["params"].nunique() < 2:
            raise FitError(f"{source}: the envelope needs runs of at least 2 model sizes")
        require_varying(curves["loss"], source, self.law)
        n_grid = int(self.settings["n_grid"])
        optima = envelope_optima(curves, n_grid)
        if optima["params"].nunique() < 2:
            raise FitError(
                f"{source}: one model size wins at every compute; the envelope has no "
                "slope (train smaller and larger models)"
            )
        # Bootstrap over runs: a run drawn twice enters twice, under two names.
        runs = [run for _, run in curves.groupby("run_id", sort=True)]
        rng = np.random.default_rng(self.settings["seed"])
        samples = []
        with blas_threads():
            for _ in range(int(self.settings["bootstrap_samples"])):
                chosen = rng.integers(0, len(runs), len(runs))
                sample = pd.concat([runs[i].assign(run_id=j) for j, i in enumerate(chosen)])
                found = envelope_optima(sample, n_grid)
                if found["params"].nunique() >= 2:
                    samples.append(_fit_allocation(found))
        self.settings["bootstrap_unit"] = "runs"
        level = self.settings["level"]
        self.params = _fit_allocation(optima)
        self.samples = samples
        self.intervals = (
            {
                key: percentile_interval(np.array([s[key] for s in samples]), level)
                for key in self.params
            }
            if samples
            else {}
        )
        self.n_points, self.points_digest, self.excluded = len(curves), "", []
        self.details = {"optima": optima.to_dict(orient="records")}
        return self


def _fit_allocation(optima: pd.DataFrame) -> dict[str, float]:
    """The power laws through the optima; weighted by 1/spread where the optima carry one
    (that of ln N*; D* and L* by their own where they carry them: ``optimum="akima"``)."""
    sigma = optima["log_spread"].to_numpy(float) if "log_spread" in optima else None

    def own(column):
        return optima[column].to_numpy(float) if column in optima else sigma

    k_N, a = fit_power_law(optima["budget"], optima["params"], sigma)
    k_D, b = fit_power_law(optima["budget"], optima["tokens"], own("log_spread_tokens"))
    k_L, c = fit_power_law(optima["budget"], optima["loss"], own("log_spread_loss"))
    return {"k_N": k_N, "a": a, "k_D": k_D, "b": b, "k_L": k_L, "c": c}


BUDGET_RESAMPLES = 200  # optimum="bootstrap": resamples of each budget's points


def _bootstrap_vertex(x: np.ndarray, loss: np.ndarray, seed: int) -> dict[str, Any] | None:
    """Porian et al.'s optimum of one budget: the median vertex of parabolas fitted to
    resamples of its points, and the spread (in log N) of those vertices. A vertex may lie
    beyond the sampled sizes by up to half their log-range (a budget whose minimum sits at an
    edge is kept, as they keep it); a resample without a minimum there is passed over."""
    rng = np.random.default_rng(seed)
    low, high = x.min(), x.max()
    margin = (high - low) / 2
    vertices, minima = [], []
    for _ in range(BUDGET_RESAMPLES):
        take = rng.integers(0, len(x), len(x))
        if len(np.unique(x[take])) < 3:
            continue
        c2, c1, c0 = np.polyfit(x[take], loss[take], 2)
        if c2 <= 0:
            continue
        vertex = -c1 / (2 * c2)
        if low - margin <= vertex <= high + margin:
            vertices.append(vertex)
            minima.append(c0 - c1 * c1 / (4 * c2))
    if len(vertices) < BUDGET_RESAMPLES / 2:
        return None
    vertices = np.array(vertices)
    return {
        "vertex": float(np.median(vertices)),
        "loss": float(np.median(minima)),
        # robust spread of the vertex; a floor keeps one tight budget from taking all weight
        "log_spread": float(max(np.subtract(*np.percentile(vertices, [75, 25])) / 1.349, 1e-3)),
    }


def _vertex(x: np.ndarray, loss: np.ndarray) -> tuple[float | None, float | None, str]:
    """Vertex (x*, loss*) of a parabola through (x, loss), or None and why not."""
    if len(x) < 3 or len(np.unique(x)) < 3:
        return None, None, f"{len(np.unique(x))} distinct sizes (a parabola needs 3)"
    if all_equal(loss):  # a parabola through equal losses curves up or down by round-off
        return None, None, "its losses are all equal (no minimum to find)"
    c2, c1, c0 = np.polyfit(x, loss, 2)
    if c2 <= 0:
        return None, None, "the profile has no minimum (parabola opens downwards)"
    vertex = -c1 / (2 * c2)
    if not x.min() <= vertex <= x.max():
        return None, None, "the minimum lies outside the sampled sizes"
    return float(vertex), float(c0 - c1 * c1 / (4 * c2)), ""


def isoflop_optima(
    frame: pd.DataFrame,
    optimum: str = "parabola",
    k: float = 6.0,
    parametric=None,
    seed_noise: float = SEED_NOISE,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per budget: the optimum (params, tokens, loss), or used=False and a reason.
    ``optimum="akima"``: ``akima.budget_optimum`` with ``seed_noise`` (its rows also hold the
    kept replicates, ``_stars``, which the law takes and leaves out of its fit file)."""
    rows = []
    for budget, group in frame.groupby("budget", sort=True):
        row: dict[str, Any] = {
            "budget": float(budget),
            "n_points": len(group),
            "used": False,
            "params": np.nan,
            "tokens": np.nan,
            "loss": np.nan,
            "reason": "",
        }
        if optimum == "akima":  # no parabola: the figure draws what the law fitted, or nothing
            found = budget_optimum(group, float(budget), k, seed_noise, seed)
            rows.append({**row, **found, "used": not found.get("reason")})
            continue
        x = np.log(group["params"].to_numpy())
        vertex, loss, reason = _vertex(x, group["loss"].to_numpy())
        if optimum == "bootstrap":
            found = (
                _bootstrap_vertex(x, group["loss"].to_numpy(), seed=int(np.log10(budget) * 1000))
                if len(np.unique(x)) >= 3 and not all_equal(group["loss"])
                else None
            )
            if found is None:
                reason = reason or "fewer than half the resamples have a minimum near the sizes"
                vertex = None
            else:
                vertex, loss, reason = found["vertex"], found["loss"], ""
                row["log_spread"] = found["log_spread"]
        if len(np.unique(x)) >= 3:  # what the profile figure draws: loss = c2·x² + c1·x + c0
            row["parabola"] = [float(c) for c in np.polyfit(x, group["loss"].to_numpy(), 2)]
            row["log_params_range"] = [float(x.min()), float(x.max())]
        if vertex is None:
            row["reason"] = reason
        elif optimum == "parametric":
            best = parametric.optimum(budget)
            row.update(used=True, params=best["params"], tokens=best["tokens"], loss=best["loss"])
        elif optimum == "bootstrap":
            params = float(np.exp(vertex))
            row.update(used=True, params=params, tokens=float(budget / (k * params)), loss=loss)
        else:
            y = np.log(group["tokens"].to_numpy())
            d_vertex, _, _ = _vertex(y, group["loss"].to_numpy())
            tokens = np.exp(d_vertex) if d_vertex is not None else budget / (k * np.exp(vertex))
            row.update(used=True, params=float(np.exp(vertex)), tokens=float(tokens), loss=loss)
        rows.append(row)
    return pd.DataFrame(rows)


def fit_isoflop(data, **settings: Any) -> IsoFLOPLaw:
    """``IsoFLOPLaw(**settings).fit(data)``: Approach 2."""
    return IsoFLOPLaw(**settings).fit(data)


def envelope_optima(curves: pd.DataFrame, n_grid: int = 20) -> pd.DataFrame:
    """At ``n_grid`` log-spaced FLOP values, the run of least loss among those whose curve
    reaches that compute: (budget, params, tokens, loss)."""
    runs = []
    for run_id, run in curves.groupby("run_id", sort=True):
        run = run.sort_values("flops")
        runs.append(
            (
                run_id,
                run["params"].iloc[0],
                np.log(run["flops"].to_numpy()),
                run["loss"].to_numpy(),
                run["tokens"].to_numpy(),
            )
        )
    low = min(r[2][0] for r in runs)
    high = max(r[2][-1] for r in runs)
    rows = []
    for log_c in np.linspace(low, high, n_grid):
        best = None
        for run_id, params, log_f, loss, tokens in runs:
            if log_f[0] <= log_c <= log_f[-1]:
                value = np.interp(log_c, log_f, loss)
                if best is None or value < best[0]:
                    best = (value, params, np.interp(log_c, log_f, tokens), run_id)
        if best is not None:
            rows.append(
                {
                    "budget": float(np.exp(log_c)),
                    "params": float(best[1]),
                    "tokens": float(best[2]),
                    "loss": float(best[0]),
                    "run_id": best[3],
                }
            )
    return pd.DataFrame(rows)


def fit_envelope(curves: pd.DataFrame, source: str = "curves", **settings: Any) -> EnvelopeLaw:
    """``EnvelopeLaw(**settings).fit(curves)``: Approach 1 from loss curves."""
    return EnvelopeLaw(**settings).fit(curves, source=source)
