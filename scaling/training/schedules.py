"""The trainer's learning rate schedule. The math is pure Python and lives in
``scaling.schedules`` (torch-free, so that the loss-curve laws of ``scaling.fitting`` rebuild
a run's every step's lr from its config exactly as the trainer set it)."""

from scaling.schedules import branch_points, cooldown_factor, lr_at, warmup_steps

__all__ = ["branch_points", "cooldown_factor", "lr_at", "warmup_steps"]
