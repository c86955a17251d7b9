"""Chinchilla Approach 2 (IsoFLOP profiles) and what it shares with Approach 1 (the envelope,
``fitting.envelope``): compute-optimal (C, N_opt, D_opt) triples, and power laws
N_opt = k_N·C^a and D_opt = k_D·C^b through them (and the loss at the optimum,
L_opt = k_L·C^c, a local description that does not saturate: trust it only near the fitted
budgets).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from scaling.fitting.akima import SEED_NOISE, budget_optimum, check_seed_noise, replicate_intervals
from scaling.fitting.base import Fit, Law
from scaling.fitting.compute import Compute
from scaling.fitting.errors import FitError, all_equal, finite_number, one_of
from scaling.fitting.objectives import parabola, parabola_vertex
from scaling.fitting.parametric import ParametricLaw
from scaling.fitting.powerlaw import evaluate, fit_power_law, invert

if TYPE_CHECKING:
    import pandas as pd


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
        return {"a": self.params_["a"], "b": self.params_["b"]} if self.params_ else {}

    def compute_for(self, sample=None, params=None, tokens=None) -> float:
        p = sample or self.params_
        if params is not None:
            return float(invert(p["k_N"], p["a"], params))
        return float(invert(p["k_D"], p["b"], tokens))

    def optimum(self, compute: float, sample: dict[str, float] | None = None) -> dict[str, float]:
        p = sample or self.params_
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
        import pandas as pd

        rows = self.details_.get("budgets") or self.details_.get("optima") or []
        frame = pd.DataFrame(rows)
        if "used" not in frame:
            frame["used"] = True
        return frame


OPTIMA = ("parabola", "parametric", "bootstrap", "akima")


class IsoFLOPLaw(AllocationLaw):
    """Approach 2. Per budget, a parabola of loss in log N (and in log D); its vertex is the
    optimum. A budget with fewer than 3 sizes, no minimum, or a vertex outside its sampled
    range is left out with the reason. ``budget_optimum="parametric"`` takes each kept
    budget's optimum from an Approach 3 fit instead (no parabola bias under asymmetric
    sampling); ``budget_optimum="bootstrap"`` estimates it as Porian et al. (2024) do: the
    median vertex over resamples of the budget's points, its spread weighting the power-law
    fit, and budgets whose minimum lies at the edge kept; ``budget_optimum="akima"`` is Porian
    et al.'s estimator as their code computes it (``scaling.fitting.akima``: an Akima
    interpolation's argmin on a dense grid, its median over replicates with ``seed_noise``
    added to the losses, budgets whose minimum lies at an edge left out, the power laws
    weighted by the spreads). Where the profile in D has no vertex, the tokens follow from the
    vertex in N as the points counted compute (``compute_``).

    What the points identify: a budget's optimum needs 3 or more distinct sizes whose losses
    differ (through equal losses a parabola curves up or down by round-off alone, so such a
    budget is left out with its reason), and the power laws need optima at 2 or more budgets;
    with fewer the fit is refused."""

    law = "isoflop"

    def __init__(
        self,
        *,
        budget_optimum: Annotated[
            str,
            "IsoFLOP optimum: parabola, parametric, bootstrap (parabola vertices over "
            "resamples) or akima (Porian et al.'s estimator as their code computes it).",
        ] = "parabola",
        seed_noise: Annotated[
            float,
            "optimum=akima: the standard deviation of the noise added to each loss in its 1000 "
            "replicates; 0.002, what Porian et al.'s code adds for RefinedWeb (0.01 for "
            "OpenWebText2): a constant per dataset, not estimated from the points.",
        ] = SEED_NOISE,
        **common: Any,
    ):
        self.budget_optimum = budget_optimum  # not ``optimum``: that is the question it answers
        self.seed_noise = seed_noise
        super().__init__(**common)

    def _check(self) -> None:
        super()._check()
        one_of("budget_optimum", self.budget_optimum, OPTIMA)
        check_seed_noise(self.seed_noise, self.budget_optimum)

    def _fit(self, points) -> Fit:
        frame = points.frame
        n_budgets = frame["budget"].nunique()
        if n_budgets < 2:
            raise FitError(
                f"{points.source}: an IsoFLOP fit needs at least 2 budgets; the points "
                f"form {n_budgets} (give a budget column, or a wider budget_tolerance)"
            )
        # optimum="parametric": one Approach 3 fit, asked for every budget's optimum in the
        # fit and in its bootstrap resamples alike (it is not refitted per resample)
        parametric = ParametricLaw().fit(points) if self.budget_optimum == "parametric" else None
        optima = self._optima(points, parametric)
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
            details["seed_noise_intervals"] = replicate_intervals(used, self.level)
            optima = optima.drop(columns="_stars")
        budgets = optima.to_dict(orient="records")
        return Fit(_fit_allocation(used), None, {"budgets": budgets, **details}, parametric)

    def _optima(self, points, parametric) -> pd.DataFrame:
        return isoflop_optima(
            points.frame,
            self.budget_optimum,
            points.compute,
            parametric,
            self.seed_noise,
            self.seed,
        )

    def _refit(self, points, found: Fit):
        kept = self._optima(points, found.warm)
        kept = kept[kept["used"]]
        return _fit_allocation(kept) if len(kept) >= 2 else None


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
        vertex, minimum, _ = parabola_vertex(x[take], loss[take], (low - margin, high + margin))
        if vertex is not None:
            vertices.append(vertex)
            minima.append(minimum)
    if len(vertices) < BUDGET_RESAMPLES / 2:
        return None
    vertices = np.array(vertices)
    return {
        "vertex": float(np.median(vertices)),
        "loss": float(np.median(minima)),
        # robust spread of the vertex; a floor keeps one tight budget from taking all weight
        "log_spread": float(max(np.subtract(*np.percentile(vertices, [75, 25])) / 1.349, 1e-3)),
    }


def isoflop_optima(
    frame: pd.DataFrame,
    optimum: str = "parabola",
    compute: Compute | None = None,
    parametric: ParametricLaw | None = None,
    seed_noise: float = SEED_NOISE,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per budget: the optimum (params, tokens, loss), or used=False and a reason.
    ``compute``: how the points counted compute (the tokens of a vertex in N where the
    profile in D gives none; default C = 6·N·D). ``optimum="akima"``:
    ``akima.budget_optimum`` with ``seed_noise`` (its rows also hold the kept replicates,
    ``_stars``, which the law takes and leaves out of its fit file)."""
    import pandas as pd

    compute = compute or Compute()
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
            found = budget_optimum(group, float(budget), compute, seed_noise, seed)
            rows.append({**row, **found, "used": not found.get("reason")})
            continue
        x = np.log(group["params"].to_numpy())
        vertex, loss, reason = parabola_vertex(x, group["loss"].to_numpy())
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
            row["parabola"] = list(parabola(x, group["loss"].to_numpy()))
            row["log_params_range"] = [float(x.min()), float(x.max())]
        if vertex is None:
            row["reason"] = reason
        elif optimum == "parametric":
            best = parametric.optimum(budget)
            row.update(used=True, params=best["params"], tokens=best["tokens"], loss=best["loss"])
        elif optimum == "bootstrap":
            params = float(np.exp(vertex))
            tokens = float(compute.tokens(budget, params))
            row.update(used=True, params=params, tokens=tokens, loss=loss)
        else:
            y = np.log(group["tokens"].to_numpy())
            d_vertex, _, _ = parabola_vertex(y, group["loss"].to_numpy())
            tokens = (
                np.exp(d_vertex) if d_vertex is not None else compute.tokens(budget, np.exp(vertex))
            )
            row.update(used=True, params=float(np.exp(vertex)), tokens=float(tokens), loss=loss)
        rows.append(row)
    return pd.DataFrame(rows)


def fit_isoflop(data, **parameters: Any) -> IsoFLOPLaw:
    """``IsoFLOPLaw(**parameters).fit(data)``: Approach 2."""
    return IsoFLOPLaw(**parameters).fit(data)
