"""Faults an operator meets, each reproduced: a damaged or incomplete checkpoint, a full disk,
SIGTERM to the launcher, a corrupt result.json, stale and foreign claims, an edited run id,
and the thread count a run trained with. Nothing the runs wrote is lost, and every message
is one line."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.launching import state
from scaling.rundir import RunDir, RunsDir
from scaling.training.lifecycle import train
from tests.conftest import spawn
from tests.launching.conftest import SPEC
from tests.training.conftest import tiny_run

runner = CliRunner()


def one_line_exit_2(result, message):
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.fixture
def trained(tmp_path, shared_cache):
    """A finished 40-step run whose checkpoint holds step 30 and the previous one step 20."""
    config = tiny_run(checkpoint_interval=10, eval_interval=0)
    run = RunDir(tmp_path / "run")
    result = train(config, run.path, progress=False)
    assert result["status"] == "done"
    assert json.loads((run.checkpoint / "state.json").read_text())["step"] == 30
    assert json.loads((run.path / "checkpoint.old" / "state.json").read_text())["step"] == 20
    return config, run, result


@pytest.fixture
def shared_cache(tmp_path_factory):
    from tests.training.conftest import DATA

    cache = tmp_path_factory.getbasetemp() / "reliability-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCALING_CACHE", str(cache))
        from scaling.data import prepare_data

        prepare_data(DATA, progress=False)
        yield cache


@pytest.mark.slow
def test_a_damaged_shard_resumes_from_the_previous_checkpoint(trained):
    config, run, finished = trained
    run.result_path.unlink()  # train the last steps again from the checkpoint
    shard = next(p for p in run.checkpoint.glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = train(config, run.path, progress=False)
    assert any(
        "damaged checkpoint" in str(w.message) and shard.name in str(w.message) for w in caught
    )
    assert again["status"] == "done" and again["resumed_from_step"] == 20
    assert again["final_eval_loss"] == pytest.approx(finished["final_eval_loss"], rel=1e-6)
    assert [r["step"] for r in run.read_metrics()] == sorted(
        {r["step"] for r in run.read_metrics()}
    )


@pytest.mark.slow
def test_no_loadable_checkpoint_changes_nothing_and_says_so(trained, tmp_path):
    config, run, _ = trained
    run.result_path.unlink()
    config_path = tmp_path / "config.json"
    config_path.write_text(run.config_path.read_text())
    before = run.metrics_path.read_text()
    (run.checkpoint / "state.json").unlink()  # incomplete: no state.json
    shutil.rmtree(run.path / "checkpoint.old")
    result = runner.invoke(app, ["train", str(config_path), "--out", str(run.path)])
    one_line_exit_2(result, "an incomplete checkpoint (no state.json)")
    assert run.metrics_path.read_text() == before and run.checkpoint.is_dir()


@pytest.mark.slow
def test_every_checkpoint_damaged_is_one_line(trained, tmp_path):
    config, run, _ = trained
    run.result_path.unlink()
    before = run.metrics_path.read_text()
    for folder in (run.checkpoint, run.path / "checkpoint.old"):
        next(folder.glob("*.distcp")).unlink()
    config_path = tmp_path / "config.json"
    config_path.write_text(run.config_path.read_text())
    result = runner.invoke(app, ["train", str(config_path), "--out", str(run.path)])
    one_line_exit_2(result, "loads (")
    assert "missing" in result.output and run.metrics_path.read_text() == before


def test_a_restart_keeps_what_the_earlier_start_logged(tmp_path):
    run = RunDir(tmp_path)
    run.append_metrics({"step": 5, "tokens": 5120, "train_loss": 3.0})
    run.start_metrics(resume_step=None)
    assert run.read_metrics() == []
    assert json.loads((tmp_path / "metrics.jsonl.restarted").read_text())["step"] == 5


def test_disk_full_while_planning_is_one_line_and_the_next_attempt_works(tmpfs, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        SPEC.format(params="[3e4, 6e4, 1.2e5]", tokens=30720, source="builtin:python-stdlib")
    )
    filler = tmpfs / "filler"
    with filler.open("wb", buffering=0) as handle:  # fill the disk to its last byte
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    runs = tmpfs / "RUNS"
    result = runner.invoke(app, ["plan", str(spec), "--out", str(runs)])
    one_line_exit_2(result, "no space left on the device")
    assert not list(tmpfs.rglob(".*.tmp"))  # no half-written file left behind
    filler.unlink()
    again = runner.invoke(app, ["plan", str(spec), "--out", str(runs)])
    assert again.exit_code == 0, again.output
    assert len(RunsDir(runs).run_ids()) == 3


def _plan(tmp_path, params="[3e4]", tokens=30720):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(params=params, tokens=tokens, source="builtin:python-stdlib"))
    runs = tmp_path / "RUNS"
    result = runner.invoke(app, ["plan", str(spec), "--out", str(runs)])
    assert result.exit_code == 0, result.output
    return RunsDir(runs)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "status 'list'"),
        (
            '{"status": "finished"}',
            "status 'finished'; must be one of done, pruned, failed, diverged",
        ),
    ],
)
def test_a_corrupt_result_is_one_line_for_status_and_launch(tmp_path, text, message):
    runs = _plan(tmp_path)
    (run_id,) = runs.run_ids()
    runs.run(run_id).result_path.write_text(text)
    for command in (["status", str(runs.path)], ["launch", str(runs.path), "--no-progress"]):
        result = runner.invoke(app, command)
        one_line_exit_2(result, message)
        assert f"{run_id}/result.json" in result.output


def test_an_edited_run_id_never_leaves_the_runs_directory(tmp_path):
    runs = _plan(tmp_path)
    plan = runs.plan_path.read_text().splitlines()
    run_id = plan[1].split(",")[0]
    runs.plan_path.write_text("\n".join([plan[0], plan[1].replace(run_id, "../../victim")]) + "\n")
    for command in (["launch", str(runs.path), "--no-progress"], ["status", str(runs.path)]):
        one_line_exit_2(runner.invoke(app, command), "run_id '../../victim' is not a run id")
    assert not (tmp_path / "victim").exists() and not (runs.path.parent / "victim").exists()


@pytest.mark.slow
def test_a_claim_whose_owner_died_on_this_host_is_stale_at_once(tmp_path):
    run = RunDir(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.claim_path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    assert state.run_state(run, stale_after=3600) == "stale"
    run.claim_path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    assert state.run_state(run, stale_after=3600) == "running"
    run.claim_path.write_text(json.dumps({"host": "elsewhere", "pid": dead.pid}))
    assert state.run_state(run, stale_after=3600) == "running"  # another host: the heartbeat


@pytest.mark.slow
def test_the_closing_line_counts_what_is_not_done(tmp_path):
    runs = _plan(tmp_path)
    (run_id,) = runs.run_ids()
    runs.run(run_id).claim_path.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    result = runner.invoke(app, ["launch", str(runs.path), "--no-progress"])
    assert "0 of 1 selected done; not done: 1 running elsewhere" in result.output
    assert result.exit_code == 0  # held by a live launcher elsewhere: in good hands
    # a fresh claim whose owner died on this host: taken over at once, and trained
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = {"host": socket.gethostname(), "pid": dead.pid}
    runs.run(run_id).claim_path.write_text(json.dumps(claim))
    result = runner.invoke(app, ["launch", str(runs.path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "1 run(s) trained here; 1 of 1 selected done: all done" in result.output


@pytest.mark.slow
def test_sigterm_to_the_launcher_checkpoints_releases_and_resumes(tmp_path, shared_cache):
    # 100,000 steps: the run never ends here, so each signal lands while it trains
    runs = _plan(tmp_path, params="[6e4]", tokens=1024 * 100_000)
    (run_id,) = runs.run_ids()
    run = runs.run(run_id)

    def launch_and_signal_after(lines: int, sig: int) -> tuple[int, str]:
        launcher = spawn(
            [sys.executable, "-m", "scaling", "launch", str(runs.path), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 300
        while len(run.read_metrics_prefix()) < lines:  # waiting on an event: lines logged
            assert time.monotonic() < deadline, f"fewer than {lines} lines logged in 300 s"
            time.sleep(0.1)
        launcher.send_signal(sig)
        output, _ = launcher.communicate(timeout=120)
        return launcher.returncode, output

    code, output = launch_and_signal_after(3, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, output
    assert "launch again to resume" in output
    stopped_at = json.loads((run.checkpoint / "state.json").read_text())["step"]
    assert stopped_at >= 15 and not run.claim_path.exists() and run.read_result() is None
    kept = run.read_metrics_prefix()
    code, output = launch_and_signal_after(len(kept) + 2, signal.SIGINT)
    assert code == 130, output
    # resumed: the first launch's lines are kept as written and the steps go on past them
    again = run.read_metrics_prefix()
    assert again[: len(kept)] == kept and again[len(kept)]["step"] > stopped_at


@pytest.mark.slow
def test_a_result_records_the_thread_count_that_made_it(tmp_path, shared_cache):
    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train(tiny_run(tokens=10 * 1024), tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert one["threads"] == 1
    two = train(tiny_run(tokens=10 * 1024), Path(tmp_path / "two"), progress=False)
    assert two["threads"] == threads
    # equal to rounding, not bit for bit, when the count differs (README: CPU speed)
    assert two["final_eval_loss"] == pytest.approx(one["final_eval_loss"], rel=0.02)


@pytest.mark.slow
def test_disk_full_while_training_is_one_line(tmpfs, tmp_path, shared_cache):
    config = tmp_path / "config.json"
    config.write_text(tiny_run(checkpoint_interval=5, eval_interval=0).model_dump_json())
    with (tmpfs / "filler").open("wb", buffering=0) as handle:  # leave about 200 kB
        handle.write(b"\0" * (4 * 1024 * 1024 - 200 * 1024))
    result = runner.invoke(app, ["train", str(config), "--out", str(tmpfs / "run")])
    one_line_exit_2(result, "no space left on the device")
    lines = RunDir(tmpfs / "run").read_metrics()  # what was logged is intact
    assert lines and all("step" in line for line in lines)


@pytest.mark.slow
def test_ctrl_c_as_training_starts_is_one_line(tmp_path, shared_cache):
    config = tmp_path / "config.json"
    config.write_text(tiny_run().model_dump_json())
    process = spawn(
        [sys.executable, "-m", "scaling", "train", str(config), "--no-progress"],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # any moment will do: early, the interpreter is still importing
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode in (0, 130), err  # 0: it had finished already on a fast machine
    assert "Traceback" not in err
