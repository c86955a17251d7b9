"""Training one run: schedules, parallelism, checkpoints, metrics and the loop."""

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterator

# Signals on which a run writes its checkpoint and stops (exit 130), to resume later: Ctrl-C,
# SIGTERM (scancel, requeue, preemption, a launcher stopping) and SIGUSR2, the warning Slurm
# sends every process of a job before its time limit (submitit's ``--signal=USR2@90``; its
# default action would kill the trainer without a checkpoint).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


@contextlib.contextmanager
def stop_signals(on_signal: Callable[[int], None]) -> Iterator[None]:
    """Inside the block, each of ``STOP_SIGNALS`` calls ``on_signal(signum)`` (the trainer
    records it and stops at its next micro-batch; the launcher raises and stops its runs);
    the previous handlers are back after it. The one place these signals are taken."""
    previous = {
        sig: signal.signal(sig, lambda signum, frame: on_signal(signum)) for sig in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Be killed when the parent process dies: a launcher's child, or a worker of torchrun's
    agent (which starts its workers in sessions of their own, so a SIGKILLed agent left them
    training with nobody holding the run's claim, beside the trainer the next launcher
    starts)."""
    # not Linux: no such call, but the claim's heartbeat still hands the run to another
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def under_an_agent() -> bool:
    """Started by torchrun's (or `accelerate launch`'s) elastic agent."""
    return "TORCHELASTIC_RUN_ID" in os.environ
