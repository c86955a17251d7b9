"""Chinchilla Approach 1: the envelope of loss curves. At log-spaced FLOP values, the run of
least loss among those whose curve reaches that compute; power laws N_opt = k_N·C^a,
D_opt = k_D·C^b, L_opt = k_L·C^c through those (``fitting.isoflop.AllocationLaw``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import numpy as np

from scaling.fitting.base import Fit
from scaling.fitting.errors import FitError, require_varying
from scaling.fitting.isoflop import AllocationLaw, _fit_allocation
from scaling.fitting.points import as_curves

if TYPE_CHECKING:
    import pandas as pd


class EnvelopeLaw(AllocationLaw):
    """Approach 1 from loss curves (``fit`` takes ``points.Curves``, or the DataFrame of
    ``results.load_curves``: run_id, params, tokens, flops, loss per logged step). The
    bootstrap resamples whole runs (the curves' one unit).

    What the curves identify: losses that differ (where every loss is equal no run is better
    than another, and the winner would be an accident of order) and at least 2 model sizes
    winning somewhere; otherwise the fit is refused."""

    law = "envelope"

    def __init__(
        self,
        *,
        n_grid: Annotated[
            int, "Envelope: the log-spaced FLOP values it takes the best run at."
        ] = 20,
        bootstrap_unit: Annotated[
            str, "What a bootstrap resample draws: points, runs or budgets; curves by runs."
        ] = "runs",
        **common: Any,
    ):
        self.n_grid = n_grid
        super().__init__(bootstrap_unit=bootstrap_unit, **common)

    def _data(self, data):
        return as_curves(data)

    def _fit(self, curves) -> Fit:
        frame = curves.frame
        if frame["params"].nunique() < 2:
            raise FitError(f"{curves.source}: the envelope needs runs of at least 2 model sizes")
        require_varying(frame["loss"], curves.source, self.law)
        optima = envelope_optima(frame, int(self.n_grid))
        if optima["params"].nunique() < 2:
            raise FitError(
                f"{curves.source}: one model size wins at every compute; the envelope has no "
                "slope (train smaller and larger models)"
            )
        return Fit(_fit_allocation(optima), None, {"optima": optima.to_dict(orient="records")})

    def _refit(self, curves, found: Fit):
        optima = envelope_optima(curves.frame, int(self.n_grid))
        return _fit_allocation(optima) if optima["params"].nunique() >= 2 else None


def envelope_optima(curves: pd.DataFrame, n_grid: int = 20) -> pd.DataFrame:
    """At ``n_grid`` log-spaced FLOP values, the run of least loss among those whose curve
    reaches that compute: (budget, params, tokens, loss)."""
    import pandas as pd

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


def fit_envelope(curves: pd.DataFrame, source: str = "curves", **parameters: Any) -> EnvelopeLaw:
    """``EnvelopeLaw(**parameters).fit(curves)``: Approach 1 from loss curves."""
    return EnvelopeLaw(**parameters).fit(as_curves(curves, source))
