"""The bundled Chinchilla points are Epoch AI's, recomputed here from the figure's raw
measurements: every summary Epoch AI's notebooks print for their 245 points is matched."""

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from scaling import published
from scaling.fitting import FitError, ParametricLaw, prepare_points
from scaling.published import chinchilla

# pandas summaries printed by Epoch AI's notebooks (data_analysis.ipynb for their published
# points, data_extraction.ipynb for the corrected axis), commit 4c97be9
EPOCH = {
    "params": (2464560600.107564, 57334197.40687078, 16183346310.7305),
    "tokens": (38025506115.73361, 245105957.9245427, 317754489343.9688),
    "flops": (1.0849637947784773e21, 1.3972367362937152e18, 1.2956022673438285e22),
    "loss": (0.36438696455830627, 2.0773942450664395, 5.005581996196243),
}
EPOCH_CORRECTED_PARAMS = (2530255565.444171, 62750890.182418734, 16543768462.677355)
EPOCH_FIT = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def _summary(values: pd.Series) -> tuple[float, float, float]:
    return values.std(), values.min(), values.max()  # pandas' std: ddof 1, as printed


def test_the_points_are_epoch_ais_to_twelve_digits():
    points = published.load("chinchilla")
    assert len(points) == 245
    for column, expected in EPOCH.items():
        np.testing.assert_allclose(_summary(points[column]), expected, rtol=1e-12, err_msg=column)
    assert points["params"].nunique() == 142 and points["loss"].nunique() == 99
    # the first and last rows of their table
    np.testing.assert_allclose(
        points.iloc[[0, -1]][["params", "flops", "loss"]].to_numpy(),
        [[6.795600e09, 9.993853e18, 5.005582], [6.795615e09, 1.295602e22, 2.077394]],
        rtol=1e-6,
    )


def test_the_corrected_axis_changes_the_sizes_only():
    epoch, corrected = published.load("chinchilla"), published.load("builtin:chinchilla-corrected")
    np.testing.assert_allclose(_summary(corrected["params"]), EPOCH_CORRECTED_PARAMS, rtol=1e-12)
    pd.testing.assert_series_equal(epoch["flops"], corrected["flops"])
    pd.testing.assert_series_equal(epoch["loss"], corrected["loss"])
    ratio = corrected["params"] / epoch["params"]
    assert 1.02 < ratio.min() and ratio.max() < 1.095  # larger, and more so for small models
    assert np.corrcoef(np.log(epoch["params"]), ratio)[0, 1] < -0.99


def test_the_colour_bar_file_is_the_image_in_the_figure():
    record = json.loads((chinchilla.HERE / chinchilla.PROVENANCE).read_text())
    image = Image.open(io.BytesIO(base64.b64decode(record["colorbar_png_base64"])))
    assert image.size == (17, 342)
    bar = pd.read_csv(chinchilla.HERE / chinchilla.COLORBAR)
    middle = ["#{:02x}{:02x}{:02x}".format(*image.getpixel((8, row))[:3]) for row in range(342)]
    assert bar["fill"].tolist() == middle and bar["pixel_row"].tolist() == list(range(342))


def test_every_marker_colour_is_on_the_bar_and_the_axes_meet_their_ticks():
    markers = pd.read_csv(chinchilla.HERE / chinchilla.MARKERS)
    assert markers["marker"].tolist() == list(range(62, 307))
    assert set(markers["fill"]) <= set(pd.read_csv(chinchilla.HERE / chinchilla.COLORBAR)["fill"])
    # the ticks not used to calibrate lie on the axes: 1e19 and 1e20 FLOPs, 40B (corrected)
    np.testing.assert_allclose(
        chinchilla.log_axis([154.055, 224.254], chinchilla.FLOPS_AXIS), [1e19, 1e20], rtol=1e-4
    )
    corrected = chinchilla.PARAMS_AXES["corrected"]
    np.testing.assert_allclose(chinchilla.log_axis(66.113, corrected), 40e9, rtol=1e-4)
    assert abs(chinchilla.log_axis(66.113, chinchilla.PARAMS_AXES["epoch-2024"]) / 40e9 - 1) > 0.01


def test_approach_3_on_the_240_points_lands_near_epoch_ais_published_fit():
    points = prepare_points(published.load("chinchilla"), drop_highest=5)
    law = ParametricLaw().fit(points)
    got = law.params_
    assert law.n_points_ == 240
    assert abs(got["E"] - EPOCH_FIT["E"]) < 1e-3
    for name in ("alpha", "beta"):
        assert abs(got[name] - EPOCH_FIT[name]) < 2e-3, name
    a = got["beta"] / (got["alpha"] + got["beta"])
    assert abs(a - 0.5126) < 2e-3
    assert abs(got["A"] / EPOCH_FIT["A"] - 1) < 0.02 and abs(got["B"] / EPOCH_FIT["B"] - 1) < 0.05


def test_an_unknown_name_is_one_line():
    with pytest.raises(FitError, match="builtin:llama4: no such published dataset; bundled: "):
        published.load("builtin:llama4")
