"""The published points through the command line, each command in a fresh process."""

import json
import subprocess
import sys

import pandas as pd
import pytest


def scaling(*args):
    return subprocess.run([sys.executable, "-m", "scaling", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_list_export_fit_and_predict(tmp_path):
    listed = scaling("published", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [d["name"] for d in json.loads(listed.stdout)] == [
        "builtin:chinchilla",
        "builtin:chinchilla-corrected",
        "builtin:llama3",
        "builtin:datablations",
        "builtin:datablations-all",
        "builtin:multipower-25m",  # loss curves: a step per row
        "builtin:multipower-100m",
        "builtin:multipower-400m",
    ]
    assert [d["rows"] for d in json.loads(listed.stdout)] == [
        245,
        245,
        133,
        182,
        296,
        64_000,
        64_000,
        64_000,
    ]
    described = scaling("published", "chinchilla")
    assert described.returncode == 0, described.stderr
    assert "arXiv:2404.10102" in described.stdout
    assert "4c97be9c9f4c7982c6de1cfa6be6f119c1163520" in described.stdout

    csv = tmp_path / "points.csv"
    assert scaling("published", "chinchilla", "--csv", str(csv)).returncode == 0
    assert len(pd.read_csv(csv)) == 245
    fit_file = tmp_path / "chinchilla.json"
    from_builtin = scaling(
        "fit", "builtin:chinchilla", "--drop-highest", "5", "--out", str(fit_file), "--json"
    )
    from_csv = scaling("fit", str(csv), "--drop-highest", "5", "--json")
    assert from_builtin.returncode == 0, from_builtin.stderr
    assert from_csv.returncode == 0, from_csv.stderr
    builtin_fit, csv_fit = json.loads(from_builtin.stdout), json.loads(from_csv.stdout)
    assert builtin_fit["n_points"] == 240 and len(builtin_fit["excluded"]) == 5
    assert abs(builtin_fit["params"]["E"] - 1.8172) < 1e-3  # Epoch AI's published E
    assert csv_fit["params"] == builtin_fit["params"]
    assert csv_fit["points_digest"] == builtin_fit["points_digest"]

    predicted = scaling("predict", "--fit", str(fit_file), "--compute", "5.76e23", "--json")
    assert predicted.returncode == 0, predicted.stderr
    # Chinchilla's own budget: Epoch AI's law puts the optimum at 72B parameters
    assert 6.5e10 < json.loads(predicted.stdout)["params"] < 8e10


@pytest.mark.slow
def test_bad_names_and_an_existing_csv_are_one_line_exit_2(tmp_path):
    for args in (
        ("fit", "builtin:llama4"),
        ("published", "llama4"),
        ("published", "--csv", str(tmp_path / "x.csv")),
    ):
        done = scaling(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: ")
    assert "no such published dataset" in scaling("fit", "builtin:llama4").stderr
    kept = tmp_path / "kept.csv"
    kept.write_text("mine\n")
    done = scaling("published", "chinchilla", "--csv", str(kept))
    assert done.returncode == 2 and "exists" in done.stderr
    assert kept.read_text() == "mine\n"


@pytest.mark.slow
def test_llama3_and_datablations_described_exported_and_fitted(tmp_path):
    described = scaling("published", "llama3")
    assert described.returncode == 0, described.stderr
    for text in ("arXiv:2407.21783", "7ec1fb7ddfbf5fb6363879eb895ae872a4bb9952", "C/6D"):
        assert text in described.stdout, text
    described = scaling("published", "datablations", "--json")
    assert described.returncode == 0, described.stderr
    record = json.loads(described.stdout)
    assert record["extraction"]["commit"] == "13701315b163f1c54642b94ad237b2699187c3ee"
    assert record["licence"].startswith("Apache-2.0") and len(record["points"]) == 182

    for name, rows, columns in (
        ("llama3", 133, {"params", "tokens", "flops", "budget", "loss"}),
        ("datablations-all", 296, {"params", "tokens", "unique_tokens", "loss", "run_id"}),
    ):
        csv = tmp_path / f"{name}.csv"
        done = scaling("published", name, "--csv", str(csv))
        assert done.returncode == 0, done.stderr
        exported = pd.read_csv(csv)
        assert len(exported) == rows and columns <= set(exported)

    fitted = scaling("fit", "builtin:llama3", "--law", "isoflop", "--json")
    assert fitted.returncode == 0, fitted.stderr
    params = json.loads(fitted.stdout)["params"]
    # the paper: compute-optimal tokens 0.299 C^0.537
    assert abs(params["b"] - 0.537) < 5e-4 and abs(params["k_D"] - 0.299) < 5e-4
