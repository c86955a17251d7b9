"""Scaling-law fits: each ``fit_*`` returns a ``Law`` with parameters, intervals,
``predict`` and a faithful ``to_json`` / ``Law.from_json``. No torch here."""

from scaling.fitting.base import FitError, Law
from scaling.fitting.parametric import ParametricLaw, fit_parametric
from scaling.fitting.points import Points, prepare_points, read_table

__all__ = [
    "FitError",
    "Law",
    "ParametricLaw",
    "Points",
    "fit_parametric",
    "prepare_points",
    "read_table",
]
