"""The published points through the command line, each command in a fresh process."""

import json
import subprocess
import sys

import pandas as pd


def scaling(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "scaling", *args], capture_output=True, text=True, cwd=cwd
    )


def test_fit_builtin_then_predict_from_its_fit_file(tmp_path):
    fit_file = tmp_path / "chinchilla.json"
    done = scaling(
        "fit", "builtin:chinchilla", "--drop-highest", "5", "--out", str(fit_file), "--json"
    )
    assert done.returncode == 0, done.stderr
    fitted = json.loads(done.stdout)
    assert fitted["n_points"] == 240 and len(fitted["excluded"]) == 5
    assert abs(fitted["params"]["E"] - 1.8172) < 1e-3
    predicted = scaling("predict", "--fit", str(fit_file), "--compute", "5.76e23", "--json")
    assert predicted.returncode == 0, predicted.stderr
    # Chinchilla's own budget: Epoch AI's law puts the optimum near 70B parameters
    assert 5e10 < json.loads(predicted.stdout)["params"] < 9e10


def test_published_lists_describes_and_exports_what_fit_reads(tmp_path):
    listed = scaling("published", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [d["name"] for d in json.loads(listed.stdout)] == [
        "builtin:chinchilla",
        "builtin:chinchilla-corrected",
    ]
    described = scaling("published", "chinchilla")
    assert described.returncode == 0 and "arXiv:2404.10102" in described.stdout
    assert "4c97be9c9f4c7982c6de1cfa6be6f119c1163520" in described.stdout
    csv = tmp_path / "points.csv"
    exported = scaling("published", "chinchilla-corrected", "--csv", str(csv))
    assert exported.returncode == 0, exported.stderr
    from_csv = scaling("fit", str(csv), "--drop-highest", "5", "--json")
    from_builtin = scaling("fit", "builtin:chinchilla-corrected", "--drop-highest", "5", "--json")
    assert from_csv.returncode == 0 and from_builtin.returncode == 0
    csv_fit, builtin_fit = json.loads(from_csv.stdout), json.loads(from_builtin.stdout)
    assert csv_fit["params"] == builtin_fit["params"]
    assert csv_fit["points_digest"] == builtin_fit["points_digest"]
    assert len(pd.read_csv(csv)) == 245


def test_bad_names_and_an_existing_csv_are_one_line_exit_2(tmp_path):
    for args in (
        ("fit", "builtin:llama3"),
        ("published", "llama3"),
        ("published", "--csv", str(tmp_path / "x.csv")),
    ):
        done = scaling(*args)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: ")
    assert "no such published dataset" in scaling("fit", "builtin:llama3").stderr
    kept = tmp_path / "kept.csv"
    kept.write_text("mine\n")
    done = scaling("published", "chinchilla", "--csv", str(kept))
    assert done.returncode == 2 and kept.read_text() == "mine\n"
