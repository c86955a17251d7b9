"""The bundled Llama 3 points, recomputed from the figure's raw readings, against Eric Czech's
published digitisation; Approach 2 on them against the paper's fit."""

import numpy as np
import pandas as pd

from scaling import published
from scaling.fitting import prepare_points
from scaling.fitting.isoflop import IsoFLOPLaw
from scaling.published import llama3
from scaling.published.axes import linear_axis, log_axis

# Summaries of isoflops_points.csv, github.com/eric-czech/llama3_isoflop_extraction at commit
# 7ec1fb7ddfbf5fb6363879eb895ae872a4bb9952 (no licence: the file itself is not bundled).
# Points per budget, and (mean, standard deviation with ddof 1, minimum, maximum).
DIGITISED_COUNTS = {
    6e18: 16, 1e19: 17, 3e19: 16, 6e19: 16, 1e20: 18,
    3e20: 14, 6e20: 12, 1e21: 12, 3e21: 6, 1e22: 6,
}  # fmt: skip
DIGITISED = {
    "tokens": (40909049068.27767, 101028335906.80481, 1476196592.19, 1034815724400.0),
    "loss": (0.8118932833237593, 0.0634501487866012, 0.693574883903, 0.932185685945),
}
# two of its rows: compute_budget, training_tokens, validation_loss, x_page, y_page
DIGITISED_ROWS = [
    (6e18, 1579500858.99, 0.919843406813, 74.493473, 42.033154),
    (1e22, 1.0348157244e12, 0.71905374281, 416.877081, 238.697155),
]
# its calibration: the first two ticks of each axis
DIGITISER_TOKENS_AXIS = ((171.92963222223, 1e10), (293.49990594522603, 1e11))
DIGITISER_LOSS_AXIS = ((257.35939697200104, 0.70), (208.38675637907602, 0.75))
# Dubey et al. (2024), Section 3.2.1: compute-optimal tokens N*(C) = A C^alpha
PAPER = {"b": 0.537, "k_D": 0.299}


def _summary(values: pd.Series) -> tuple[float, float, float, float]:
    return values.mean(), values.std(), values.min(), values.max()


def test_with_the_digitisers_calibration_the_readings_are_his_points_to_12_digits():
    points = published.load("llama3")
    assert len(points) == 133
    assert points["budget"].value_counts().sort_index().to_dict() == DIGITISED_COUNTS
    theirs = llama3.figure2_points(DIGITISER_TOKENS_AXIS, DIGITISER_LOSS_AXIS)
    for column, expected in DIGITISED.items():
        np.testing.assert_allclose(_summary(theirs[column]), expected, rtol=1e-11, err_msg=column)
    markers = pd.read_csv(llama3.HERE / llama3.MARKERS)
    for budget, tokens, loss, x, y in DIGITISED_ROWS:
        row = markers[(markers["svg_x"] - x).abs().lt(1e-6) & (markers["svg_y"] - y).abs().lt(1e-6)]
        assert len(row) == 1
        found = theirs.loc[row.index[0]]
        assert found["budget"] == budget
        np.testing.assert_allclose([found["tokens"], found["loss"]], [tokens, loss], rtol=1e-11)


def test_through_the_outermost_ticks_the_points_move_by_at_most_4e_6_in_loss():
    ours = published.load("llama3")
    theirs = llama3.figure2_points(DIGITISER_TOKENS_AXIS, DIGITISER_LOSS_AXIS)
    assert np.abs(ours["tokens"] / theirs["tokens"] - 1).max() < 2e-8
    assert np.abs(ours["loss"] - theirs["loss"]).max() < 4e-6
    # what the laws need: N = C / 6D, the budget as the legend labels it
    np.testing.assert_allclose(ours["params"] * ours["tokens"] * 6, ours["flops"], rtol=1e-12)
    assert (ours["flops"] == ours["budget"]).all()


def test_every_tick_lies_on_its_axis_and_every_colour_is_in_the_legend():
    for value, x in llama3.tokens_ticks().items():
        assert abs(log_axis(x, llama3.TOKENS_AXIS) / value - 1) < 1e-8
    for value, y in llama3.loss_ticks().items():
        assert abs(linear_axis(y, llama3.LOSS_AXIS) - value) < 2e-6
    markers = pd.read_csv(llama3.HERE / llama3.MARKERS)
    assert markers["marker"].tolist() == list(range(133))
    assert set(markers["fill"]) == set(llama3.budgets().index)
    legend = pd.read_csv(llama3.HERE / llama3.LEGEND, dtype={"label": str})
    assert legend["label"].tolist() == [
        "6e18", "1e19", "3e19", "6e19", "1e20", "3e20", "6e20", "1e21", "3e21", "1e22",
    ]  # fmt: skip
    assert legend["svg_y"].is_monotonic_increasing  # read top to bottom


def test_approach_2_finds_the_papers_diamonds_and_its_power_law():
    law = IsoFLOPLaw().fit(prepare_points(published.load("llama3"), source="builtin:llama3"))
    optima = law.budget_optima()
    assert optima["used"].all() and len(optima) == 10
    drawn = llama3.figure2_optima()
    assert drawn["tokens"].is_monotonic_increasing  # diamond order = budget order
    np.testing.assert_allclose(optima["budget"], drawn["budget"])
    np.testing.assert_allclose(optima["tokens"], drawn["tokens"], rtol=1e-7)
    np.testing.assert_allclose(optima["loss"], drawn["loss"], atol=1e-8)
    assert abs(law.params_["b"] - PAPER["b"]) < 5e-4  # 0.5368
    assert abs(law.params_["k_D"] - PAPER["k_D"]) < 5e-4  # 0.2994
    assert abs(law.params_["a"] + law.params_["b"] - 1) < 1e-9  # N = C/6D
