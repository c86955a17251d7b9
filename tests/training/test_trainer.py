import json
import math

import pytest
import torch

from scaling.config import ConfigError, TrainConfig
from scaling.model import load_pretrained
from scaling.training.lifecycle import train

from ..conftest import checkpoint_step, spawn_training, train_until_step, wait_for
from .conftest import tiny_run


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("model", [{}, {"n_experts": 4, "top_k": 2, "activation": "swiglu"}])
def test_tiny_models_learn(tmp_path, model):
    result = train(
        tiny_run(model=model, tokens=60 * 1024, eval_interval=20), tmp_path, progress=False
    )
    assert result["status"] == "done", result
    assert result["final_eval_loss"] < math.log(512) - 1.2
    assert result["tokens"] == 60 * 1024 and result["steps"] == 60
    assert result["unique_tokens"] > 0 and result["epochs"] == 60 * 1024 / (
        (result["unique_tokens"] - 1) // 64 * 64
    )
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines if "eval_loss" in line] == [20, 40, 60]
    first = lines[0]
    assert {
        "step",
        "tokens",
        "flops",
        "lr",
        "train_loss",
        "grad_norm",
        "tokens_per_s",
        "time_s",
    } <= set(first)
    if model:
        assert "aux_loss" in first and first["expert_load_max_over_mean"] >= 1.0
    exported = load_pretrained(tmp_path / "export")
    assert exported.cfg == tiny_run(model=model).model
    # the same config again: already done, nothing retrained
    again = train(
        tiny_run(model=model, tokens=60 * 1024, eval_interval=20), tmp_path, progress=False
    )
    assert again == result


@pytest.mark.slow
def test_gradient_accumulation_matches_one_big_micro_batch(tmp_path):
    # Adam moves every weight by about lr per step whatever its gradient, so rounding noise in
    # near-zero gradients shows up at the scale of lr: a small lr keeps it below 1e-5.
    a = train(
        tiny_run(tokens=5 * 1024, micro_batch_size=2, lr=3e-4), tmp_path / "a", progress=False
    )
    b = train(
        tiny_run(tokens=5 * 1024, micro_batch_size=16, lr=3e-4), tmp_path / "b", progress=False
    )
    assert a["status"] == b["status"] == "done"
    pa = load_pretrained(tmp_path / "a" / "export").state_dict()
    pb = load_pretrained(tmp_path / "b" / "export").state_dict()
    for key in pa:
        torch.testing.assert_close(pa[key], pb[key], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_wsd_branches_add_points(tmp_path):
    config = tiny_run(tokens=40 * 1024, schedule="wsd", branches=(0.25, 0.5))
    result = train(config, tmp_path, progress=False)
    assert result["status"] == "done"
    assert [b["step"] for b in result["branches"]] == [10, 20]
    assert [b["tokens"] for b in result["branches"]] == [10 * 1024, 20 * 1024]
    # a branch's point is a run that ended there; what it cost is its 2- and 4-step cooldowns
    per_token = result["flops"] / result["tokens"]
    assert [b["flops"] for b in result["branches"]] == [t * per_token for t in (10240, 20480)]
    assert [b["cooldown_flops"] for b in result["branches"]] == [
        s * 1024 * per_token for s in (2, 4)
    ]
    assert (
        result["branches"][0]["eval_loss"]
        > result["branches"][1]["eval_loss"]
        > result["final_eval_loss"]
    )
    # the branches leave the main run untouched: the same losses as a run without them
    plain = train(tiny_run(tokens=40 * 1024, schedule="wsd"), tmp_path / "plain", progress=False)
    assert plain["final_eval_loss"] == pytest.approx(result["final_eval_loss"], rel=1e-6)


@pytest.mark.slow
def test_absurd_learning_rate_diverges(tmp_path):
    result = train(tiny_run(lr=50.0, warmup_steps=0, grad_clip=0.0), tmp_path, progress=False)
    assert result["status"] == "diverged"
    assert "train_loss" in result["reason"] or "eval_loss" in result["reason"]


def test_bad_train_configs():
    with pytest.raises(ValueError, match="multiple of seq_len"):
        TrainConfig(batch_tokens=1000, seq_len=64)
    with pytest.raises(ValueError, match="less than one optimizer step"):
        TrainConfig(tokens=100, batch_tokens=1024, seq_len=64)
    with pytest.raises(ValueError, match="trackers"):
        TrainConfig(trackers=("mlflow",))
    with pytest.raises(ConfigError, match="micro_batch_size"):
        TrainConfig(batch_tokens=1024, seq_len=64, micro_batch_size=3).accumulation(1)
    with pytest.raises(ConfigError, match="on 3 processes"):
        TrainConfig(batch_tokens=1024, seq_len=64, micro_batch_size=8).accumulation(3)
    with pytest.raises(ValueError, match="branches need schedule"):
        TrainConfig(branches=(0.5,))


def test_bf16_on_a_cpu_without_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU, on a GPU machine too
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="precision"):
        train(tiny_run(precision="bf16"), tmp_path, progress=False)


