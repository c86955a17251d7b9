"""Learning rate as a pure function of the optimizer step (pure Python, no torch: the trainer
uses it through ``scaling.training.schedules``, the loss-curve laws to rebuild a run's lr).

Nothing is stepped per process: every rank, and every resume, computes the same value from
the step alone. Warmup is linear from 0; then cosine or linear decay to ``min_lr_fraction`` of
the peak over the rest of the run (the cycle matched to the run's length, as Chinchilla), a
constant, or warmup-stable-decay (WSD), whose cooldown takes the last ``cooldown_fraction`` of
the run (or of a branch) down to zero with a linear, cosine or 1 − sqrt shape.
"""

from __future__ import annotations

import math

from scaling.config import TrainConfig


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    if cfg.warmup_steps is not None:
        return min(cfg.warmup_steps, total_steps)
    return int(round(cfg.warmup_fraction * total_steps))


def cooldown_factor(progress: float, shape: str) -> float:
    """Multiplier at ``progress`` ∈ [0, 1] through a cooldown: 1 at its start, 0 at its end."""
    progress = min(max(progress, 0.0), 1.0)
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - math.sqrt(progress)  # "1-sqrt" (Hägele et al., 2024)


def lr_at(cfg: TrainConfig, step: int, total_steps: int, end_step: int | None = None) -> float:
    """Learning rate of optimizer step ``step`` (0-based) in a run of ``total_steps``.

    ``end_step``: for a WSD cooldown branch, the step at which the branch ends (its cooldown
    starts at ``end_step − cooldown_fraction·end_step``); None for the main run.
    """
    peak = cfg.lr
    warmup = warmup_steps(cfg, total_steps)
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "wsd":
        end = total_steps if end_step is None else end_step
        cooldown = max(1, int(round(cfg.cooldown_fraction * end)))
        start = end - cooldown
        if step < start:
            return peak
        return peak * cooldown_factor((step - start) / cooldown, cfg.cooldown_shape)
    progress = (step - warmup) / max(1, total_steps - warmup)
    floor = cfg.min_lr_fraction * peak
    if cfg.schedule == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def branch_points(cfg: TrainConfig, total_steps: int) -> list[tuple[int, int]]:
    """WSD branches as (start step of the cooldown, end step), in order; the main run's own
    cooldown is not among them."""
    points = []
    for fraction in sorted(cfg.branches):
        end = max(1, int(round(fraction * total_steps)))
        cooldown = max(1, int(round(cfg.cooldown_fraction * end)))
        if end < total_steps:
            points.append((end - cooldown, end))
    return points


def branch_cooldown_steps(cfg: TrainConfig, total_steps: int) -> int:
    """The optimizer steps a run's WSD branches add to its own: each branch trains its
    cooldown from a checkpoint of the stable phase, and nothing else."""
    return sum(end - start for start, end in branch_points(cfg, total_steps))


def lr_schedule(cfg: TrainConfig, total_steps: int) -> list[float]:
    """The lr of every optimizer step 0 … ``total_steps`` − 1 of a main run."""
    return [lr_at(cfg, step, total_steps) for step in range(total_steps)]
