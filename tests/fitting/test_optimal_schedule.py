"""The schedule a multi-power law predicts to end lowest (Luo et al. 2025, Section 5): the
exact gradient, the optimum against cosine, WSD and a constant lr, the published schedule's
shape, and the CLI's join (the schedule written, read back by --schedule in a fresh process)."""

import json
import os

import numpy as np
import pytest

from scaling.fitting import LRAnnealingLaw, MultiPowerLaw
from scaling.fitting.errors import FitError
from scaling.fitting.optimal_schedule import final_loss, optimal_schedule, parse_request
from scaling.published import multipower

from ..conftest import scaling

PARAMS = json.loads(
    (multipower.HERE / multipower.PROVENANCE).read_text()
)["published_fit"]["params"]  # fmt: skip


def test_the_gradient_is_the_laws_own_by_finite_differences():
    params = PARAMS["400M"]
    rng = np.random.default_rng(0)
    lr = np.concatenate([np.linspace(0, 3e-4, 50), np.sort(rng.uniform(1e-5, 3e-4, 300))[::-1]])
    loss, grad = final_loss(params, lr)
    assert loss == pytest.approx(MultiPowerLaw.from_params(params).curve(lr)[-1], rel=1e-12)
    for j in (0, 1, 25, 49, 50, 51, 200, 348, 349):  # warm-up, its end, the decay, the last
        step = 1e-9
        moved = lr.copy()
        moved[j] += step
        numeric = (final_loss(params, moved)[0] - loss) / step
        assert numeric == pytest.approx(grad[j], rel=1e-3)


def test_the_optimum_ends_below_cosine_wsd_and_a_constant_lr():
    law = MultiPowerLaw.from_params(PARAMS["25M"])
    found = optimal_schedule(law, 3000, 3e-4, warmup=300, iterations=3000)
    lr = found.lr
    after = lr[300:]
    assert np.all(np.diff(after) <= 1e-15) and after[0] <= 3e-4 and after[-1] > 0
    assert found.loss == pytest.approx(law.curve(lr)[-1], rel=1e-12)
    constant = final_loss(law.params_, np.concatenate([lr[:300], np.full(2700, 3e-4)]))[0]
    assert found.loss < found.baselines["wsd"] < found.baselines["cosine"]
    assert found.loss < constant
    # the shape Luo et al. publish: constant, then a decay over the last tenth or so
    assert after[: int(0.7 * len(after))].min() == pytest.approx(3e-4)
    assert after[-1] < 0.1 * 3e-4


def test_the_published_schedules_shape_at_a_tenth_of_its_steps():
    """At 2400 steps the paper's 400M set-up (its warm-up 9%, its peak) ends as its published
    24000-step optimum does, scaled: constant to about 89% of the steps, the lr below half the
    peak from about 92%, then towards 0 (optimized_schedules/400.npy: 89.4%, 92.4%)."""
    published = multipower.optimal_schedules()
    theirs = np.array(published["lr_every_100_steps_from_2160"]["400M"])
    law = MultiPowerLaw.from_params(PARAMS["400M"])
    found = optimal_schedule(law, 2400, 3e-4, warmup=216, warmup_lr=np.linspace(0, 3e-4, 216))
    ours = found.lr
    half_ours = int(np.argmax(ours[216:] < 1.5e-4)) + 216
    half_theirs = 2160 + 100 * int(np.argmax(theirs < 1.5e-4))
    assert half_ours / 2400 == pytest.approx(half_theirs / 24000, abs=0.03)
    assert found.loss < found.baselines["wsd"]


def test_only_a_multi_power_law_and_sane_requests_are_taken():
    annealing = LRAnnealingLaw.from_params({"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.3})
    with pytest.raises(FitError, match="multi-power"):
        optimal_schedule(annealing, 100, 1e-3)
    assert parse_request("steps=100,lr=1e-3,warmup=10") == {
        "steps": 100,
        "peak_lr": 1e-3,
        "warmup": 10,
    }
    for bad, says in (
        ("steps=100", "no lr="),
        ("steps=100,lr=1e-3,warmup=100", "warmup=100 is out of range"),
        ("steps=1.5,lr=1e-3", "must be an int"),
        ("steps=100,lr=x", "'x' is not a number"),
        ("steps=100,lr=1e-3,cooldown=0.2", "is not KEY=VALUE"),
    ):
        with pytest.raises(FitError, match=says):
            parse_request(bad)


@pytest.mark.slow
def test_the_schedule_written_is_read_back_in_a_fresh_process(tmp_path):
    fit = tmp_path / "mpl.json"
    MultiPowerLaw.from_params(PARAMS["25M"]).to_json(fit)
    out = tmp_path / "optimal.csv"
    request = "steps=1000,lr=3e-4,warmup=100,iterations=500"
    env = dict(os.environ)
    done = scaling("predict", "--fit", fit, "--optimal-schedule", request, "--out", out, env=env)
    assert "cosine" in done.stdout and f"wrote {out}" in done.stdout
    found = scaling("predict", "--fit", fit, "--optimal-schedule", request, "--json", env=env)
    found = json.loads(found.stdout)
    back = scaling("predict", "--fit", fit, "--schedule", out, "--json", env=env)
    predictions = json.loads(back.stdout)["predictions"]
    assert len(predictions) == 1000
    assert predictions[-1]["loss"] == pytest.approx(found["loss"], rel=1e-9)
    assert found["gain"]["cosine"] > 0 and found["gain"]["wsd"] > 0
    # bad input: one line, exit 2, nothing written
    for args in (
        ("--optimal-schedule", "steps=10"),
        ("--optimal-schedule", request, "--compute", "1e18"),
    ):
        bad = scaling(
            "predict", "--fit", fit, *args, "--out", tmp_path / "x.csv", env=env, check=False
        )
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert not (tmp_path / "x.csv").exists()
    curve_fit = tmp_path / "la.json"
    LRAnnealingLaw.from_params({"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.3}).to_json(curve_fit)
    bad = scaling(
        "predict", "--fit", curve_fit, "--optimal-schedule", request, env=env, check=False
    )
    assert bad.returncode == 2 and "multi-power" in bad.stderr
