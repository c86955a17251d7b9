"""Two processes under torchrun (gloo, CPU): DDP and FSDP2 give the losses of one process."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from scaling.training.trainer import train

from .conftest import tiny_run

pytestmark = pytest.mark.slow


def torchrun(config, run_dir, tmp_path):
    config_path = tmp_path / f"{run_dir.name}.json"
    config_path.write_text(config.model_dump_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29500 + os.getpid() % 1000),
            "-m",
            "scaling",
            "train",
            str(config_path),
            "--out",
            str(run_dir),
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((run_dir / "result.json").read_text())


def losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {(r := json.loads(line))["step"]: r["train_loss"] for line in lines}


@pytest.mark.parametrize(
    "parallelism, model",
    [
        ("ddp", {}),
        ("fsdp", {}),
        ("fsdp", {"n_experts": 4, "top_k": 2}),
    ],
)
def test_two_processes_match_one(tmp_path, parallelism, model):
    config = tiny_run(model=model, tokens=20 * 1024, parallelism=parallelism)
    single = train(config, tmp_path / "single", progress=False)
    double = torchrun(config, tmp_path / "double", tmp_path)
    assert double["status"] == "done"
    assert (double["parallelism"], double["processes"]) == (parallelism, 2)
    one, two = losses(tmp_path / "single"), losses(tmp_path / "double")
    assert one.keys() == two.keys()
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert double["final_eval_loss"] == pytest.approx(single["final_eval_loss"], rel=1e-4)


def test_fsdp_sharded_checkpoint_resumes(tmp_path):
    config = tiny_run(tokens=30 * 1024, parallelism="fsdp", checkpoint_interval=10)
    full = torchrun(config, tmp_path / "full", tmp_path)
    shards = sorted(p.name for p in (tmp_path / "full" / "checkpoint").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    sizes = [(tmp_path / "full" / "checkpoint" / name).stat().st_size for name in shards]
    assert max(sizes) < 1.5 * min(sizes)  # each rank holds half the state: sharded, not replicated
    # a second directory that holds only the step-20 checkpoint resumes from it
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint", resumed_dir / "checkpoint")
    resumed = torchrun(config, resumed_dir, tmp_path)
    assert resumed["resumed_from_step"] == 20
    assert resumed["final_eval_loss"] == pytest.approx(full["final_eval_loss"], rel=1e-5)


def test_fsdp_bf16_parameters_with_fp32_reduction(tmp_path):
    # Accelerate's FSDP2 plugin with the bf16 policy (bf16 parameters in the forward and
    # backward, fp32 gradient reduction): the losses of fp32 training, to bf16's precision
    fp32 = train(tiny_run(tokens=20 * 1024), tmp_path / "fp32", progress=False)
    bf16 = torchrun(
        tiny_run(tokens=20 * 1024, parallelism="fsdp", precision="bf16"),
        tmp_path / "bf16",
        tmp_path,
    )
    assert (bf16["status"], bf16["parallelism"]) == ("done", "fsdp")
    assert bf16["final_eval_loss"] == pytest.approx(fp32["final_eval_loss"], rel=2e-2)
    assert bf16["final_eval_loss"] != fp32["final_eval_loss"]  # the policy did change numerics
