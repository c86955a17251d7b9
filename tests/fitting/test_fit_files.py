"""Every law's fit file, written here, read back in a fresh interpreter: by ``Law.from_json``
after importing nothing but the base module, and by ``scaling predict`` through the CLI.
An import in this process would hide a law that registers only when its module is imported."""

import json
import subprocess
import sys

import numpy as np
import pytest

from scaling.fitting import LAWS, FitError, Law, LRAnnealingLaw, MultiPowerLaw, ParametricLaw
from scaling.fitting.api import LAW_NAMES, fit_law
from scaling.fitting.curves import LrCurves
from scaling.fitting.downstream import sigmoid
from scaling.fitting.points import prepare_points

from .conftest import CHINCHILLA, isoflop_points
from .test_curvelaws import LRA, MPL, drawn
from .test_isoflop import _curves
from .test_laws import _hparam_points, _moe_points, _repeated_points

QUESTIONS = {
    "parametric": ["--compute", "1e21"],
    "isoflop": ["--compute", "1e21"],
    "envelope": ["--compute", "1e18"],
    "kaplan": ["--params", "1e9", "--tokens", "1e10"],
    "data-constrained": ["--params", "1e9", "--tokens", "4e10", "--unique-tokens", "1e10"],
    "moe": ["--params", "1e8", "--tokens", "1e10", "--experts", "8"],
    "hparams": ["--compute", "1e22"],
    "downstream": ["--compute", "1e21"],
    "multi-power": ["--schedule", "wsd:steps=300,lr=3e-4,warmup=20,cooldown=0.3"],
    "lr-annealing": ["--schedule", "cosine:steps=300,lr=3e-4,warmup=20"],
}


def _as_keywords(args):
    names = {"--unique-tokens": "unique_tokens", "--experts": "n_experts"}
    return {
        names.get(flag, flag.removeprefix("--")): value if flag == "--schedule" else float(value)
        for flag, value in zip(args[::2], args[1::2], strict=True)
    }


def _fit_every_law():
    downstream = isoflop_points()
    downstream["accuracy"] = sigmoid(downstream["loss"], 0.25, 0.8, 6.0, 2.4)
    data = {
        "parametric": isoflop_points(noise=0.005),
        "isoflop": isoflop_points(noise=0.005),
        "kaplan": isoflop_points(noise=0.005),
        "data-constrained": _repeated_points({**CHINCHILLA, "R_D_star": 15.4, "R_N_star": 5.3}),
        "moe": _moe_points(),
        "hparams": _hparam_points(),
        "downstream": downstream,
    }
    laws = {}
    for name, frame in data.items():
        laws[name] = fit_law(name, prepare_points(frame), bootstrap_samples=4, keep=8)
    laws["envelope"] = fit_law("envelope", None, curves=_curves(), bootstrap_samples=4)
    for law, truth in ((MultiPowerLaw, MPL), (LRAnnealingLaw, LRA)):
        curves = drawn(law.from_params(truth))
        laws[law.law] = law(bootstrap_samples=4).fit(LrCurves(list(curves.values())))
    return laws


@pytest.fixture(scope="module")
def fit_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fits")
    laws = _fit_every_law()
    paths = {}
    for name, law in laws.items():
        paths[name] = folder / f"{name}.json"
        law.to_json(paths[name])
    return laws, paths


def test_every_law_is_covered():
    assert set(QUESTIONS) == set(LAW_NAMES) == set(LAWS)


