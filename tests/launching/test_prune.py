"""`scaling launch --prune` end to end on a tiny lr sweep, each command in a fresh process: a
hopeless learning rate is stopped at the rung with its checkpoint, shown as pruned, left alone
by the next launch, and trained on only when asked."""

import json
import os
import time

import pytest
from typer.testing import CliRunner

from scaling.cli import app

from ..conftest import checkpoint_step, scaling
from .conftest import SPEC

pytestmark = pytest.mark.slow
runner = CliRunner()

# one model at one budget, two learning rates: 1e-5 cannot catch up with 3e-3
SWEEP = (
    SPEC.replace("log_interval = 5", "log_interval = 1")
    + """
[[grid]]
kind = "grid"
apply_to = "fixed"
axes = {{"train.lr" = [1e-5, 3e-3]}}
"""
)


@pytest.fixture
def lr_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "spec.toml"
    spec.write_text(SWEEP.format(params="[3e4]", tokens=48 * 1024, source="builtin:python-stdlib"))
    runs = tmp_path / "RUNS"
    planned = runner.invoke(app, ["plan", str(spec), "--out", str(runs)])
    assert planned.exit_code == 0, planned.output
    lrs = {}
    for config in (runs / "runs").glob("*/config.json"):
        lrs[json.loads(config.read_text())["train"]["lr"]] = config.parent
    return runs, lrs


def result(run) -> dict:
    return json.loads((run / "result.json").read_text())


def test_a_pruned_run_keeps_its_checkpoint_and_waits_to_be_asked(lr_sweep):
    runs, lrs = lr_sweep
    env = dict(os.environ)
    done = scaling("launch", runs, "--prune", "--rungs", "0.5", "--no-progress", env=env)
    assert "pruned" in done.stdout, done.stdout
    hopeless = lrs[1e-5]
    pruned = result(hopeless)
    assert pruned["status"] == "pruned" and pruned["steps"] == 24
    assert "pruned at rung 1" in pruned["reason"]
    assert pruned["forecast"]["low"] > min(
        line["high"]
        for line in map(json.loads, (runs / "prune.jsonl").read_text().splitlines())
        if not line["pruned"]
    )
    assert pruned["flops"] == pytest.approx(0.5 * result(lrs[3e-3])["flops"], rel=0.02)
    assert checkpoint_step(hopeless) == 24
    assert result(lrs[3e-3])["status"] == "done"

    status = json.loads(scaling("status", runs, "--json", env=env).stdout)
    states = {row["run_id"]: row["state"] for row in status}
    assert states[hopeless.name] == "pruned"

    again = scaling("launch", runs, "--no-progress", env=env)
    assert "0 run(s) trained here" in again.stdout and "1 pruned" in again.stdout
    assert result(hopeless)["status"] == "pruned"

    scaling("launch", runs, "--resume-pruned", "--no-progress", env=env)
    resumed = result(hopeless)
    assert resumed["status"] == "done" and resumed["resumed_from_step"] == 24
    assert json.loads((hopeless / "result.pruned.json").read_text())["status"] == "pruned"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prune", "--rungs", "0.5,1.5"], "--rungs '0.5,1.5': increasing fractions"),
        (["--prune", "--rungs", "half"], "--rungs 'half': fractions of a run's steps"),
        (["--rungs", "0.5"], "--rungs: with --prune only"),
        (["--prune", "--resume-pruned"], "--prune and --resume-pruned: one or the other"),
        (["--prune", "--prune-level", "1.5"], "--prune-level 1.5: a coverage in (0, 1)"),
        (["--prune", "--executor", "slurm"], "--prune: not used by --executor slurm"),
        (["--prune", "--dry-run"], "--prune: not with --dry-run"),
    ],
)
def test_bad_prune_flags_are_one_line(lr_sweep, args, message):
    runs, _ = lr_sweep
    bad = scaling("launch", runs, *args, "--no-progress", env=dict(os.environ), check=False)
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert message in bad.stderr, bad.stderr
    assert not list((runs / "runs").glob("*/result.json"))


def test_a_sweep_that_does_not_log_every_step_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "spec.toml"
    every_fifth = SWEEP.replace("log_interval = 1", "log_interval = 5")
    spec.write_text(
        every_fifth.format(params="[3e4]", tokens=48 * 1024, source="builtin:python-stdlib")
    )
    runs = tmp_path / "RUNS"
    assert runner.invoke(app, ["plan", str(spec), "--out", str(runs)]).exit_code == 0
    bad = scaling("launch", runs, "--prune", "--no-progress", env=dict(os.environ), check=False)
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert "config.json: train.log_interval is 5; --prune forecasts from every step" in bad.stderr
    assert not list((runs / "runs").glob("*/result.json"))


def test_a_relaunch_reads_the_rungs_already_decided_and_skips_a_cut_line(lr_sweep):
    from scaling.launching.local import LaunchOptions
    from scaling.pruner import PruneOptions, Pruner

    runs, lrs = lr_sweep
    run_id = lrs[3e-3].name
    (runs / "prune.jsonl").write_text(
        json.dumps({"rung": 1, "fraction": 0.5, "run": run_id, "pruned": False})
        + '\n{"rung": 1, "fraction": 0.5, "ru'  # a launcher killed mid-line
    )
    pruner = Pruner(runs, LaunchOptions(progress=False), PruneOptions(rungs=(0.5,)))
    assert pruner.decided == {(0.5, run_id)}


def test_ctrl_c_after_a_rung_then_relaunching_decides_nothing_twice(tmp_path, monkeypatch):
    """Ctrl-C while the survivor of rung 1 trains on (500 steps, the rung at 100: the signal
    lands with ~390 steps to go however fast the machine), then `launch --prune` again: the
    pruned run stays as it was, the rung is not decided again, the survivor resumes from its
    checkpoint and finishes."""
    import signal

    from .test_launch import launcher

    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "spec.toml"
    spec.write_text(SWEEP.format(params="[3e4]", tokens=500 * 1024, source="builtin:python-stdlib"))
    runs = tmp_path / "RUNS"
    assert runner.invoke(app, ["plan", str(spec), "--out", str(runs)]).exit_code == 0
    lrs = {
        json.loads(config.read_text())["train"]["lr"]: config.parent
        for config in (runs / "runs").glob("*/config.json")
    }
    survivor, hopeless = lrs[3e-3], lrs[1e-5]
    first = launcher(runs, "--prune", "--rungs", "0.2", "--no-progress")
    log = runs / "prune.jsonl"
    deadline = time.monotonic() + 600
    while not (
        log.is_file()
        and len(log.read_text().splitlines()) == 2
        and any(s >= 110 for s in logged_steps(survivor))
    ):
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 130, output
    pruned = result(hopeless)
    assert pruned["status"] == "pruned" and pruned["steps"] == 100
    assert not (survivor / "result.json").exists()
    stopped_at = checkpoint_step(survivor)
    assert stopped_at >= 100

    env = dict(os.environ)
    scaling("launch", runs, "--prune", "--rungs", "0.2", "--no-progress", env=env)
    assert result(hopeless) == pruned
    assert result(survivor)["status"] == "done"
    assert result(survivor)["resumed_from_step"] == stopped_at
    decisions = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(d["run"] for d in decisions) == sorted([survivor.name, hopeless.name])


def logged_steps(run) -> list[int]:
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return []
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line]
