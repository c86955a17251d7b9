"""Scaling-law fits. Every law is an estimator (parameters in its constructor's signature,
``fit(points)``, fitted attributes ending in ``_``, the questions ``loss``, ``optimum``,
``hyperparameters`` as methods, ``to_json`` / ``Law.from_json``); importing this package
registers all of them, so any fit file loads in a fresh process. No torch here."""

from scaling.fitting.base import LAWS, Law
from scaling.fitting.compute import Compute
from scaling.fitting.curvelaws import CurveLaw
from scaling.fitting.curves import LrCurves
from scaling.fitting.data_constrained import DataConstrainedLaw, fit_data_constrained
from scaling.fitting.downstream import DownstreamLaw, fit_downstream
from scaling.fitting.envelope import EnvelopeLaw, fit_envelope
from scaling.fitting.errors import FitError
from scaling.fitting.hparams import HparamsLaw, fit_hparams
from scaling.fitting.isoflop import IsoFLOPLaw, fit_isoflop
from scaling.fitting.kaplan import KaplanLaw, fit_kaplan
from scaling.fitting.lr_annealing import LRAnnealingLaw
from scaling.fitting.moe import MoELaw, fit_moe
from scaling.fitting.multipower import MultiPowerLaw
from scaling.fitting.parametric import ParametricLaw, fit_parametric
from scaling.fitting.points import Curves, Points, as_points, prepare_points, read_table
from scaling.fitting.predicted import predicted_points

__all__ = [
    "LAWS",
    "Compute",
    "CurveLaw",
    "Curves",
    "LRAnnealingLaw",
    "LrCurves",
    "MultiPowerLaw",
    "DataConstrainedLaw",
    "DownstreamLaw",
    "EnvelopeLaw",
    "FitError",
    "HparamsLaw",
    "IsoFLOPLaw",
    "KaplanLaw",
    "Law",
    "MoELaw",
    "ParametricLaw",
    "Points",
    "as_points",
    "fit_data_constrained",
    "fit_downstream",
    "fit_envelope",
    "fit_hparams",
    "fit_isoflop",
    "fit_kaplan",
    "fit_moe",
    "fit_parametric",
    "predicted_points",
    "prepare_points",
    "read_table",
]
