import math

import pytest

from scaling.config import TrainConfig
from scaling.schedules import branch_cooldown_steps
from scaling.training.schedules import branch_points, cooldown_factor, lr_at, warmup_steps

BASE = dict(tokens=100 * 1024, batch_tokens=1024, seq_len=64, lr=1e-3, warmup_steps=10)


@pytest.mark.parametrize(
    "schedule, end", [("cosine", 1e-4), ("linear", 1e-4), ("constant", 1e-3), ("wsd", 5e-5)]
)
def test_schedule_end_points(schedule, end):
    cfg = TrainConfig(**BASE, schedule=schedule, cooldown_shape="linear")
    assert lr_at(cfg, 0, 100) == pytest.approx(1e-4)  # warmup starts at peak / warmup
    assert lr_at(cfg, 9, 100) == pytest.approx(1e-3)  # ... and reaches the peak
    assert lr_at(cfg, 10, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 99, 100) == pytest.approx(end, abs=2e-5)
    lrs = [lr_at(cfg, s, 100) for s in range(10, 100)]
    assert all(a >= b - 1e-15 for a, b in zip(lrs, lrs[1:], strict=False))  # never rises


def test_wsd_is_flat_until_its_cooldown_and_shapes_differ():
    cfg = TrainConfig(**BASE, schedule="wsd", cooldown_fraction=0.2)
    assert lr_at(cfg, 79, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 80, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 90, 100) < 1e-3
    # a quarter of the way through a cooldown, the three shapes part
    assert cooldown_factor(0.25, "1-sqrt") == pytest.approx(0.5)
    assert cooldown_factor(0.25, "linear") == pytest.approx(0.75)
    assert cooldown_factor(0.25, "cosine") == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    for shape in ("1-sqrt", "linear", "cosine"):
        assert cooldown_factor(0.0, shape) == 1.0 and cooldown_factor(1.0, shape) == 0.0


def test_warmup_fraction_and_branches():
    cfg = TrainConfig(
        **{**BASE, "warmup_steps": None}, warmup_fraction=0.05, schedule="wsd", branches=(0.25, 0.5)
    )
    assert warmup_steps(cfg, 100) == 5
    assert branch_points(cfg, 100) == [(20, 25), (40, 50)]
    assert branch_cooldown_steps(cfg, 100) == 5 + 10  # what the branches add to the run
    # a branch ends at its own end step: its cooldown is its last 20%
    assert lr_at(cfg, 24, 100, end_step=25) < lr_at(cfg, 20, 100, end_step=25) == 1e-3
    assert lr_at(cfg, 24, 100) == 1e-3  # the main run stays on its stable phase
