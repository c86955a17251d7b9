import contextlib
import os
import signal
import subprocess

import pytest
import torch

# Subnormal floats in the backward pass slow CPU matmuls by up to 50x; set before any work.
torch.set_flush_denormal(True)

_spawned: list[subprocess.Popen] = []


def _default_sigint() -> None:
    # A shell that starts a job in the background without job control (`.ci/run &` in a
    # script) leaves SIGINT ignored below it, and Python then installs no KeyboardInterrupt
    # handler: restore the default so that the tests' Ctrl-C means what it says.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    """Popen in a process group of its own, with SIGINT's default action; whatever of the
    group still runs when the test ends is killed (a failed test leaves no run training)."""
    process = subprocess.Popen(args, start_new_session=True, preexec_fn=_default_sigint, **kwargs)
    _spawned.append(process)
    return process


@pytest.fixture(autouse=True)
def _kill_what_the_test_spawned():
    yield
    while _spawned:
        process = _spawned.pop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
