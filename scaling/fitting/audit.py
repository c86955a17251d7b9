"""How much a fit's answer moves with the choices a fit makes (``scaling fit --audit``).

A bootstrap interval says how much the answer moves when the points are redrawn; it says
nothing of the analyst's choices, which (Mis)Fitting (Li et al., ICLR 2025) and others show
can move the exponents further: the loss function and its Huber δ, the outliers dropped, the
budgets kept, the starts of the optimiser, and Approach 2 against Approach 3. The audit refits
Approach 3 (``ParametricLaw``, with the user's other parameters) under each such choice and
reports, for each, the allocation exponents a, b and the compute-optimal N, D and loss at a
target compute, then the spread of those answers beside the bootstrap intervals (by points,
runs and budgets), and a verdict when the spread is wider than the interval.

Choices that change the objective refit from the full multistart grid (the landscape moves);
choices that drop points refit from the reference optimum, as a bootstrap refit does (leave
one budget out is a resample).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scaling.fitting import chinchilla
from scaling.fitting.base import Fit
from scaling.fitting.errors import FitError
from scaling.fitting.isoflop import IsoFLOPLaw
from scaling.fitting.parametric import ParametricLaw
from scaling.fitting.points import Points

OBJECTIVES = (("huber", 1e-4), ("huber", 1e-2), ("l2", None), ("l1", None))
DROPPED = (0.01, 0.05)  # the fractions of points with the largest residuals left out
STARTS = (8, 256)  # the best starts L-BFGS runs from, against the default's 64
UNITS = ("points", "runs", "budgets")
ANSWERS = ("a", "b", "params", "tokens", "loss")


@dataclass
class Choice:
    """One refit: what was chosen, and the answers it gives (NaN where it gave none)."""

    choice: str
    kind: str  # reference | objective | outliers | budgets | starts | approach
    a: float = math.nan
    b: float = math.nan
    params: float = math.nan
    tokens: float = math.nan
    loss: float = math.nan
    n_points: int = 0
    note: str = ""


@dataclass
class Audit:
    compute: float
    choices: list[Choice]
    intervals: dict[str, dict[str, list[float]]]  # unit -> answer -> [low, high]
    level: float
    notes: dict[str, str] = field(default_factory=dict)  # unit -> why no interval

    def spread(self) -> dict[str, list[float]]:
        """Per answer, the least and the greatest over the choices that gave one."""
        out = {}
        for key in ANSWERS:
            values = [getattr(c, key) for c in self.choices if np.isfinite(getattr(c, key))]
            out[key] = [min(values), max(values)] if values else [math.nan, math.nan]
        return out

    def verdicts(self) -> list[str]:
        """Where the choices move an answer further than the points' bootstrap interval."""
        spread, found = self.spread(), []
        interval = self.intervals.get("points", {})
        for key, label in (("a", "a"), ("params", "N_opt")):
            if key not in interval:
                continue
            low, high = interval[key]
            width = _width(key, low, high)
            moved = _width(key, *spread[key])
            if moved > width:
                found.append(
                    f"the choices move {label} by {_shown(key, moved)}, more than the "
                    f"{self.level:.0%} bootstrap interval's width ({_shown(key, width)}): "
                    "the interval understates how uncertain it is"
                )
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "compute": self.compute,
            "level": self.level,
            "choices": [asdict(c) for c in self.choices],
            "spread": self.spread(),
            "bootstrap_intervals": self.intervals,
            "bootstrap_notes": self.notes,
            "verdicts": self.verdicts(),
        }


def _width(key: str, low: float, high: float) -> float:
    """An interval's width: in log10 for N_opt and D_opt (they span decades), else plain."""
    if key in ("params", "tokens"):
        return math.log10(high / low)
    return high - low


def _shown(key: str, width: float) -> str:
    return f"a factor of {10**width:.2f}" if key in ("params", "tokens") else f"{width:.3f}"


