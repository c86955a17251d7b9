"""A fit file is checked when it is read: whatever a law could not answer with is one line
naming the file and the field, the same for `scaling predict`, `scaling plot`, `scaling fit
--base` and the planner's fit: rules (#26). Files from earlier formats still load."""

import json
import subprocess
import sys

import numpy as np
import pytest

from scaling.fitting import FitError, Law, ParametricLaw
from scaling.fitting.hparams import HparamsLaw
from scaling.fitting.isoflop import fit_isoflop
from scaling.fitting.kaplan import KaplanLaw
from scaling.fitting.moe import MoELaw

from .conftest import CHINCHILLA, isoflop_points


def parametric_file() -> dict:
    law = ParametricLaw.from_params(
        CHINCHILLA, samples=[CHINCHILLA, {**CHINCHILLA, "A": 420.0}], bootstrap_samples=2
    )
    return json.loads(law.to_json())


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep(data: dict) -> str:
    """The file with its details nested 5,000 levels deep (Python's parser recurses)."""
    text = json.dumps({**data, "details": {}})
    return text.replace('"details": {}', f'"details": {{"x": {nested(5000)}}}')


def edited(change):
    def make() -> dict:
        data = parametric_file()
        change(data)
        return data

    return make


def put(where: str, key: str, value):
    def change(data):
        target = data
        for part in where.split("."):
            target = target[int(part)] if part.isdigit() else target[part]
        target[key] = value

    return edited(change)


CASES = [
    # before: "not a fit file ('params')"
    (edited(lambda d: d.pop("params")), "no 'params': not a fit file"),
    # before: these loaded, and predict printed nan with exit 0 or crashed on complex numbers
    (put("params", "alpha", float("nan")), "params.alpha: nan must be a finite number"),
    (put("params", "B", float("inf")), "params.B: inf must be a finite number"),
    (put("params", "E", None), "params.E: None must be a finite number"),
    (put("params", "alpha", "0.34"), "params.alpha: '0.34' must be a finite number"),
    (put("params", "beta", True), "params.beta: True must be a finite number"),
    (put("params", "A", -406.4), "params.A: -406.4 must be positive"),
    (put("params", "E", -1.69), "params.E: -1.69 must be positive"),
    (put("params", "alpha", -0.1), "params.alpha: -0.1 must be positive"),
    (edited(lambda d: d["params"].pop("beta")), "params: no 'beta'; the parametric law's are E,"),
    (edited(lambda d: d.update(params=[1.69])), "params: [1.69] must be an object of parameters"),
    (edited(lambda d: d.update(samples={"E": 1})), "samples: {'E': 1} must be a list of"),
    (put("samples.1", "A", -5.0), "samples[1].A: -5.0 must be positive"),
    (put("samples.0", "beta", float("nan")), "samples[0].beta: nan must be a finite number"),
    (edited(lambda d: d["samples"].__setitem__(0, "x")), "samples[0]: 'x' must be an object"),
    (edited(lambda d: d.update(options=[])), "options: [] must be an object of settings"),
    (put("options", "keep", "many"), "options.keep: 'many' must be a whole number"),
    (put("compute", "k", "six"), "compute.k: 'six' must be a positive number"),
    (put("compute", "how", "guessed"), "compute.how: 'guessed' must be one of constant"),
    (put("options", "bootstrap_samples", "x"), "options.bootstrap_samples: 'x' must be a whole"),
    (put("options", "tie_exponents", "yes"), "options.tie_exponents: 'yes' must be true or"),
    (put("options", "level", 5), "options: level=5: the interval's coverage"),
    (put("intervals", "E", "wide"), "intervals.E: 'wide' must be [low, high]"),
    (edited(lambda d: d.update(n_points="63")), "n_points: '63' must be a whole number"),
    (edited(lambda d: d.update(details=[])), "details: [] must be an object"),
]


