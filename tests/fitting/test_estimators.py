"""Laws as estimators (#27): parameters are the constructor's signature, ``fit`` never changes
them, every fitted value ends in ``_`` and survives the fit file; fit files of formats 1 and 2,
written by the code before, still load and answer as they did; the fitting package imports
without a circle, and ``scaling.published`` without the fitting package."""

import ast
import copy
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from scaling.fitting import LAWS, Law
from scaling.fitting.api import CURVE_LAWS, fit_law
from scaling.fitting.curves import LrCurves
from scaling.fitting.points import prepare_points

from .test_fit_files import _fit_every_law

DATA = Path(__file__).parent / "data"
FITTING = Path(__file__).parents[2] / "scaling" / "fitting"
FITTED = (
    "params_",
    "intervals_",
    "samples_",
    "resamples_",
    "compute_",
    "objective_",
    "details_",
    "n_points_",
    "points_digest_",
    "excluded_",
    "version_",
)


@pytest.fixture(scope="module")
def every_law():
    return _fit_every_law()


@pytest.mark.parametrize("name", sorted(LAWS))
def test_parameters_are_the_constructor_signature(name):
    cls = LAWS[name]
    signature = cls.signature()
    law = cls()
    assert list(law.get_params()) == list(signature)
    for param in signature.values():
        assert param.kind is param.KEYWORD_ONLY, param
        kind, meaning = typing.get_args(param.annotation)[:2]  # Annotated[type, "what"]
        assert isinstance(meaning, str) and meaning, param
        assert law.get_params()[param.name] == param.default
    # the common parameters are every law's, with the base class's meaning
    assert {"bootstrap_samples", "bootstrap_unit", "seed", "level"} <= set(signature)
    # no parameter hides a question: loss, optimum, hyperparameters stay methods
    for question in ("loss", "optimum", "hyperparameters", "compute_for", "at"):
        assert inspect.isfunction(getattr(cls, question)), question


def test_a_parameter_named_as_a_method_is_refused():
    with pytest.raises(TypeError, match="parameter 'optimum' hides the method optimum"):

        class Bad(Law):
            def __init__(self, *, optimum: str = "x", **common):
                self.optimum = optimum
                super().__init__(**common)


def _set(law: Law) -> Law:
    """``law`` with parameters away from their defaults where that changes nothing here."""
    chosen = {"level": 0.8, "seed": 1}
    if "pinned" in law.get_params() and law.law == "parametric":
        chosen.update(pinned={"E": 1.69}, bounds={"alpha": (0.0, 2.0)})
    return law.set_params(**chosen)


def test_fit_never_changes_a_parameter(every_law):
    for name, fitted in every_law.items():
        law = _set(type(fitted)(**fitted.get_params()))
        before = copy.deepcopy(law.get_params())
        if name == "envelope":
            from .test_isoflop import _curves

            law.fit(_curves())
        elif name in CURVE_LAWS:
            from .test_curvelaws import LRA, MPL, drawn

            truth = type(law).from_params(MPL if name == "multi-power" else LRA)
            law.fit(LrCurves(list(drawn(truth).values())))
        else:
            law.fit(prepare_points(_frame(fitted)))
        assert law.get_params() == before, name
        assert law.params_, name


def _frame(law):
    """The points a law of ``_fit_every_law`` was fitted on (rebuilt by its digest)."""
    from .test_fit_files import CHINCHILLA, isoflop_points, sigmoid
    from .test_laws import _hparam_points, _moe_points, _repeated_points

    frames = {
        "data-constrained": _repeated_points({**CHINCHILLA, "R_D_star": 15.4, "R_N_star": 5.3}),
        "moe": _moe_points(),
        "hparams": _hparam_points(),
    }
    frame = frames.get(law.law)
    if frame is None:
        frame = isoflop_points(noise=0.005)
        frame["accuracy"] = sigmoid(frame["loss"], 0.25, 0.8, 6.0, 2.4)
    return frame