@pytest.mark.slow
def test_every_fit_file_loads_in_a_fresh_interpreter(fit_files):
    laws, paths = fit_files
    script = (
        "import json, sys\n"
        "from scaling.fitting.base import Law\n"
        "questions = json.loads(sys.argv[1])\n"
        "out = {}\n"
        "for name, (path, kwargs) in questions.items():\n"
        "    out[name] = Law.from_json(path).predict(**kwargs)\n"
        "print(json.dumps(out))\n"
    )
    questions = {n: (str(paths[n]), _as_keywords(QUESTIONS[n])) for n in paths}
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(questions)],
        capture_output=True,
        text=True,
        check=True,
    )
    answers = json.loads(done.stdout)
    for name, law in laws.items():
        assert answers[name] == json.loads(json.dumps(law.predict(**questions[name][1]))), name
        assert answers[name].get("intervals"), name  # the bootstrap samples came along


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_scaling_predict_reads_every_fit_file(fit_files, name):
    laws, paths = fit_files
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "predict", "--fit", str(paths[name]), *QUESTIONS[name]]
        + ["--json"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    prediction = json.loads(done.stdout)
    expected = laws[name].predict(**_as_keywords(QUESTIONS[name]))
    if "predictions" in prediction:  # a loss-curve law: every step of the schedule
        prediction = {"loss": [row["loss"] for row in prediction["predictions"]]}
    key = "lr" if name == "hparams" else "loss"
    assert prediction[key] == pytest.approx(expected[key], rel=1e-12)


@pytest.mark.slow
def test_questions_a_law_cannot_answer_are_one_line(fit_files, tmp_path):
    _, paths = fit_files
    cases = [
        (["--fit", str(paths["kaplan"]), "--compute", "1e21"], "give both params and tokens"),
        (["--fit", str(paths["parametric"]), "--compute", "0"], "--compute 0.0: must be"),
        (["--fit", str(paths["parametric"]), "--compute", "-1e21"], "--compute -1e+21: must"),
        (["--fit", str(paths["parametric"]), "--params", "-5"], "--params -5.0: must be"),
        (["--fit", str(paths["parametric"]), "--compute", "inf"], "--compute inf: must be"),
        (
            ["--fit", str(paths["parametric"]), "--params", "1e9", "--experts", "8"],
            "the parametric law takes no n_experts",
        ),
        (
            ["--fit", str(paths["moe"]), "--params", "1e8", "--tokens", "1e10", "--experts", "16"],
            "--experts 16: no multiplier fitted for 16 experts",
        ),
    ]
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "scaling", "predict", *args], capture_output=True, text=True
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_fit_file_format_is_checked(tmp_path):
    law = ParametricLaw.from_params(CHINCHILLA)
    data = law.to_dict()
    assert data["format"] == 3 and data["answers"] == ["loss", "optimum"]
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(FitError, match="format 99 is newer"):
        Law.from_json(newer)
    # a format-1 file (settings under their old names) still loads
    old = {**data, "options": {"bootstrap": 7, "loss": "l2"}}
    del old["format"]
    loaded = Law.from_dict(old)
    assert loaded.bootstrap_samples == 7 and loaded.objective == "l2"
    with pytest.raises(FitError, match="holds a parametric law, not a hparams"):
        LAWS["hparams"].from_json(law.to_json())
    for text, message in [("[]", "not a fit file"), ('{"law": "magic"}', "unknown law 'magic'")]:
        with pytest.raises(FitError, match=message):
            Law.from_json(text if text.startswith("{") else _write(tmp_path, text))


def _write(folder, text):
    path = folder / "bad.json"
    path.write_text(text)
    return path


def test_estimator_protocol():
    points = isoflop_points(noise=0.005)
    law = ParametricLaw(objective="l2", keep=8)
    assert law.get_params()["objective"] == "l2" and not law.params_
    with pytest.raises(FitError, match="not fitted yet"):
        law.predict(compute=1e21)
    assert law.fit(points) is law and set(law.params_) == {"E", "A", "B", "alpha", "beta"}
    assert "fitted on 63 points" in repr(law)
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr'"):
        ParametricLaw(lr=1.0)  # the parameters are the constructor's signature
    with pytest.raises(FitError, match="no parameter 'lr'"):
        law.set_params(lr=1.0)
    # predict: one of compute/params/tokens gives the optimum, params and tokens the loss
    at = law.predict(compute=1e21)
    assert law.predict(params=at["params"])["compute"] == pytest.approx(1e21, rel=1e-9)
    loss = law.predict(params=1e9, tokens=2e10)["loss"]
    assert loss == pytest.approx(float(law.loss(1e9, 2e10)))
    assert np.isfinite(loss)
