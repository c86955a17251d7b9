"""Stopping a run: a stop signal between the micro-batches of a step abandons the step (the
sampler and RNG rewound to its start) and checkpoints the step before, so a step of many
micro-batches never keeps a cluster's SIGKILL waiting, and the resumed run logs the losses of
one never stopped."""

import json
import signal

import pytest
import torch

from scaling.training.lifecycle import train
from scaling.training.trainer import Interrupted, Paused

from ..conftest import checkpoint_step, logged, spawn_training, wait_for
from .conftest import tiny_run

pytestmark = pytest.mark.slow

# 16 micro-batches of one window a step, dropout on: an abandoned step that left the sampler
# or the RNG where it stopped would show in the losses after the resume.
ACCUMULATED = dict(
    model={"dropout": 0.1},
    tokens=8 * 1024,
    micro_batch_size=1,
    log_interval=1,
    eval_interval=4,
    checkpoint_interval=1000,
)


def losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train_loss"], r.get("eval_loss")) for r in map(json.loads, lines)]


@pytest.fixture
def stop_at_forward():
    """Append SIGINT to ``signals`` when the model's ``n``-th training forward begins, as a
    signal handler would while that micro-batch runs."""
    handles = []

    def arm(signals: list[int], n: int) -> None:
        count = [0]

        def hook(module, args):
            if type(module).__name__ == "Transformer" and module.training:
                count[0] += 1
                if count[0] == n:
                    signals.append(signal.SIGINT)

        handles.append(torch.nn.modules.module.register_module_forward_pre_hook(hook))

    yield arm
    for handle in handles:
        handle.remove()


def test_a_stop_mid_step_abandons_it_and_the_resume_is_exact(tmp_path, stop_at_forward):
    config = tiny_run(**ACCUMULATED)
    assert config.train.accumulation(1) == 16
    reference = train(config, tmp_path / "reference", progress=False)
    run = tmp_path / "stopped"
    signals: list[int] = []
    stop_at_forward(signals, 4 * 16 + 3)  # the third micro-batch of step 5
    with pytest.raises(Interrupted, match="during step 5, after 3 of its 16 micro-batches"):
        train(config, run, progress=False, signals=signals)
    assert checkpoint_step(run) == 4
    assert [step for step, *_ in losses(run)] == [1, 2, 3, 4]
    resumed = train(config, run, progress=False)
    assert resumed["resumed_from_step"] == 4
    assert losses(run) == losses(tmp_path / "reference")
    assert resumed["final_eval_loss"] == reference["final_eval_loss"]


def test_a_stop_in_a_cooldown_branch_redoes_the_branch(tmp_path, stop_at_forward):
    config = tiny_run(**ACCUMULATED, schedule="wsd", branches=(0.5,))
    reference = train(config, tmp_path / "reference", progress=False)
    run = tmp_path / "stopped"
    signals: list[int] = []
    # 8 steps; the branch from step 3 is one cooldown step (forwards 49-64), before step 4
    stop_at_forward(signals, 3 * 16 + 5)
    with pytest.raises(Interrupted, match="cooldown branch from step 3"):
        train(config, run, progress=False, signals=signals)
    assert checkpoint_step(run) == 3
    resumed = train(config, run, progress=False)
    assert resumed["branches"] == reference["branches"]
    assert losses(run) == losses(tmp_path / "reference")


def test_sigterm_to_a_long_step_stops_within_it_and_resumes_exactly(tmp_path):
    """In a fresh process, under a real SIGTERM: 256 micro-batches a step. The signal lands
    (almost always) inside a step, which is abandoned; either way the checkpoint is of the last
    logged step and the resumed losses are those of a run never stopped."""
    config = tiny_run(
        tokens=100_000 * 4096,
        batch_tokens=256 * 64,
        micro_batch_size=1,
        log_interval=1,
        eval_interval=0,
        checkpoint_interval=1000,
    )
    config_path = tmp_path / "config.json"
    config_path.write_text(config.model_dump_json())
    stopped, reference = tmp_path / "stopped", tmp_path / "reference"

    process = spawn_training(config_path, stopped)
    wait_for(lambda: len(logged(stopped)) >= 2, what="two steps logged")
    process.send_signal(signal.SIGTERM)
    printed = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 130, printed
    at = checkpoint_step(stopped)
    assert at == logged(stopped)[-1]["step"], printed
    assert "of its 256 micro-batches" in printed or f"at step {at}" in printed, printed

    def run_to(out, step):
        process = spawn_training(config_path, out)
        wait_for(lambda: len(logged(out)) >= step, what=f"{out} at step {step}")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=300)

    run_to(stopped, at + 2)
    run_to(reference, at + 2)
    got = {line["step"]: line["train_loss"] for line in logged(stopped)}
    expected = {line["step"]: line["train_loss"] for line in logged(reference)}
    for step in range(1, at + 3):
        assert got[step] == pytest.approx(expected[step], rel=1e-6), step


def test_a_resume_keeps_a_corrupt_metrics_file_aside(tmp_path):
    config = tiny_run(tokens=14 * 1024, checkpoint_interval=10, log_interval=2, eval_interval=0)
    run = tmp_path / "run"
    train(config, run, progress=False)
    (run / "result.json").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:10] + "#garbage"  # step 4's line, before the checkpoint at step 10
    original = "\n".join(lines) + "\n"
    (run / "metrics.jsonl").write_text(original)
    with pytest.warns(UserWarning, match="line 2 is corrupt"):
        train(config, run, progress=False)
    assert (run / "metrics.jsonl.corrupt").read_text() == original  # nothing lost
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 6, 8, 10, 12, 14]  # before: [2], every line after the corrupt one gone


def test_a_pause_checkpoints_at_its_step_and_going_on_matches_a_run_never_paused(tmp_path):
    """The pruner's rungs: ``pause_at`` stops the run at that step with its checkpoint there;
    asked again it pauses at once; trained on without it, the losses are those of a run that
    never paused."""
    config = tiny_run(tokens=20 * 1024, log_interval=1, eval_interval=0, checkpoint_interval=100)
    reference = train(config, tmp_path / "reference", progress=False)
    run = tmp_path / "paused"
    with pytest.raises(Paused, match="paused at step 7"):
        train(config, run, progress=False, pause_at=7)
    assert checkpoint_step(run) == 7
    assert json.loads((run / "stopped.json").read_text())["step"] == 7
    assert not (run / "result.json").exists()
    with pytest.raises(Paused, match="paused at step 7 \\(asked to pause at 5\\)"):
        train(config, run, progress=False, pause_at=5)  # already past: nothing trained
    assert [step for step, *_ in losses(run)] == list(range(1, 8))
    done = train(config, run, progress=False)
    assert done["status"] == "done" and done["resumed_from_step"] == 7
    assert losses(run) == losses(tmp_path / "reference")
    assert done["final_eval_loss"] == reference["final_eval_loss"]
