"""TensorBoard and W&B through Accelerate's tracker API: what a run logs is read back from the
event files and from W&B's offline run directory, and equals metrics.jsonl."""

import json

import pytest

from scaling.rundir import RunDir
from scaling.training.lifecycle import train

from .conftest import tiny_run


@pytest.mark.slow
def test_trackers_log_what_metrics_jsonl_holds(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network: the run stays on disk
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = RunDir(tmp_path / "run")
    config = tiny_run(trackers=("tensorboard", "wandb"), tokens=20 * 1024, log_interval=5)
    result = train(config, run.path, progress=False)
    assert result["status"] == "done", result
    logged = run.read_metrics()
    assert len(logged) == 4

    events = EventAccumulator(str(run.tensorboard / "scaling"))
    events.Reload()
    scalars = events.Scalars("train_loss")
    assert [e.step for e in scalars] == [r["step"] for r in logged]
    assert [e.value for e in scalars] == pytest.approx([r["train_loss"] for r in logged])
    assert "eval_loss" in events.Tags()["scalars"]

    (record_log,) = (run.path / "wandb").glob("offline-run-*/run-*.wandb")
    data = record_log.read_bytes()  # W&B's record log holds each value as JSON
    for record in logged:
        assert json.dumps(record["train_loss"]).encode() in data


@pytest.mark.slow
def test_a_missing_tracker_is_one_line(tmp_path, monkeypatch):
    real_find_spec = __import__("importlib.util").util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *a: None if name == "wandb" else real_find_spec(name, *a),
    )
    from scaling.config import ConfigError

    with pytest.raises(ConfigError, match="train.trackers: wandb is not installed"):
        train(tiny_run(trackers=("wandb",), tokens=2048), tmp_path / "run", progress=False)
