import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaling.cli import app

runner = CliRunner()

SPEC = """
[sweep]
name = "tiny"
min_steps = 5

[model]
vocab_size = 512
max_seq_len = 64
head_dim = 16
d_model_multiple = 16
aspect_ratio_range = [8, 64]

[data]
source = "{source}"
max_bytes = 1_500_000
val_fraction = 0.05
vocab_size = 512

[train]
seq_len = 64
batch_tokens = 1024
micro_batch_size = 8
eval_interval = 0
eval_windows = 16
log_interval = 5
checkpoint_interval = 10

[[grid]]
kind = "fixed"
params = {params}
tokens = [{tokens}]
"""


@pytest.fixture
def plan_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))

    def make(params="[3e4, 6e4, 1.2e5]", tokens=30720, source="builtin:python-stdlib"):
        spec = tmp_path / "spec.toml"
        spec.write_text(SPEC.format(params=params, tokens=tokens, source=source))
        runs = tmp_path / "RUNS"
        result = runner.invoke(app, ["plan", str(spec), "--out", str(runs)])
        assert result.exit_code == 0, result.output
        return runs

    return make


def run_ids(runs):
    return sorted(p.name for p in (runs / "runs").iterdir())


@pytest.fixture
def path_without_slurm(tmp_path):
    """PATH as it is, but with Slurm's client commands gone: each folder on it that holds
    sbatch or srun is replaced by a folder of links to everything else in it."""
    folders = []
    for index, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        here = Path(folder)
        if not any((here / command).exists() for command in ("sbatch", "srun")):
            folders.append(folder)
            continue
        copy = tmp_path / f"path{index}"
        copy.mkdir()
        for entry in here.iterdir():
            if entry.name not in ("sbatch", "srun"):
                (copy / entry.name).symlink_to(entry)
        folders.append(str(copy))
    return os.pathsep.join(folders)
