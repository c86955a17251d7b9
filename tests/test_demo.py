import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaling import results
from scaling.cli import app
from scaling.fitting import Law


@pytest.mark.parametrize(
    "args, message",
    [
        (["--spec", "missing.toml"], "missing.toml: no such file"),
        (["--spec", "bad.toml"], "bad.toml: sweep.bogus: unknown key"),
        (["--tiny", "--spec", "bad.toml"], "--tiny shrinks the packaged demo spec"),
    ],
)
def test_bad_demo_arguments_are_one_line_and_exit_2(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text('[sweep]\nname = "x"\nbogus = 1\n')
    result = CliRunner().invoke(app, ["demo", "--out", "runs", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--tiny", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "holdout at" in result.output and "predicted" in result.output
    frame = results.load(out)
    assert len(frame) >= 6 and set(frame["status"]) == {"done"}
    law = Law.from_json(out / "fits" / "parametric.json")
    assert law.n_points == len(frame) and law.samples
    summary = json.loads((out / "summary.json").read_text())
    assert summary["measured_status"] == "done"
    assert summary["budget"] == pytest.approx(4 * max(summary["fitted_budgets"]))
    assert summary["measured_loss"] > 0 and summary["predicted_loss"] > 0
    low, high = summary["predicted_interval"]
    assert low <= summary["predicted_loss"] <= high
    # the holdout run is never among the fitted points
    assert summary["holdout_run"] not in set(frame["run_id"])
    for name in (
        "isoflop_profiles",
        "allocation",
        "loss_curves",
        "parametric_contours",
        "residuals",
        "holdout",
    ):
        path = out / "figures" / f"{name}.png"
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000, name
    # a second run resumes: nothing is trained again, the same summary comes back
    again = CliRunner().invoke(
        app, ["demo", "--tiny", "--out", str(out), "--no-progress", "--json"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["measured_loss"] == summary["measured_loss"]


def test_demo_spec_is_the_packaged_one_or_the_given_file(tmp_path):
    from scaling.demo import demo_spec

    packaged = demo_spec(tiny=False)
    assert packaged.data.tokenizer == "bytes" and packaged.grid[0].budgets == [1e11, 3e11, 1e12]
    root = Path(__file__).parents[1]
    shipped = (root / "sweeps" / "demo.toml").read_text()
    assert shipped == (root / "scaling" / "specs" / "demo.toml").read_text()
    mine = tmp_path / "mine.toml"
    mine.write_text(shipped.replace("lr = 1e-2", "lr = 3e-3"))
    assert demo_spec(tiny=False, path=mine).train.lr == 3e-3
