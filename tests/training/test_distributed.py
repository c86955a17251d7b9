"""Two processes under torchrun (gloo, CPU): DDP and FSDP2 give the losses of one process,
and a stop signal to one rank stops both at the same point."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scaling.training.lifecycle import train

from ..conftest import checkpoint_step, logged, spawn, spawn_training, wait_for
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


# µP at twice its base width: every multiplier, lr scale and eps scale away from 1, all read
# from names that FSDP2's sharded parameters keep
MUP = {"parametrization": "mup", "base_width": 32, "mup_output_alpha": 2.0}


@pytest.mark.parametrize(
    "parallelism, model",
    [
        ("fsdp", MUP),
        ("ddp", {}),
        ("fsdp", {}),
        # aux-loss-free balancing sums the expert loads of every rank
        ("ddp", {"n_experts": 4, "top_k": 2, "router_bias_rate": 0.01}),
        ("fsdp", {"n_experts": 4, "top_k": 2, "router_bias_rate": 0.01}),
    ],
)
def test_two_processes_match_one(tmp_path, parallelism, model):
    # two micro-batches a step on each rank: DDP's and FSDP's gradient accumulation
    config = tiny_run(model=model, tokens=20 * 1024, parallelism=parallelism, micro_batch_size=4)
    single = train(config, tmp_path / "single", progress=False)
    double = torchrun(config, tmp_path / "double", tmp_path)
    assert double["status"] == "done"
    assert (double["parallelism"], double["processes"]) == (parallelism, 2)
    one, two = losses(tmp_path / "single"), losses(tmp_path / "double")
    assert one.keys() == two.keys()
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert double["final_eval_loss"] == pytest.approx(single["final_eval_loss"], rel=1e-4)
    if model.get("n_experts"):
        from scaling.model import load_pretrained

        bias = [
            load_pretrained(tmp_path / name / "export").blocks[0].ffn.expert_bias
            for name in ("single", "double")
        ]
        assert bias[0].abs().sum() > 0 and torch.equal(bias[0], bias[1])


@pytest.mark.parametrize("model", [{}, MUP], ids=["standard", "mup"])
def test_fsdp_sharded_checkpoint_resumes(tmp_path, model):
    config = tiny_run(model=model, tokens=30 * 1024, parallelism="fsdp", checkpoint_interval=10)
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


def spawn_torchrun(config_path: Path, out: Path) -> subprocess.Popen:
    return spawn(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
        + ["-m", "scaling", "train", str(config_path), "--out", str(out), "--no-progress"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def worker_of_rank(agent: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker of ``rank`` (from the workers' environments)."""
    children = []
    for task in Path(f"/proc/{agent.pid}/task").iterdir():
        children += (task / "children").read_text().split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise LookupError(f"no worker of rank {rank} among {children}")


def test_a_signal_to_one_rank_stops_both_and_the_resume_is_exact(tmp_path):
    """Each rank decides to stop together with the other (an all-reduced flag at every
    micro-batch and step): a stop taken by the signalled rank alone left the other in a
    collective, a hang with no checkpoint."""
    config = tiny_run(
        tokens=100_000 * 1024,
        micro_batch_size=1,
        parallelism="fsdp",
        log_interval=1,
        eval_interval=0,
        checkpoint_interval=1000,
    )
    config_path = tmp_path / "config.json"
    config_path.write_text(config.model_dump_json())
    run = tmp_path / "two"
    agent = spawn_torchrun(config_path, run)
    wait_for(lambda: len(logged(run)) >= 2, what="two steps logged")
    os.kill(worker_of_rank(agent, 1), signal.SIGTERM)  # rank 1 only; rank 0 writes the logs
    printed = agent.communicate(timeout=300)[0].decode()
    assert "stopped by a signal to another rank" in printed, printed[-3000:]
    at = checkpoint_step(run)
    assert at == logged(run)[-1]["step"], printed[-3000:]
    shards = sorted(p.name for p in (run / "checkpoint").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]
    # tokens_per_s is the run's, not a process's times the world size: the windows' times
    # it implies add up to the wall time of the steps (it was half, at 2x the rate)
    lines = logged(run)
    implied = sum(config.train.batch_tokens / line["tokens_per_s"] for line in lines)
    assert 0.75 < implied / lines[-1]["time_s"] <= 1.0, (implied, lines[-1]["time_s"])

    agent = spawn_torchrun(config_path, run)
    wait_for(lambda: len(logged(run)) >= at + 2, what="the resumed run two steps on")
    agent.send_signal(signal.SIGTERM)
    agent.communicate(timeout=300)
    single = tmp_path / "single"
    process = spawn_training(config_path, single)
    wait_for(lambda: len(logged(single)) >= at + 2, what="the single process's run")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=300)
    one = {line["step"]: line["train_loss"] for line in logged(single)}
    two = {line["step"]: line["train_loss"] for line in logged(run)}
    for step in range(1, at + 3):
        assert two[step] == pytest.approx(one[step], rel=1e-4), step


PROBE = """
import json, torch
torch.set_flush_denormal(True)
from scaling.config import ModelConfig, TrainConfig
from scaling.model import Transformer
from scaling.training.parallel import prepare, setup

cfg = TrainConfig(parallelism="fsdp", precision="bf16", seq_len=16, batch_tokens=256,
                  micro_batch_size=8, tokens=2560)
runtime = setup(cfg)
model = Transformer(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                                max_seq_len=16, n_experts=4, top_k=2))
model, _ = prepare(model, lambda m: torch.optim.AdamW(m.parameters()), runtime, cfg)
seen = {}
block = model.blocks[0]
block.attn.register_forward_pre_hook(lambda m, args: seen.update(rope=str(args[1][0].dtype)))
block.ffn.router.register_forward_hook(
    lambda m, args, out: seen.update(router_weight=str(m.weight.dtype), logits=str(out.dtype)))
block.ffn.register_forward_hook(lambda m, args, out: seen.update(experts=str(out[0].dtype)))
idx = torch.randint(0, 64, (4, 16))
model(idx, idx).loss.backward()
if runtime.rank == 0:
    print("PROBE", json.dumps({**seen, "mixed_precision": runtime.accelerator.mixed_precision,
          "dynamo": str(runtime.accelerator.state.dynamo_plugin.backend)}))
"""


def test_fsdp_bf16_keeps_router_and_rope_in_fp32_and_ignores_accelerates_environment(tmp_path):
    """Under the FSDP2 bf16 policy the blocks compute in bf16, but the RoPE tables and the
    router stay fp32 as under autocast; `accelerate launch`'s ACCELERATE_MIXED_PRECISION and
    ACCELERATE_DYNAMO_BACKEND (from a user's config file) add no autocast and no compile."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
        + [str(probe)],
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "ACCELERATE_MIXED_PRECISION": "fp16",
            "ACCELERATE_DYNAMO_BACKEND": "INDUCTOR",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE"))
    seen = json.loads(line.removeprefix("PROBE "))
    assert seen == {
        "rope": "torch.float32",
        "router_weight": "torch.float32",
        "logits": "torch.float32",
        "experts": "torch.bfloat16",
        "mixed_precision": "no",
        "dynamo": "NO",
    }
