"""`scaling fit --audit`: Approach 3 refitted under the choices a fit makes, the answers'
spread beside the bootstrap intervals, and a verdict when the spread is the wider."""

import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.fitting import prepare_points
from scaling.fitting.audit import Audit, Choice, audit

from .conftest import CHINCHILLA, isoflop_points

runner = CliRunner()


@pytest.mark.slow  # eight multistart fits
def test_on_points_of_a_known_law_every_choice_finds_it():
    points = prepare_points(isoflop_points(noise=0.002), source="truth")
    result = audit(points, 1e22, bootstrap_samples=20)
    kinds = [c.kind for c in result.choices]
    assert kinds.count("objective") == 4 and kinds.count("starts") == 2
    assert kinds.count("outliers") == 2 and kinds.count("budgets") == 7
    assert kinds[0] == "reference" and kinds[-1] == "approach"
    truth_a = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
    for choice in result.choices:
        assert not choice.note, choice
        assert choice.a == pytest.approx(truth_a, abs=0.02), choice.choice
    # without run ids there is no bootstrap by runs, and the audit says why
    assert set(result.intervals) == {"points", "budgets"} and "run_id" in result.notes["runs"]
    low, high = result.spread()["a"]
    assert low <= result.choices[0].a <= high
    assert json.loads(json.dumps(result.to_dict()))["compute"] == 1e22


def test_the_verdict_compares_the_spread_with_the_points_interval():
    def made(a_values, interval):
        choices = [
            Choice(str(a), "objective", a=a, b=1 - a, params=1e9 * (1 + a), tokens=1e10, loss=2)
            for a in a_values
        ]
        intervals = {"points": {"a": interval, "params": [1.4e9, 1.6e9]}}
        return Audit(1e21, choices, intervals, 0.95)

    narrow = made([0.50, 0.51], [0.45, 0.55])
    assert narrow.verdicts() == []
    wide = made([0.40, 0.60], [0.45, 0.55])
    (verdict,) = wide.verdicts()
    assert "move a by 0.200" in verdict and "(0.100)" in verdict
    assert math.isclose(wide.spread()["params"][1], 1.6e9)


def test_bad_audits_are_one_line(tmp_path):
    table = tmp_path / "points.csv"
    isoflop_points().to_csv(table, index=False)
    for args, message in (
        (["--law", "isoflop"], "--audit refits Approach 3 (--law parametric), not --law isoflop"),
        (["--out", str(tmp_path / "x.json")], "--audit writes no fit file"),
        (["--compute", "-1"], "--compute"),
    ):
        result = runner.invoke(app, ["fit", str(table), "--audit", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_audit_of_epoch_ais_chinchilla_points_in_a_fresh_process():
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "fit", "builtin:chinchilla", "--audit",
         "--compute", "5.76e23", "--bootstrap", "30", "--json"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    by_name = {c["choice"]: c for c in result["choices"]}
    reference = result["choices"][0]
    assert reference["kind"] == "reference" and reference["n_points"] == 245
    # dropping Epoch AI's outliers moves a by several hundredths (Li et al.'s observation)
    dropped = by_name["drop the 13 worst points (5%)"]
    assert dropped["n_points"] == 232 and abs(dropped["a"] - reference["a"]) > 0.02
    assert sum(c["kind"] == "budgets" for c in result["choices"]) == 21
    assert set(result["bootstrap_intervals"]) == {"points", "budgets"}
    assert result["verdicts"]  # the choices move a further than the points' interval
