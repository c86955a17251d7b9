"""Training one run: schedules, parallelism, checkpoints, metrics and the loop."""

import signal

# Signals on which a run writes its checkpoint and stops (exit 130), to resume later: Ctrl-C,
# SIGTERM (scancel, requeue, preemption, a launcher stopping) and SIGUSR2, the warning Slurm
# sends every process of a job before its time limit (submitit's ``--signal=USR2@90``; its
# default action would kill the trainer without a checkpoint).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
