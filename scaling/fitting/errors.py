"""The ground of the fitting package: its error (``scaling.errors.FitError``) and the checks of
its inputs. Imports nothing of the project but ``scaling.errors``, so every module of the
package can raise and check without importing a law."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from scaling.errors import FitError

__all__ = ["FitError", "all_equal", "coverage", "finite_number", "one_of", "positive"]


# Values this close (relative to their size) are equal but for round-off: a fit through them
# finds round-off, not a law (a parabola "through" equal losses opens up or down by chance).
ROUND_OFF = 1e-9


def all_equal(values: ArrayLike) -> bool:
    """Whether ``values`` are the same number but for round-off (``ROUND_OFF``)."""
    values = np.asarray(values, dtype=float)
    return bool(np.ptp(values) <= ROUND_OFF * np.max(np.abs(values))) if values.size else True


def require_varying(values: ArrayLike, source: str, law: str, what: str = "losses") -> None:
    """A FitError unless ``values`` differ beyond round-off: equal losses carry no trend, and
    every law fitted through them would report round-off as a fit."""
    if all_equal(values):
        raise FitError(
            f"{source}: all {len(values)} {what} are equal ({float(np.asarray(values)[0]):.6g}), "
            f"so they cannot identify the {law} law's parameters: it needs {what} that differ"
        )


def finite_number(value: Any) -> bool:
    """Whether ``value`` read from JSON is a finite number (true and false are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive(name: str, value: float | None) -> float | None:
    """``value`` checked to be a positive finite number (None passes through)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FitError("must be a positive number", param=name, value=value) from None
    if not math.isfinite(number) or number <= 0:
        raise FitError("must be a positive finite number", param=name, value=value)
    return number


def one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """A FitError naming ``name`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise FitError(f"must be one of {', '.join(allowed)}", param=name, value=value)


def coverage(value: Any, name: str = "level") -> float:
    """An interval's coverage, checked to lie in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise FitError("the interval's coverage, in (0, 1), e.g. 0.8", param=name, value=value)
    return float(value)
