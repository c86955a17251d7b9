import json

import numpy as np
from typer.testing import CliRunner

from scaling.cli import app
from scaling.fitting import Law

from .conftest import isoflop_points

runner = CliRunner()


def write_points(path, noise=0.005):
    df = isoflop_points(noise=noise).rename(columns={"params": "N", "flops": "C"})
    df.drop(columns=["tokens", "budget"]).to_csv(path, index=False)
    return path


def test_fit_json_and_predict(tmp_path):
    csv = write_points(tmp_path / "points.csv")
    out = tmp_path / "fits" / "p.json"
    result = runner.invoke(
        app,
        [
            "fit",
            str(csv),
            "--params-col",
            "N",
            "--flops-col",
            "C",
            "--bootstrap",
            "30",
            "--holdout",
            "largest",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["law"] == "parametric"
    assert set(report["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert set(report["intervals"]) == set(report["params"])
    assert 0.35 < report["a"] < 0.55 and abs(report["a"] + report["b"] - 1) < 1e-12
    assert report["n_points"] == 63 and report["excluded"] == []
    assert "backtest" in report["details"]
    law = Law.from_json(out)
    result = runner.invoke(app, ["predict", "--fit", str(out), "--compute", "1e23", "--json"])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.output)
    assert prediction["params"] == law.predict(compute=1e23)["params"]
    assert set(prediction["intervals"]) >= {"params", "tokens", "loss"}
    table = runner.invoke(app, ["predict", str(out), "--params", "1e9"])
    assert table.exit_code == 0 and "tokens_per_param" in table.output


def test_fit_all_writes_what_the_points_support(tmp_path):
    csv = write_points(tmp_path / "points.csv")
    result = runner.invoke(
        app,
        [
            "fit",
            str(csv),
            "--params-col",
            "N",
            "--flops-col",
            "C",
            "--law",
            "all",
            "--out",
            str(tmp_path / "fits"),
        ],
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "fits").iterdir())
    assert written == ["isoflop.json", "kaplan.json", "parametric.json"]
    assert "skipped hparams" in result.output


def test_fit_a_runs_directory_then_predict_with_hparams(tmp_path):
    from tests.fitting.test_laws import _hparam_points

    runs = tmp_path / "RUNS"
    runs.mkdir()
    df = _hparam_points()
    df["run_id"] = [f"r{i}" for i in range(len(df))]
    df.to_csv(runs / "plan.csv", index=False)
    for row in df.itertuples():
        (runs / "runs" / row.run_id).mkdir(parents=True)
        (runs / "runs" / row.run_id / "result.json").write_text(
            json.dumps({"run_id": row.run_id, "status": "done", "final_eval_loss": row.loss})
        )
    result = runner.invoke(app, ["fit", str(runs), "--law", "hparams"])
    assert result.exit_code == 0, result.output
    assert (runs / "fits" / "hparams.json").is_file()
    iso = isoflop_points()
    iso.to_csv(tmp_path / "iso.csv", index=False)
    result = runner.invoke(
        app,
        [
            "fit",
            str(tmp_path / "iso.csv"),
            "--law",
            "isoflop",
            "--out",
            str(runs / "fits" / "isoflop.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(runs), "--compute", "1e22", "--json"])
    assert result.exit_code == 0, result.output
    prediction = json.loads(result.output)
    assert (
        prediction["lr"] == np.float64(0.3 * 1e22**-0.1)
        or abs(prediction["lr"] / (0.3 * 1e22**-0.1) - 1) < 1e-5
    )
    assert "params" in prediction and "batch_tokens" in prediction


def test_bad_inputs_exit_2_and_write_nothing(tmp_path):
    csv = write_points(tmp_path / "points.csv")
    nan_csv = tmp_path / "nan.csv"
    nan_csv.write_text("params,tokens,loss\n1e8,1e9,3.0\n2e8,1e9,nan\n")
    text_csv = tmp_path / "text.csv"
    text_csv.write_text("params,tokens,loss\n1e8,1e9,3.0\n2e8,1e9,abc\n")
    one_budget = tmp_path / "one.csv"
    isoflop_points(budgets=[1e19]).to_csv(one_budget, index=False)
    few = tmp_path / "few.csv"
    isoflop_points().head(4).to_csv(few, index=False)
    out = tmp_path / "fits" / "x.json"
    cases = [
        ([str(tmp_path / "none.csv")], "none.csv: no such file"),
        ([str(nan_csv)], "'loss' has NaN or non-positive values in rows [2]"),
        ([str(text_csv)], "column 'loss', row 2: 'abc' is not a number"),
        (
            [str(csv), "--params-col", "N", "--flops-col", "C", "--bootstrap", "-5"],
            "--bootstrap -5",
        ),
        (
            [str(csv), "--params-col", "N", "--flops-col", "C", "--drop-highest", "-1"],
            "--drop-highest -1",
        ),
        (
            [str(csv), "--params-col", "N", "--flops-col", "C", "--budget-tolerance", "-1"],
            "--budget-tolerance -1.0: must be 0 or more",
        ),
        (
            [str(csv), "--params-col", "N", "--flops-col", "C", "--flops-per-param-token", "0"],
            "--flops-per-param-token 0.0: must be a positive number",
        ),
        (
            [str(csv), "--params-col", "N", "--flops-col", "N"],
            "column 'N' is given for both params and flops",
        ),
        ([str(csv), "--params-col", "N", "--flops-col", "C", "--level", "95"], "--level 95.0"),
        (
            [str(csv), "--params-col", "N", "--flops-col", "C", "--bootstrap-unit", "runz"],
            "--bootstrap-unit 'runz': must be one of points, runs, budgets",
        ),
        ([str(csv)], "need two of the columns params, tokens and flops"),
        ([str(csv), "--params-col", "N", "--flops-col", "C", "--loss-col", "L"], "no column 'L'"),
        ([str(one_budget), "--law", "isoflop"], "at least 2 budgets"),
        ([str(few)], "at least 6 points"),
        ([str(csv), "--params-col", "N", "--flops-col", "C", "--law", "magic"], "--law 'magic'"),
        (
            [str(csv), "--params-col", "N", "--flops-col", "C", "--exclude", "loss >>"],
            "not a valid query",
        ),
        ([str(csv), "--params-col", "N", "--flops-col", "C", "--pin", "E"], "--pin 'E'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["fit", *args, "--out", str(out)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert not out.exists()
    result = runner.invoke(app, ["predict", "--fit", str(out), "--compute", "1e20"])
    assert result.exit_code == 2 and "no such fit file" in result.output


def test_level_sets_the_intervals_and_the_fit_file_keeps_the_optima(tmp_path):
    csv = write_points(tmp_path / "points.csv", noise=0.01)
    common = ["fit", str(csv), "--params-col", "N", "--flops-col", "C", "--bootstrap", "40"]
    wide = json.loads(runner.invoke(app, [*common, "--json"]).output)
    out = tmp_path / "p80.json"
    narrow = json.loads(
        runner.invoke(app, [*common, "--level", "0.8", "--out", str(out), "--json"]).output
    )
    for name in ("E", "alpha"):
        assert np.diff(narrow["intervals"][name]) < np.diff(wide["intervals"][name])
    # every optimum of the table has its interval, and the fit file keeps the table it printed
    assert all("intervals" in row and "params" in row["intervals"] for row in narrow["optima"])
    law = Law.from_json(out)
    assert law.details_["compute_optimal"] == narrow["optima"]
    assert law.level == 0.8
    # predictions from the file use its level, unless told another
    at = law.predict(compute=1e23)
    result = runner.invoke(app, ["predict", "--fit", str(out), "--compute", "1e23", "--json"])
    assert json.loads(result.output)["intervals"]["loss"] == at["intervals"]["loss"]
    wider = law.predict(compute=1e23, level=0.95)["intervals"]["loss"]
    assert wider[1] - wider[0] > at["intervals"]["loss"][1] - at["intervals"]["loss"][0]


def test_data_constrained_from_the_cli_with_a_given_base(tmp_path):
    from scaling.fitting import ParametricLaw

    from .conftest import CHINCHILLA
    from .test_laws import TRUTH_DC, _repeated_points

    csv = tmp_path / "repeated.csv"
    _repeated_points(TRUTH_DC).to_csv(csv, index=False)
    base = tmp_path / "base.json"
    ParametricLaw.from_params(CHINCHILLA).to_json(base)
    args = ["fit", str(csv), "--law", "data-constrained", "--base", str(base), "--json"]
    report = json.loads(runner.invoke(app, args).output)
    assert abs(report["params"]["R_N_star"] / 5.3 - 1) < 1e-4
    assert report["options"]["base"]["alpha"] == CHINCHILLA["alpha"]
    tied = runner.invoke(app, ["fit", str(csv), "--law", "data-constrained", "--tie-exponents"])
    assert tied.exit_code == 0, tied.output
    # an option this law does not take is refused, not ignored; --base must be a parametric fit
    cases = [
        (["--law", "data-constrained", "--optimum", "parametric"], "--optimum 'parametric': the"),
        (["--law", "kaplan", "--loss", "l2"], "--loss 'l2': the kaplan law has no such setting"),
        (["--law", "isoflop", "--pin", "E=1.7"], "--pin {'E': 1.7}: the isoflop law"),
        (["--law", "data-constrained", "--base", str(csv)], "not a fit file"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["fit", str(csv), *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
