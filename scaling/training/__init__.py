"""Training one run: schedules, parallelism, checkpoints, metrics and the loop."""