def audit(
    points: Points,
    compute: float,
    bootstrap_samples: int = 100,
    seed: int = 0,
    level: float = 0.95,
    **parameters: Any,
) -> Audit:
    """Refit Approach 3 on ``points`` under each choice and answer at ``compute``.
    ``parameters``: the ParametricLaw's other parameters (pins, bounds), kept in every refit."""
    if not (math.isfinite(compute) and compute > 0):
        raise FitError("must be a positive number of FLOPs", param="compute", value=compute)
    for name in ("objective", "delta", "keep", "starts", "bootstrap_samples", "bootstrap_unit"):
        parameters.pop(name, None)
    reference = ParametricLaw(**parameters).fit(points)
    how = "variable projection" if reference.solver == "varpro" else "best 64 starts"
    name = f"reference (Huber δ 1e-3, {how})"
    choices = [_answer(name, "reference", reference.params_, points, compute)]
    for objective, delta in OBJECTIVES:
        name = f"Huber δ {delta:g}" if delta else objective.upper()
        extra = {"delta": delta} if delta else {}
        law = {"objective": objective, **extra, **parameters}
        choices.append(_multistart(name, "objective", points, compute, law))
    for keep in STARTS:
        law = {**parameters, "keep": keep, "solver": "multistart"}  # the multistart's starts
        choices.append(_multistart(f"best {keep} starts", "starts", points, compute, law))
    residuals = np.abs(
        np.log(reference.loss(points.column("params"), points.column("tokens")))
        - np.log(points.column("loss"))
    )
    for fraction in DROPPED:
        k = max(1, math.ceil(fraction * len(points)))
        kept = np.argsort(residuals)[: len(points) - k]
        subset = points.subset(points.frame.iloc[np.sort(kept)])
        name = f"drop the {k} worst points ({fraction:.0%})"
        choices.append(_warm(name, "outliers", reference, subset, compute))
    if "budget" in points.frame:
        for budget in sorted(points.frame["budget"].dropna().unique()):
            subset = points.subset(points.frame[points.frame["budget"] != budget])
            name = f"without budget {budget:.3g}"
            choices.append(_warm(name, "budgets", reference, subset, compute))
    choices.append(_approach_2(points, compute))

    intervals, notes = {}, {}
    for unit in UNITS:
        try:
            law = ParametricLaw(
                **parameters,
                bootstrap_samples=bootstrap_samples,
                bootstrap_unit=unit,
                seed=seed,
                level=level,
            ).fit(points)
        except FitError as err:
            notes[unit] = str(err)
            continue
        if not law.samples_:
            notes[unit] = law.details_.get("bootstrap", "no bootstrap samples")
            continue
        intervals[unit] = _intervals(law, compute, level)
    return Audit(compute, choices, intervals, level, notes)


def _multistart(
    name: str, kind: str, points: Points, compute: float, parameters: dict[str, Any]
) -> Choice:
    try:
        law = ParametricLaw(**parameters).fit(points)
    except FitError as err:
        return Choice(name, kind, n_points=len(points), note=str(err))
    return _answer(name, kind, law.params_, points, compute)


def _warm(name: str, kind: str, reference: ParametricLaw, subset: Points, compute: float) -> Choice:
    free = reference.problem(subset.frame).free
    found = Fit(reference.params_, warm=chinchilla.internal(reference.params_)[free])
    params = reference._refit(subset, found)
    if params is None:
        return Choice(name, kind, n_points=len(subset), note="no fit on these points")
    return _answer(name, kind, params, subset, compute)


def _answer(
    name: str, kind: str, params: dict[str, float], points: Points, compute: float
) -> Choice:
    """The allocation exponents and the optimum at ``compute``, spent as the points count it."""
    derived = chinchilla.allocation(params)
    N, D = chinchilla.optimum(params, compute, points.compute)
    loss = float(chinchilla.loss(params, N, D))
    return Choice(name, kind, derived["a"], derived["b"], N, D, loss, len(points))


def _approach_2(points: Points, compute: float) -> Choice:
    name = "Approach 2 (parabolas)"
    try:
        law = IsoFLOPLaw().fit(points)
    except FitError as err:
        return Choice(name, "approach", n_points=len(points), note=str(err))
    derived = law.allocation_exponents()
    optimum = law.optimum(compute)
    return Choice(
        name,
        "approach",
        a=derived["a"],
        b=derived["b"],
        params=optimum["params"],
        tokens=optimum["tokens"],
        loss=optimum.get("loss", math.nan),
        n_points=law.n_points_,
    )


def _intervals(law: ParametricLaw, compute: float, level: float) -> dict[str, list[float]]:
    derived = law.allocation_exponents()["derived_intervals"]
    predicted = law.predict(compute=compute)["intervals"]
    return {
        "a": derived["a"],
        "b": derived["b"],
        **{key: predicted[key] for key in ("params", "tokens", "loss")},
    }