# The runs below are 100,000 steps long and never end here: each is stopped once a step is
# logged (SIGTERM stops at a step boundary, kill -9 anywhere), so no test races a run's end
# however slow the machine (a short run once finished before its signal on a loaded one).
LONG = 100_000 * 1024


@pytest.mark.slow
def test_resume_after_kill_9_is_exact(tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(tiny_run(tokens=LONG).model_dump_json())
    reference, run = tmp_path / "reference", tmp_path / "killed"
    train_until_step(config_path, reference, 40)

    process = spawn_training(config_path, run)
    wait_for(lambda: checkpoint_step(run) >= 20)
    process.kill()  # kill -9: no handler runs
    process.wait()
    killed_at = checkpoint_step(run)
    kept = [line for line in read_metrics(run) if line["step"] <= killed_at]
    assert train_until_step(config_path, run, 40)[0] > killed_at
    got = read_metrics(run)
    # resumed from the checkpoint, not restarted (a restart rewrites the lines, with other
    # times), and every step after it as in the run that was never killed
    assert got[: len(kept)] == kept
    expected = [line for line in read_metrics(reference) if line["step"] <= 40]
    got = [line for line in got if line["step"] <= 40]
    assert [line["step"] for line in got] == [line["step"] for line in expected]
    for a, b in zip(expected, got, strict=True):
        for key in ("train_loss", "eval_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), (key, a["step"])


@pytest.mark.slow
def test_sigterm_leaves_a_checkpoint_and_resumes(tmp_path):
    config_path = tmp_path / "config.json"
    config = tiny_run(tokens=LONG, checkpoint_interval=1000, eval_interval=0)
    config_path.write_text(config.model_dump_json())
    run = tmp_path / "run"
    stopped_at, _ = train_until_step(config_path, run, 10)
    assert stopped_at >= 10
    kept = (run / "metrics.jsonl").read_text().splitlines()
    # resumed from the checkpoint: the first run's lines are kept as written, and the steps
    # go on past it
    step, output = train_until_step(config_path, run, stopped_at + 10)
    assert step > stopped_at
    assert f"resumed from the checkpoint at step {stopped_at}" in output
    after = (run / "metrics.jsonl").read_text().splitlines()
    assert after[: len(kept)] == kept
    steps = [json.loads(line)["step"] for line in after]
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_activation_checkpointing_changes_nothing_but_memory(tmp_path, monkeypatch):
    import torch.utils.checkpoint

    plain = train(tiny_run(tokens=6 * 1024), tmp_path / "plain", progress=False)
    real, calls = torch.utils.checkpoint.checkpoint, []

    def counted(function, *args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return real(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counted)
    checkpointed = train(
        tiny_run(tokens=6 * 1024, activation_checkpointing=True), tmp_path / "ckpt", progress=False
    )
    assert checkpointed["final_eval_loss"] == pytest.approx(plain["final_eval_loss"], rel=1e-6)
    # every block of every forward went through the checkpoint (2 blocks, 6 steps of one
    # micro-batch, and the evaluations), non-reentrant
    assert len(calls) >= 2 * 6 and set(calls) == {False}


@pytest.mark.slow
@pytest.mark.parametrize("model", [{}, {"n_experts": 4, "top_k": 2}])
def test_compiled_blocks_train_like_eager_ones(tmp_path, model):
    from torch._dynamo.utils import counters

    counters.clear()
    eager = train(tiny_run(model=model, tokens=10 * 1024), tmp_path / "eager", progress=False)
    compiled = train(
        tiny_run(model=model, tokens=10 * 1024, compile=True),
        tmp_path / "compiled",
        progress=False,
    )
    assert compiled["status"] == "done", compiled
    assert counters["stats"]["unique_graphs"] >= 2  # each block's forward was really compiled
    one, two = read_metrics(tmp_path / "eager"), read_metrics(tmp_path / "compiled")
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4), a["step"]
    assert compiled["final_eval_loss"] == pytest.approx(eager["final_eval_loss"], rel=1e-4)


@pytest.mark.slow
def test_bf16_autocast_on_cpu(tmp_path):
    """The run really computes in bf16: its linear layers' outputs are bf16 (a run that
    ignored the setting would train in fp32 and pass on the loss alone)."""
    dtypes = set()

    def record(module, args, output):
        if isinstance(module, torch.nn.Linear) and module.training:
            dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = train(tiny_run(tokens=20 * 1024, precision="bf16"), tmp_path, progress=False)
    finally:
        handle.remove()
    assert result["status"] == "done" and result["final_eval_loss"] < math.log(512)
    assert dtypes == {torch.bfloat16}


def test_missing_tracker_package_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"tensorboard is not installed.*scaling\[trackers\]"):
        train(tiny_run(trackers=("tensorboard",)), tmp_path, progress=False)


@pytest.mark.slow
def test_evaluation_pads_a_short_last_batch_without_touching_the_windows(tmp_path):
    """12 validation windows in micro-batches of 8: the second batch is padded to 8 windows
    whose targets are ignored (one shape for a compiled model); the loss is the mean over
    the 12 real windows, as in micro-batches of 4, which need no padding."""
    padded = train(tiny_run(tokens=2 * 1024, eval_windows=12), tmp_path / "8", progress=False)
    exact = train(
        tiny_run(tokens=2 * 1024, eval_windows=12, micro_batch_size=4),
        tmp_path / "4",
        progress=False,
    )
    assert padded["status"] == exact["status"] == "done", padded.get("error")
    assert padded["final_eval_loss"] == pytest.approx(exact["final_eval_loss"], rel=1e-5)


@pytest.mark.slow
def test_the_trainer_steps_each_mup_group_at_its_own_scale(tmp_path):
    """The schedule multiplies each group's lr_scale (µP's 1/m on hidden matrices) after
    Accelerate has prepared the optimizer, at every step."""
    from scaling.model.parametrization import kind_of
    from scaling.rundir import RunDir
    from scaling.training.parallel import setup
    from scaling.training.trainer import Trainer

    model = {"parametrization": "mup", "base_width": 16}  # tiny_run's width is 64: m = 4
    config = tiny_run(model=model, tokens=3 * 1024, eval_interval=0, warmup_steps=0)
    trainer = Trainer(config, RunDir(tmp_path), setup(config.train), progress=False)
    trainer.run()
    last_lr = read_metrics(tmp_path)[-1]["lr"]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    seen = set()
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            hidden = kind_of(name) == "hidden"
            seen.add(hidden)
            assert group["lr"] == pytest.approx(last_lr / 4 if hidden else last_lr), name
            in_block = kind_of(name) != "other"
            assert group["eps"] == pytest.approx(config.train.eps / (4 if in_block else 1))
    assert seen == {True, False}
