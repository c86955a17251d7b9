import random

import pytest


def write_corpus(root, n_files: int = 40, seed: int = 0):
    """Small text files of pseudo-English, different enough to train a BPE on."""
    rng = random.Random(seed)
    words = "the of and to in is that for it as with was on be by this are from at or".split()
    words += "scaling law model token budget loss compute data parameter train fit".split()
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(30)]
        (root / f"doc{i:03d}.txt").write_text(f"document {i}\n" + "\n".join(lines) + "\n")
    return root


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("SCALING_CACHE", str(path))
    return path
