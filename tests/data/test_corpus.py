import json
import sys
import types

import pandas as pd
import pytest

from scaling.config import DataConfig
from scaling.data.corpus import (
    STDLIB_TEST_DIRS,
    DataError,
    ReadStats,
    _stdlib_files,
    corpus_fingerprint,
    is_validation,
    iter_documents,
    stdlib_root,
)


def split_of(cfg):
    return {d.name: is_validation(d.text, cfg.val_fraction) for d in iter_documents(cfg)}


def test_adding_a_file_moves_no_document_between_splits(corpus):
    cfg = DataConfig(source=str(corpus), val_fraction=0.3)
    before = split_of(cfg)
    assert 0 < sum(before.values()) < len(before)
    (corpus / "aaa_new.txt").write_text("a brand new document\n")
    after = split_of(cfg)
    assert len(after) == len(before) + 1
    assert all(after[name] == side for name, side in before.items())


def test_fingerprint_changes_with_content_not_with_reading_twice(corpus):
    cfg = DataConfig(source=str(corpus))
    first, stats = corpus_fingerprint(cfg)
    assert stats.documents == 40
    assert corpus_fingerprint(cfg)[0] == first
    (corpus / "doc000.txt").write_text("changed\n")
    assert corpus_fingerprint(cfg)[0] != first


def test_glob_jsonl_and_parquet_sources(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"body": "first doc"}) + "\n\n" + json.dumps({"body": "second"}) + "\n"
    )
    pd.DataFrame({"body": ["third", "fourth", ""]}).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("fifth")
    docs = list(iter_documents(DataConfig(source=str(tmp_path), text_field="body")))
    assert [d.text for d in docs] == ["first doc", "second", "third", "fourth", "fifth"]
    globbed = list(iter_documents(DataConfig(source=str(tmp_path / "*.txt"))))
    assert [d.text for d in globbed] == ["fifth"]


def test_builtin_stdlib_corpus():
    cfg = DataConfig(source="builtin:python-stdlib", max_bytes=300_000)
    stats = ReadStats()
    docs = list(iter_documents(cfg, stats))
    assert docs and all(d.name.endswith(".py") for d in docs)
    assert not any("/test/" in d.name for d in docs)
    assert stats.bytes <= 300_000
    with_tests = DataConfig(source="builtin:python-stdlib", include_tests=True)
    assert any("/test/" in d.name for d in iter_documents(with_tests))


@pytest.mark.parametrize("include_tests", [False, True])
def test_the_pruned_stdlib_walk_lists_what_filtering_every_file_listed(include_tests):
    """The corpus (and so its cache key) is unchanged by the faster walk: the reference is the
    plain definition, every .py under the stdlib but site-packages (and, unless asked, the
    test folders)."""
    root = stdlib_root()
    reference = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        if not include_tests and STDLIB_TEST_DIRS.intersection(parts[:-1]):
            continue
        reference.append(path)
    assert _stdlib_files(include_tests) == sorted(reference)


def test_max_bytes_stops_at_a_document_boundary(corpus):
    stats = ReadStats()
    docs = list(iter_documents(DataConfig(source=str(corpus), max_bytes=5000), stats))
    assert 0 < len(docs) < 40 and stats.bytes <= 5000


def test_undecodable_bytes_are_replaced_and_counted(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 and \xff\xfe more")
    stats = ReadStats()
    (doc,) = iter_documents(DataConfig(source=str(tmp_path)), stats)
    assert doc.text == "caf\ufffd and \ufffd\ufffd more"
    assert stats.replaced_chars == 3
    assert stats.files_with_replacements == [str(tmp_path / "bad.txt")]


@pytest.mark.parametrize(
    "setup, source, message",
    [
        (lambda p: None, "{p}/missing", "does not exist"),
        (lambda p: (p / "e.txt").write_text("  \n"), "{p}", "the corpus is empty"),
        (lambda p: (p / "x.bin").write_text("x"), "{p}", "holds no file with a suffix"),
        (lambda p: None, "{p}/*.txt", "matches no file"),
        (lambda p: None, "builtin:wikipedia", "unknown built-in corpus"),
    ],
)
def test_bad_sources(tmp_path, setup, source, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        corpus_fingerprint(DataConfig(source=source.format(p=tmp_path)))


def test_jsonl_line_without_the_field(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{"content": "no text"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: no field 'text'"):
        list(iter_documents(DataConfig(source=str(path))))
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON"):
        list(iter_documents(DataConfig(source=str(path))))


def test_hugging_face_source_only_when_named(monkeypatch):
    calls = []

    class FakeDataset(list):
        column_names = ["text"]

    def load_dataset(name, split):
        calls.append((name, split))
        return FakeDataset([{"text": "hello"}, {"text": "world"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    docs = list(iter_documents(DataConfig(source="hf:someone/corpus:validation")))
    assert calls == [("someone/corpus", "validation")]
    assert [d.text for d in docs] == ["hello", "world"]
    with pytest.raises(DataError, match="no column 'body'"):
        list(iter_documents(DataConfig(source="hf:someone/corpus", text_field="body")))
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"scaling\[hf\]"):
        list(iter_documents(DataConfig(source="hf:someone/corpus")))
