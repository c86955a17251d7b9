import numpy as np
import pandas as pd
import pytest

from scaling.fitting import FitError, prepare_points
from scaling.fitting.points import group_budgets


def test_third_column_is_derived_from_any_two():
    base = pd.DataFrame({"params": [1e8, 2e8], "tokens": [2e9, 1e9], "loss": [3.0, 3.1]})
    points = prepare_points(base)
    np.testing.assert_allclose(points.frame["flops"], 6 * 1e8 * 2e9)
    from_flops = prepare_points(pd.DataFrame({"params": [1e8], "flops": [1.2e18], "loss": [3.0]}))
    assert from_flops.frame["tokens"].iloc[0] == pytest.approx(2e9)
    k8 = prepare_points(base.drop(columns="tokens").assign(flops=1.6e18), flops_per_param_token=8)
    assert k8.frame["tokens"].iloc[0] == pytest.approx(2e9)


def test_renamed_columns():
    df = pd.DataFrame({"N": [1e8], "D": [2e9], "L": [3.0]})
    points = prepare_points(df, {"params": "N", "tokens": "D", "loss": "L"})
    assert points.frame["params"].iloc[0] == 1e8
    with pytest.raises(FitError, match="no column 'size'"):
        prepare_points(df, {"params": "size"})


def test_budgets_grouped_by_log_flops():
    flops = np.array([1e18, 1.05e18, 0.97e18, 1e19, 1.02e19, 1e20])
    budgets = group_budgets(flops, tolerance=0.05)
    assert len(np.unique(budgets)) == 3
    assert budgets[0] == budgets[1] == budgets[2]


def test_exclusions_are_recorded():
    df = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d", "e"],
            "params": [1e8] * 5,
            "tokens": [1e9] * 5,
            "loss": [3.0, 5.0, 2.9, 3.2, 4.4],
            "status": ["done", "done", "failed", "done", "diverged"],
        }
    )
    points = prepare_points(df, exclude="loss > 4.5", drop_highest=1)
    reasons = {e["run_id"]: e["reason"] for e in points.excluded}
    assert reasons == {
        "c": "status failed",
        "e": "status diverged",
        "b": "query: loss > 4.5",
        "d": "among the 1 highest-loss points",
    }
    assert points.frame["run_id"].tolist() == ["a"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(loss=[3.0, float("nan")]), r"'loss' has NaN or non-positive values in rows \[2\]"),
        (dict(params=[1e8, -1.0]), r"'params' has NaN or non-positive"),
        (dict(tokens=[0.0, 1e9]), r"'tokens' has NaN or non-positive values in rows \[1\]"),
    ],
)
def test_nan_and_non_positive_values(bad, message):
    df = pd.DataFrame({"params": [1e8, 2e8], "tokens": [1e9, 2e9], "loss": [3.0, 2.9], **bad})
    with pytest.raises(FitError, match=message):
        prepare_points(df)


def test_missing_columns_and_bad_query():
    with pytest.raises(FitError, match="need two of the columns"):
        prepare_points(pd.DataFrame({"params": [1e8], "loss": [3.0]}))
    with pytest.raises(FitError, match="no column 'loss'"):
        prepare_points(pd.DataFrame({"params": [1e8], "tokens": [1e9]}))
    with pytest.raises(FitError, match="not a valid query"):
        prepare_points(
            pd.DataFrame({"params": [1e8], "tokens": [1e9], "loss": [3.0]}), exclude="loss >>> 2"
        )
