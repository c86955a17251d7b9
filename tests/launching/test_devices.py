"""The local executor's GPUs, with a stubbed device count: which ids each child gets, the
torchrun command and its agent's settings, and a --gpus-per-run that cannot be met."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from scaling import devices
from scaling.cli import app
from scaling.config import ConfigError
from scaling.launching import local
from scaling.launching.dry_run import local_dry_run
from scaling.launching.local import LaunchOptions, LocalExecutor
from scaling.rundir import RunDir

runner = CliRunner()


@pytest.fixture
def four_gpus(monkeypatch):
    """The launcher sees four GPUs, its own CUDA_VISIBLE_DEVICES being 4,5,6,7."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")


class FakeChild:
    """A child that finishes at once with a done result, recording how it was started."""

    started: list[tuple[list[str], dict]] = []

    def __init__(self, args, env, stdout, stderr, preexec_fn):
        FakeChild.started.append((args, env))
        config = Path(args[args.index("train") + 1])
        run_id = json.loads(config.read_text())["run_id"]
        RunDir(config.parent).write_result({"run_id": run_id, "status": "done"})
        self.pid, self.returncode = 0, 0

    def poll(self):
        return 0


def test_each_run_gets_the_launchers_own_gpu_ids(plan_dir, four_gpus, monkeypatch):
    runs = plan_dir()
    FakeChild.started = []
    monkeypatch.setattr(subprocess, "Popen", FakeChild)
    options = LaunchOptions(max_parallel=2, gpus_per_run=2, poll_s=0.01, progress=False)
    finished = LocalExecutor(runs, options).run()
    assert set(finished.values()) == {"done"} and len(FakeChild.started) == 3
    for args, env in FakeChild.started:
        assert env["CUDA_VISIBLE_DEVICES"] in ("4,5", "6,7")
        assert args[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
        assert "--master_port" not in args  # each torchrun picks a free port of its own
        assert "SIGUSR2" in env["PET_SIGNALS_TO_HANDLE"]
        assert env["PET_SHUTDOWN_TIMEOUT"] == str(int(options.grace_s))


def test_visible_gpus_without_the_variable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5e1a,MIG-2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.visible_gpus() == ["GPU-5e1a", "MIG-2"]


def test_more_gpus_per_run_than_visible_is_one_line(plan_dir, four_gpus):
    runs = plan_dir()
    with pytest.raises(ConfigError, match="8 GPUs per run, but 4 visible"):
        LocalExecutor(runs, LaunchOptions(gpus_per_run=8))
    refused = runner.invoke(app, ["launch", str(runs), "--gpus-per-run", "8"])
    assert refused.exit_code == 2
    assert "--gpus-per-run 8: 8 GPUs per run, but 4 visible" in refused.output
    assert not list(runs.rglob("claim.json"))


def test_the_dry_run_hands_out_gpus_in_slots(plan_dir, four_gpus):
    runs = plan_dir()
    frame = local_dry_run(runs, LaunchOptions(max_parallel=4, gpus_per_run=2))
    assert set(frame["devices"]) == {"4,5", "6,7"}  # two slots of two: 4 runs cannot fit
    assert (frame["wall_s"] > 0).all()


def test_peak_flops_by_name_and_precision():
    assert devices.gpu_peak_flops("NVIDIA L40") == 181e12  # not the L4's 121e12
    assert devices.gpu_peak_flops("NVIDIA L4") == 121e12
    assert devices.gpu_peak_flops("NVIDIA H100 NVL") == 835e12
    assert devices.gpu_peak_flops("NVIDIA H100 PCIe") == 756e12
    assert devices.gpu_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert devices.gpu_peak_flops("NVIDIA H100 80GB HBM3", "fp32") == 67e12
    assert devices.gpu_peak_flops("Tesla V100-SXM2-32GB") is None  # no bf16
    assert devices.supports_bf16("Tesla V100-SXM2-32GB") is False
    assert devices.gpu_peak_flops("Some Future GPU") is None


def test_the_local_executor_reads_an_interrupted_torchrun_from_stopped_json(plan_dir, monkeypatch):
    """torchrun reports its workers' exit code 130 as 1: the run is interrupted, not failed,
    because the trainer left stopped.json."""
    runs = plan_dir(params="[3e4]")

    class StoppedChild(FakeChild):
        def __init__(self, args, env, stdout, stderr, preexec_fn):
            run = RunDir(Path(args[args.index("train") + 1]).parent)
            assert not run.was_stopped()  # the launcher cleared an earlier mark
            run.write_stopped(3, "stopped by signal 15 at step 3")
            self.pid, self.returncode = 0, 1

        def poll(self):
            return 1

    (run_id,) = [p.name for p in (runs / "runs").iterdir()]
    RunDir(runs / "runs" / run_id).write_stopped(1, "an earlier stop")
    monkeypatch.setattr(subprocess, "Popen", StoppedChild)
    executor = LocalExecutor(runs, LaunchOptions(poll_s=0.01, progress=False))
    assert executor.run() == {run_id: "pending"}
    assert not (runs / "runs" / run_id / "result.json").exists()
    assert local.state.run_state(RunDir(runs / "runs" / run_id)) == "pending"
