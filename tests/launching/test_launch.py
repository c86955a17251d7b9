"""The local launcher end to end on tiny plans (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.config import RunConfig, run_id_of
from scaling.launching import state
from scaling.rundir import RunDir

from ..conftest import spawn
from .conftest import run_ids

pytestmark = pytest.mark.slow
runner = CliRunner()


def launcher(runs, *args):
    return spawn(
        [sys.executable, "-m", "scaling", "launch", str(runs), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )


def steps_of(run_dir):
    return [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_plan_runs_to_done_each_run_once(plan_dir):
    runs = plan_dir()
    process = launcher(runs, "--max-parallel", "2")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    for run_id in run_ids(runs):
        run_dir = runs / "runs" / run_id
        assert json.loads((run_dir / "result.json").read_text())["status"] == "done"
        steps = steps_of(run_dir)
        assert steps == sorted(set(steps))  # strictly increasing, none twice
        assert not (run_dir / "claim.json").exists()
    status = runner.invoke(app, ["status", str(runs), "--json"])
    assert {row["state"] for row in json.loads(status.output)} == {"done"}
    again = launcher(runs)
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "0 run(s) trained here" in output


def test_kill_9_of_the_launcher_then_resume(plan_dir):
    # 100,000 steps: the run never ends here, so the kill and the Ctrl-C below always land
    # while it trains (the exact losses after a kill -9 are the trainer tests' concern)
    runs = plan_dir(params="[6e4]", tokens=1024 * 100_000)
    (run_id,) = run_ids(runs)
    run_dir = runs / "runs" / run_id
    first = launcher(runs, "--stale-after", "2")
    checkpoint = run_dir / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while not (checkpoint.is_file() and json.loads(checkpoint.read_text())["step"] >= 10):
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(3)  # the training child died with its launcher; its claim goes stale
    assert state.run_state(RunDir(run_dir), stale_after=2) == "stale"
    killed_at = json.loads(checkpoint.read_text())["step"]
    kept = [
        line
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["step"] <= killed_at
    ]
    second = launcher(runs, "--stale-after", "2")
    wait_for_logged_step(run_dir, killed_at + 10)
    second.send_signal(signal.SIGINT)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 130, output
    # the second launcher took the stale run over and resumed it from its checkpoint
    after = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert after[: len(kept)] == kept
    assert json.loads(checkpoint.read_text())["step"] > killed_at


def test_two_launchers_share_the_work(plan_dir):
    runs = plan_dir(params="[3e4, 4e4, 6e4]")
    a, b = launcher(runs), launcher(runs)
    out_a, _ = a.communicate(timeout=600)
    out_b, _ = b.communicate(timeout=600)
    assert a.returncode == b.returncode == 0, out_a + out_b
    trained_a = {line.split(":")[0] for line in out_a.splitlines() if line.endswith(": done")}
    trained_b = {line.split(":")[0] for line in out_b.splitlines() if line.endswith(": done")}
    assert not trained_a & trained_b
    assert trained_a | trained_b == set(run_ids(runs))
    for run_id in run_ids(runs):
        result = json.loads((runs / "runs" / run_id / "result.json").read_text())
        assert result["status"] == "done" and result["resumed_from_step"] is None


def test_a_failing_run_is_marked_and_retried(plan_dir, tmp_path):
    runs = plan_dir(params="[3e4, 6e4]")
    # one run of the plan reads a corpus that is not there: its config, its id (the hash of
    # the config) and its plan.csv row changed together, as replanning would
    planned_id = run_ids(runs)[0]
    config = json.loads((runs / "runs" / planned_id / "config.json").read_text())
    config["data"]["source"] = str(tmp_path / "no-such-corpus")
    bad_id = config["run_id"] = run_id_of(RunConfig.model_validate(config))
    (runs / "runs" / planned_id).rename(runs / "runs" / bad_id)
    (runs / "runs" / bad_id / "config.json").write_text(json.dumps(config))
    plan = (runs / "plan.csv").read_text()
    (runs / "plan.csv").write_text(plan.replace(planned_id, bad_id))
    process = launcher(runs, "--retries", "1")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output
    result = json.loads((runs / "runs" / bad_id / "result.json").read_text())
    assert result["status"] == "failed" and "does not exist" in result["error"]
    assert (runs / "runs" / bad_id / "result.failed-1.json").is_file()  # the first attempt
    (good_id,) = set(run_ids(runs)) - {bad_id}
    assert json.loads((runs / "runs" / good_id / "result.json").read_text())["status"] == "done"


def test_a_stale_claim_is_taken_over(plan_dir):
    runs = plan_dir(params="[3e4]")
    (run_id,) = run_ids(runs)
    run_dir = runs / "runs" / run_id
    (run_dir / "claim.json").write_text('{"host": "gone", "pid": 1}')
    past = time.time() - 1000
    os.utime(run_dir / "claim.json", (past, past))
    assert state.run_state(RunDir(run_dir), stale_after=120) == "stale"
    assert not state.try_claim(
        RunDir(run_dir), stale_after=2000
    )  # fresh enough under a long timeout
    process = launcher(runs)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert json.loads((run_dir / "result.json").read_text())["status"] == "done"


def test_ctrl_c_checkpoints_and_launching_again_resumes(plan_dir):
    # 100,000 steps: far more than any machine trains before each Ctrl-C below arrives, so the
    # test waits on logged steps and never races the run's end (a 200-step run once finished
    # before its Ctrl-C on a loaded machine).
    runs = plan_dir(params="[6e4]", tokens=1024 * 100_000)
    (run_id,) = run_ids(runs)
    run_dir = runs / "runs" / run_id
    first = launcher(runs)
    wait_for_logged_step(run_dir, 15)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 130 and "launch again to resume" in output, output
    stopped_at = json.loads((run_dir / "checkpoint" / "state.json").read_text())["step"]
    assert stopped_at >= 15 and not (run_dir / "claim.json").exists()
    before = (run_dir / "metrics.jsonl").read_text().splitlines()

    second = launcher(runs)
    wait_for_logged_step(run_dir, stopped_at + 10)
    second.send_signal(signal.SIGINT)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 130, output
    after = (run_dir / "metrics.jsonl").read_text().splitlines()
    # resumed, not restarted: the lines up to the checkpoint are the first launch's own (a
    # restart would rewrite them, with other times), and the steps go on from there
    kept = [line for line in before if json.loads(line)["step"] <= stopped_at]
    assert after[: len(kept)] == kept
    steps = [json.loads(line)["step"] for line in after]
    assert steps == sorted(set(steps)) and steps[len(kept)] > stopped_at
    assert json.loads((run_dir / "checkpoint" / "state.json").read_text())["step"] > stopped_at


def wait_for_logged_step(run_dir, step: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if max(steps_of(run_dir), default=0) >= step:
                return
        except (FileNotFoundError, json.JSONDecodeError):  # not yet there, or a line half written
            pass
        time.sleep(0.1)
    raise AssertionError(f"{run_dir}: no step {step} logged within {timeout} s")


def test_select_runs_by_id_budget_query_and_order():
    import pandas as pd

    from scaling.config import ConfigError
    from scaling.launching.local import LaunchOptions, select_runs

    plan = pd.DataFrame(
        {
            "run_id": ["aa11", "bb22", "cc33"],
            "budget": [1e15, 1e16, 1e16],
            "flops": [1e15, 1e16, 1e16],
            "params": [1e6, 2e6, 4e6],
        }
    )
    assert select_runs(plan, LaunchOptions()) == ["aa11", "bb22", "cc33"]
    assert select_runs(plan, LaunchOptions(order="large-first")) == ["cc33", "bb22", "aa11"]
    assert select_runs(plan, LaunchOptions(only="bb,cc")) == ["bb22", "cc33"]
    assert select_runs(plan, LaunchOptions(only="1e16", skip="cc33")) == ["bb22"]
    assert select_runs(plan, LaunchOptions(only="params > 1.5e6")) == ["bb22", "cc33"]
    with pytest.raises(ConfigError, match="selection=.params >>> 2.: not run ids"):
        select_runs(plan, LaunchOptions(only="params >>> 2"))
