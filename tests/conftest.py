import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# Subnormal floats in the backward pass slow CPU matmuls by up to 50x; set before any work.
torch.set_flush_denormal(True)
if torch.cuda.is_available():
    # The tests that compare two runs to 1e-6 rely on deterministic kernels: always so on CPU,
    # on CUDA only when asked (with CUBLAS_WORKSPACE_CONFIG=:4096:8, as gpu_check.sh sets).
    torch.use_deterministic_algorithms(True, warn_only=True)

_spawned: list[subprocess.Popen] = []


def _default_sigint() -> None:
    # A shell that starts a job in the background without job control (`.ci/run &` in a
    # script) leaves SIGINT ignored below it, and Python then installs no KeyboardInterrupt
    # handler: restore the default so that the tests' Ctrl-C means what it says.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def scaling(*args, env, check=True) -> subprocess.CompletedProcess:
    """``python -m scaling ARGS`` in a fresh process; by default it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "scaling", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if check:
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done


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


def wait_for(condition, timeout: float = 300.0, what: str = "") -> None:
    """Poll ``condition`` until it holds: tests wait on events (a step logged, a checkpoint
    written), never on a time that a loaded machine may overrun."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def checkpoint_step(run: Path) -> int:
    """The step of the run's checkpoint; -1 when there is none yet or it is being replaced."""
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1


def logged(run: Path) -> list[dict]:
    """The run's metrics lines; none while the file is missing or a line is half written."""
    try:
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def spawn_training(config_path: Path, out: Path) -> subprocess.Popen:
    """`scaling train CONFIG --out OUT` in a process of its own, its output in a pipe."""
    return spawn(
        [sys.executable, "-m", "scaling", "train", str(config_path), "--out", str(out)]
        + ["--no-progress"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def train_until_step(config_path: Path, out: Path, step: int) -> tuple[int, str]:
    """Train (resuming) until ``step`` is logged, then SIGTERM: (the step of the checkpoint
    it wrote, what it printed)."""
    process = spawn_training(config_path, out)
    wait_for(lambda: max((x["step"] for x in logged(out)), default=0) >= step, what=str(out))
    process.send_signal(signal.SIGTERM)
    printed, _ = process.communicate(timeout=120)
    assert process.returncode == 130, printed
    return checkpoint_step(out), printed.decode()


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MiB file system of its own (tests run as root in CI; skipped where mounting is not
    allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