@pytest.mark.parametrize("make, message", CASES)
def test_a_bad_field_is_one_line_naming_the_file_and_the_field(tmp_path, make, message):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(make()))
    with pytest.raises(FitError) as caught:
        Law.from_json(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert "\n" not in str(caught.value)


def test_deep_nesting_names_the_field(tmp_path):
    # before: a RecursionError from the JSON parser, a traceback
    path = tmp_path / "deep.json"
    path.write_text(deep(parametric_file()))
    with pytest.raises(FitError, match=f"^{path}: details: nested more than 64 levels deep"):
        Law.from_json(path)
    path.write_text(nested(5000))
    with pytest.raises(FitError, match="the file: nested more than 64 levels"):
        Law.from_json(path)


def test_each_law_checks_its_own_parameters(tmp_path):
    iso = json.loads(fit_isoflop(isoflop_points()).to_json())
    iso["details"]["budgets"][0]["parabola"] = "x"
    hparams = json.loads(HparamsLaw.from_params({"k_lr": 0.3}).to_json())
    moe = json.loads(MoELaw.from_params({**CHINCHILLA, "multiplier_8": -2.5}).to_json())
    kaplan = {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.0}
    cases = [
        (iso, "details: budgets[0].parabola: must be a list of 3 numbers"),
        ({**iso, "params": {**iso["params"], "k_N": -1.0}}, "params.k_N: -1.0 must be positive"),
        (hparams, "params: no 'e_lr' beside 'k_lr'"),
        ({**hparams, "params": {}}, "params: no 'k_lr' and 'e_lr' nor 'k_batch' and 'e_batch'"),
        (moe, "params.multiplier_8: -2.5 must be positive"),
        (json.loads(KaplanLaw.from_params(kaplan).to_json()), "params.alpha_D: 0.0 must be"),
    ]
    for data, message in cases:
        path = tmp_path / f"{data['law']}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(FitError, match=f"^{path}: {message}".replace("[", "\\[")):
            Law.from_json(path)


def test_earlier_and_minimal_fit_files_still_load():
    data = parametric_file()
    minimal = {"law": "parametric", "params": data["params"]}  # every other field optional
    assert Law.from_dict(minimal).predict(compute=1e21) == ParametricLaw.from_params(
        CHINCHILLA
    ).predict(compute=1e21)
    old = {**data, "options": {"bootstrap": 7.0, "loss": "l2", "retired": "x"}}
    del old["format"]  # format 1: settings under their old names, whole numbers as floats
    loaded = Law.from_dict(old)
    assert loaded.bootstrap_samples == 7.0 and loaded.objective == "l2"
    # a bootstrap sample may hold an exponent <= 0 (its optimum is left out of the intervals)
    degenerate = {**data, "samples": [CHINCHILLA, {**CHINCHILLA, "alpha": -0.1}]}
    assert np.isfinite(Law.from_dict(degenerate).predict(compute=1e21)["intervals"]["params"]).all()


def scaling(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "scaling", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def assert_one_line(done, message):
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.slow
def test_predict_answers_a_bad_fit_file_in_one_line(tmp_path):
    cases = [
        # before: prints nan, exit 0
        (put("params", "alpha", float("nan"))(), "params.alpha: nan must be a finite number"),
        # before: a traceback (complex numbers)
        (put("params", "A", -406.4)(), "params.A: -406.4 must be positive"),
        # before: a traceback (RecursionError)
        (deep(parametric_file()), "details: nested more than 64 levels deep"),
    ]
    for i, (data, message) in enumerate(cases):
        path = write(tmp_path / f"fit{i}.json", data)
        assert_one_line(
            scaling("predict", "--fit", path, "--compute", "1e21"), f"{path}: {message}"
        )
    runs = tmp_path / "RUNS"
    bad = write(runs / "fits" / "parametric.json", cases[0][0])
    assert_one_line(scaling("predict", runs, "--compute", "1e21"), f"{bad}: params.alpha: nan")


@pytest.mark.slow
def test_plot_and_fit_base_answer_a_bad_fit_file_in_one_line(tmp_path):
    points = tmp_path / "points.csv"
    isoflop_points(noise=0.005).to_csv(points, index=False)
    bad = write(tmp_path / "bad.json", put("params", "A", -406.4)())
    figures = tmp_path / "figures"
    done = scaling("plot", points, "--fit", bad, "--out", figures)
    assert_one_line(done, f"{bad}: params.A: -406.4 must be positive")  # before: a traceback
    assert not figures.exists()
    done = scaling("fit", points, "--law", "data-constrained", "--base", bad)
    assert_one_line(done, f"{bad}: params.A: -406.4 must be positive")


@pytest.mark.slow
def test_the_planners_fit_rules_answer_a_bad_fit_file_in_one_line(tmp_path):
    write(tmp_path / "law.json", put("params", "A", -406.4)())
    hparams = json.loads(HparamsLaw.from_params({"k_lr": 0.3, "e_lr": -0.1}).to_json())
    hparams["params"]["k_lr"] = float("nan")
    write(tmp_path / "hp.json", hparams)
    grid = "[[grid]]\nkind = 'isoflop'\nbudgets = [1e16]\n"
    cases = [
        (grid + "centre = 'fit:law.json'\n", "law.json: params.A: -406.4 must be positive"),
        (grid + "[train]\nlr = 'fit:hp.json'\n", "hp.json: params.k_lr: nan must be a finite"),
    ]
    for text, message in cases:
        spec = write(tmp_path / "spec.toml", text)
        done = scaling("plan", spec, "--out", tmp_path / "RUNS")
        assert_one_line(done, message)
        assert not (tmp_path / "RUNS").exists()
