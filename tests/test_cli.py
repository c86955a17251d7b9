import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from scaling import __version__
from scaling.cli import app
from scaling.config import ModelConfig
from scaling.counting import count_params

runner = CliRunner()


@pytest.mark.slow
def test_help_lists_commands_without_importing_torch():
    code = (
        "import sys; from scaling.cli import app; "
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "count" in result.output


@pytest.mark.parametrize("given, kept", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_makes_openmp_threads_sleep_unless_told(given, kept, monkeypatch):
    """Spinning OpenMP threads slow a CPU run up to 17x on a busy machine
    (benchmarks/cpu_threads.py): `scaling` sets PASSIVE before torch loads, for itself and the
    runs it starts, and leaves a policy the environment gives alone."""
    import scaling.__main__

    monkeypatch.setenv("OMP_WAIT_POLICY", given or "")  # restored as it was after the test
    if given is None:
        monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(sys, "argv", ["scaling", "--version"])
    with pytest.raises(SystemExit):
        scaling.__main__.main()
    assert os.environ["OMP_WAIT_POLICY"] == kept


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_count_json_matches_library(tmp_path):
    path = tmp_path / "model.toml"
    path.write_text('[model]\nd_model = 128\nn_layers = 2\nn_heads = 4\nactivation = "swiglu"\n')
    result = runner.invoke(
        app, ["count", str(path), "--set", "n_experts=4", "--budget", "1e15", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    cfg = ModelConfig(d_model=128, n_layers=2, n_heads=4, activation="swiglu", n_experts=4)
    assert report["params"] == count_params(cfg).to_dict()
    six_n = report["flops_per_token"]["6N"]
    assert report["tokens_for_budget"]["6N"] == 1e15 / six_n


def test_count_table():
    result = runner.invoke(app, ["count", "-s", "d_model=64", "-s", "n_heads=2"])
    assert result.exit_code == 0
    assert "non_embedding" in result.output and "chinchilla" in result.output


def test_count_bad_inputs_exit_2_with_one_line(tmp_path):
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("d_model = [")
    cases = [
        (["count", "-s", "d_model=100", "-s", "n_heads=8"], "must be divisible by n_heads"),
        (["count", "-s", "activaton=swiglu"], "activaton: unknown key"),
        (["count", "-s", "activation=tanh"], "'relu', 'gelu' or 'swiglu'"),
        (["count", "-s", "d_model"], "expected KEY=VALUE"),
        (["count", str(bad_toml)], "bad.toml: not valid TOML"),
        (["count", str(tmp_path / "none.toml")], "none.toml: no such file"),
        (["count", "--seq-len", "5000"], "--seq-len 5000"),
        (["count", "--budget", "-1"], "--budget"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_missing_input_is_refused_before_the_heavy_imports(tmp_path):
    """`scaling fit`, `scaling predict` and `scaling published` check their file or dataset
    name before importing pandas and scipy: a typo answers at once (checked by what was
    imported, not by a clock)."""
    code = (
        "import sys\n"
        "from scaling.cli import app\n"
        "for args in (['fit', 'missing.csv'], ['predict', '--fit', 'missing.json'],\n"
        "             ['fit', 'builtin:missing'], ['published', 'missing']):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 2, exit.code\n"
        "heavy = [m for m in ('pandas', 'scipy', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "missing.csv: no such file" in done.stderr
    assert "missing.json: no such fit file" in done.stderr
    assert done.stderr.count("builtin:missing: no such published dataset") == 2