def test_every_fitted_value_ends_in_an_underscore_and_survives_the_fit_file(every_law):
    for name, law in every_law.items():
        fitted = {k for k in vars(law) if not k.startswith("_") and k not in law.get_params()}
        assert fitted == set(FITTED), name  # nothing fitted outside the named attributes
        loaded = Law.from_json(law.to_json())
        assert type(loaded) is type(law)
        assert loaded.get_params() == json.loads(json.dumps(law.get_params())), name
        for attribute in FITTED:
            ours = json.loads(json.dumps(_plain(getattr(law, attribute)), default=float))
            theirs = json.loads(json.dumps(_plain(getattr(loaded, attribute)), default=float))
            assert theirs == ours, (name, attribute)
        assert loaded.to_json() == law.to_json(), name
        assert law.resamples_ == list(range(len(law.samples_))), name  # every resample fitted


def _plain(value):
    return value.to_dict() if hasattr(value, "to_dict") else value


@pytest.mark.parametrize("version", ["format1", "format2"])
def test_fit_files_of_earlier_formats_answer_as_they_did(version):
    """Files written by the code before format 3 (``tests/fitting/data``), with the answers
    that code gave to a question about each: the same answers now, intervals included."""
    answers = json.loads((DATA / version / "answers.json").read_text())
    for name, expected in answers.items():
        law = Law.from_json(DATA / version / f"{name}.json")
        got = json.loads(json.dumps(law.predict(**expected["question"])))
        assert got.keys() == expected["answer"].keys(), name
        for key, value in expected["answer"].items():
            if key == "intervals":
                for quantity, pair in value.items():
                    assert got[key][quantity] == pytest.approx(pair, rel=1e-9), (name, quantity)
            else:
                assert got[key] == pytest.approx(value, rel=1e-9), (name, key)


def test_a_format_2_file_keeps_its_accounting_and_its_old_names():
    law = Law.from_json(DATA / "format2" / "parametric-k.json")
    old = json.loads((DATA / "format2" / "parametric-k.json").read_text())
    k = old["options"]["flops_per_param_token"]
    assert law.compute_.how == "constant" and law.compute_.k == k
    assert law.to_dict()["format"] == 3 and "flops_per_param_token" not in law.get_params()
    iso = Law.from_json(DATA / "format2" / "isoflop-akima.json")
    assert iso.budget_optimum == "akima"  # was "optimum", the name of a question
    kaplan = json.loads((DATA / "format2" / "kaplan.json").read_text())
    kaplan["details"]["N"] = "params_nonembedding"  # its N, once in its details
    assert Law.from_dict(kaplan).compute_.size == "non_embedding"


def _own_imports(path: Path) -> tuple[set[str], list[str]]:
    """(the fitting modules ``path`` imports at its top, those it imports inside functions)."""

    def modules(node) -> set[str]:
        if not (isinstance(node, ast.ImportFrom) and node.module or "").startswith(
            "scaling.fitting"
        ):
            return set()
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found = {n.removeprefix("scaling.fitting.") for n in names}
        return {n for n in found if (FITTING / f"{n}.py").is_file()}

    top, inner = set(), []
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, ast.If) and ast.unparse(statement.test) == "TYPE_CHECKING":
            continue  # for the type checker only: never run
        top |= modules(statement)
        for node in ast.walk(statement):
            if node is not statement:
                inner += sorted(modules(node))
    return top, inner


def test_the_fitting_modules_import_in_one_direction():
    """No circle among the package's modules, and no import of one of them hidden inside a
    function (which is how the circle base -> bootstrap -> points -> base hid before)."""
    modules = {p.stem: p for p in FITTING.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name, path in modules.items():
        top, inner = _own_imports(path)
        assert not inner, (name, inner)
        graph[name] = top - {name}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name, trail):
        assert name not in visiting, f"import circle: {' -> '.join([*trail, name])}"
        if name in order:
            return
        visiting.add(name)
        for other in sorted(graph[name]):
            visit(other, [*trail, name])
        visiting.discard(name)
        order.append(name)

    for name in sorted(graph):
        visit(name, [])
    assert order.index("errors") < order.index("base") < order.index("parametric")


