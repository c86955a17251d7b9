"""What every fitted law shares: parameters, intervals, provenance, JSON round trip.

A law is a plain object. ``fit_*`` functions build one from points; ``predict`` answers
questions about budgets nobody trained; ``to_json`` writes everything needed to rebuild the
same object (bootstrap samples included, so predictions keep their intervals after loading).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from scaling.config import ConfigError
from scaling.fileio import write_atomic

LAWS: dict[str, type[Law]] = {}


class FitError(ConfigError):
    """A fit that cannot be made from these points: one line saying which and why."""


def toolkit_version() -> str:
    from scaling import __version__

    return __version__


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


MIN_BOOTSTRAP_FITTED = 0.5  # the fraction of resamples that must fit for intervals to mean much


@dataclass
class Law:
    """Base of every fitted law; subclasses set ``law`` and ``formula`` and add methods."""

    law: ClassVar[str] = ""
    formula: ClassVar[str] = ""

    params: dict[str, float]
    intervals: dict[str, list[float]] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)  # bootstrap refits
    n_points: int = 0
    points_digest: str = ""
    excluded: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    objective: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # law-specific (per-budget optima, ...)
    version: str = field(default_factory=toolkit_version)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.law:
            LAWS[cls.law] = cls

    @classmethod
    def fitted(
        cls,
        points,
        params: dict[str, float],
        bootstrapped: tuple[list, dict],
        options: dict[str, Any],
        **fields: Any,
    ) -> Law:
        """A law fitted on ``points`` (a ``Points``), with its bootstrap (samples, intervals).
        Where fewer than half the resamples could be fitted, the survivors are not a sample of
        the law's uncertainty: the law then has no intervals, and ``details`` says why."""
        samples, intervals = bootstrapped
        requested = options.get("bootstrap", 0)
        if requested and len(samples) < MIN_BOOTSTRAP_FITTED * requested:
            fields["details"] = {
                **fields.get("details", {}),
                "bootstrap": f"only {len(samples)} of {requested} resamples could be fitted; "
                "no intervals (more points per budget would give them)",
            }
            samples, intervals = [], {}
        return cls(
            params=params,
            intervals=intervals,
            samples=samples,
            n_points=len(points),
            points_digest=points.digest,
            excluded=points.excluded,
            options=options,
            **fields,
        )

    # -- allocation ------------------------------------------------------------------------
    def allocation_exponents(self) -> dict[str, float]:
        """``a`` and ``b`` of N_opt ∝ C^a and D_opt ∝ C^b where the law implies them."""
        return {}

    def predict(
        self, compute: float | None = None, params: float | None = None, tokens: float | None = None
    ) -> dict[str, Any]:
        raise FitError(f"the {self.law} law makes no prediction of this kind")

    def _with_intervals(self, point: dict[str, float], fn, level: float = 0.95) -> dict[str, Any]:
        """``point`` plus percentile intervals of ``fn(sample_params)`` over the bootstrap."""
        out: dict[str, Any] = {key: float(value) for key, value in point.items()}
        if self.samples:
            draws = [fn(sample) for sample in self.samples]
            out["intervals"] = {
                key: percentile_interval(np.array([d[key] for d in draws], dtype=float), level)
                for key in point
            }
        return out

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "formula": self.formula,
            "params": self.params,
            "intervals": self.intervals,
            **self.allocation_exponents(),
            "n_points": self.n_points,
            "points_digest": self.points_digest,
            "excluded": self.excluded,
            "options": self.options,
            "objective": self.objective,
            "details": self.details,
            "samples": self.samples,
            "version": self.version,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(_jsonable(self.to_dict()), indent=2) + "\n"
        if path is not None:
            write_atomic(path, text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Law:
        law_cls = LAWS.get(data.get("law", ""))
        if law_cls is None:
            raise FitError(f"unknown law {data.get('law')!r}; known: {', '.join(sorted(LAWS))}")
        return law_cls(
            params=data["params"],
            intervals=data.get("intervals", {}),
            samples=data.get("samples", []),
            n_points=data.get("n_points", 0),
            points_digest=data.get("points_digest", ""),
            excluded=data.get("excluded", []),
            options=data.get("options", {}),
            objective=data.get("objective"),
            details=data.get("details", {}),
            version=data.get("version", ""),
        )

    @classmethod
    def from_json(cls, source: str | Path) -> Law:
        """A law from a fit file (path) or from the JSON text itself."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            path = Path(source)
            if not path.is_file():
                raise FitError(f"{path}: no such fit file")
            text = path.read_text()
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise FitError(f"{source}: not a fit file ({err})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if np.isfinite(value) else None
    return value
