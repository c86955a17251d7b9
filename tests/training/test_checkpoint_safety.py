"""A checkpoint folder is data: resuming from one never runs code it holds. DCP's index
(``.metadata``) and the state's non-tensor values are pickles; a payload in either is refused
and never executed."""

import io
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from scaling.training.lifecycle import train

from .conftest import tiny_run

pytestmark = pytest.mark.slow


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def stopped_run(tmp_path):
    """A run with one checkpoint (step 10) and no result: `scaling train` resumes it."""
    config = tiny_run(tokens=12 * 1024, checkpoint_interval=10, eval_interval=0)
    run = tmp_path / "run"
    train(config, run, progress=False)
    (run / "result.json").unlink()
    config_path = tmp_path / "config.json"
    config_path.write_text(config.model_dump_json())
    return config_path, run


def resume(config_path, run) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scaling", "train", str(config_path), "--out", str(run)]
        + ["--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def replace_file(checkpoint, name: str, data: bytes) -> None:
    """Write ``data`` as the checkpoint's file ``name`` and record its size in state.json,
    as someone crafting the folder would (a damaged file is caught by its size)."""
    (checkpoint / name).write_bytes(data)
    state = json.loads((checkpoint / "state.json").read_text())
    state["_files"][name] = len(data)
    (checkpoint / "state.json").write_text(json.dumps(state))


def test_a_metadata_pickle_that_runs_code_is_refused(stopped_run, tmp_path):
    config_path, run = stopped_run
    marker = tmp_path / "ran"
    replace_file(run / "checkpoint", ".metadata", pickle.dumps(Payload(marker)))
    done = resume(config_path, run)
    assert not marker.exists(), "the checkpoint ran code"
    assert done.returncode == 2, done.stdout + done.stderr
    assert ".metadata" in done.stderr and "posix.system" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_value_pickle_in_a_shard_that_runs_code_is_refused(stopped_run, tmp_path):
    """The optimizer's lr, stored as a pickle inside the shard, replaced by a payload (the
    index, itself legitimate, pointed at it)."""
    config_path, run = stopped_run
    checkpoint, marker = run / "checkpoint", tmp_path / "ran"
    metadata = pickle.loads((checkpoint / ".metadata").read_bytes())  # our own, trusted here
    key = next(k for k in metadata.storage_data if k.fqn == "optim.param_groups.0.lr")
    info = metadata.storage_data[key]
    shard = checkpoint / info.relative_path
    payload = io.BytesIO()
    torch.save(Payload(marker), payload)
    data = shard.read_bytes()
    info.offset, info.length = len(data), len(payload.getvalue())
    replace_file(checkpoint, info.relative_path, data + payload.getvalue())
    replace_file(checkpoint, ".metadata", pickle.dumps(metadata))
    done = resume(config_path, run)
    assert not marker.exists(), "the checkpoint ran code"
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no checkpoint of" in done.stderr and "Unpickl" in done.stderr


def test_a_legitimate_checkpoint_still_resumes(stopped_run):
    config_path, run = stopped_run
    done = resume(config_path, run)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "result.json").read_text())["resumed_from_step"] == 10