@pytest.mark.slow
def test_each_fitting_module_imports_alone_in_a_fresh_interpreter():
    for path in sorted(FITTING.glob("*.py")):
        module = "scaling.fitting" + ("" if path.stem == "__init__" else f".{path.stem}")
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
        )
        assert done.returncode == 0, (module, done.stderr)


@pytest.mark.slow
def test_published_points_do_not_import_the_fitting_package():
    code = (
        "import sys\n"
        "from scaling import published\n"
        "from scaling.errors import FitError\n"
        "published.load('builtin:chinchilla')\n"
        "try:\n"
        "    published.dataset('builtin:missing')\n"
        "except FitError as err:\n"
        "    print(err)\n"
        "assert not [m for m in sys.modules if m.startswith('scaling.fitting')], sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "builtin:missing: no such published dataset" in done.stdout
    from scaling.fitting import FitError

    assert FitError is __import__("scaling.errors").errors.FitError  # one class, caught alike


def test_fit_options_come_from_the_laws_signatures():
    from typer.testing import CliRunner

    from scaling.cli import app
    from scaling.cli.law_options import flag

    result = CliRunner().invoke(app, ["fit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for cls in LAWS.values():
        for name, param in cls.signature().items():
            assert flag(name) in result.output, (cls.law, name)
            if name == "base":  # given as a fit file, which the CLI reads
                continue
            meaning = typing.get_args(param.annotation)[1]
            assert meaning.split(".")[0].split(",")[0] in result.output, (cls.law, name)


def test_a_cli_parameter_reaches_the_law_unchanged(tmp_path):
    from typer.testing import CliRunner

    from scaling.cli import app

    from .conftest import isoflop_points

    points = tmp_path / "points.csv"
    isoflop_points(noise=0.005).to_csv(points, index=False)
    out = tmp_path / "fit.json"
    args = ["fit", str(points), "--out", str(out), "--keep", "8", "--pin", "E=1.69"]
    result = CliRunner().invoke(app, [*args, "--bound", "alpha=0:2", "--loss", "l2"])
    assert result.exit_code == 0, result.output
    law = Law.from_json(out)
    assert law.get_params() == {
        **type(law)().get_params(),
        "keep": 8,
        "pinned": {"E": 1.69},
        "bounds": {"alpha": [0.0, 2.0]},
        "objective": "l2",
    }
    direct = fit_law("parametric", prepare_points(isoflop_points(noise=0.005)), **law.get_params())
    assert direct.params_ == pytest.approx(law.params_, rel=1e-12)


def test_kaplan_on_its_own_n_still_pairs_with_a_law_on_the_same_points():
    """Kaplan's N is non-embedding: it is fitted on the points sized so, which are still the
    same points (one digest), so its bootstrap samples pair with the parametric law's (the
    demo's averaged interval; they did not when the digest followed the N)."""
    from scaling.fitting.averaging import shared_resamples

    from .conftest import isoflop_points

    frame = isoflop_points(noise=0.005)
    frame["params_nonembedding"] = frame["params"] * 0.9
    points = prepare_points(frame)
    kaplan = fit_law("kaplan", points, bootstrap_samples=3)
    parametric = fit_law("parametric", points, bootstrap_samples=3, keep=8)
    assert kaplan.compute_.size == "non_embedding" and parametric.compute_.size == "total"
    assert kaplan.points_digest_ == parametric.points_digest_ == points.digest
    assert shared_resamples([kaplan, parametric]) == [0, 1, 2]


def test_a_fit_runs_every_blas_library_on_one_thread():
    """scipy's own OpenBLAS included, which loads with scipy.optimize: a limit set before it
    loaded did not reach it, and a degenerate fit on a busy machine took 5x as long."""
    from threadpoolctl import threadpool_info

    from scaling.fitting.base import blas_threads

    with blas_threads():
        import scipy.optimize  # noqa: F401  what a law's fit imports inside the context

        counts = {info["filepath"]: info["num_threads"] for info in threadpool_info()
                  if info["user_api"] == "blas"}  # fmt: skip
    assert counts and set(counts.values()) == {1}, counts
