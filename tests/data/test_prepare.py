import math
import multiprocessing as mp

import numpy as np
import pytest
from typer.testing import CliRunner

from scaling.cli import app
from scaling.config import DataConfig
from scaling.data import PreparedData, bits_per_byte, list_cache, prepare_data
from scaling.data.corpus import is_validation, iter_documents


def test_prepare_writes_shards_meta_and_tokenizer(corpus, cache):
    cfg = DataConfig(source=str(corpus), vocab_size=300, val_fraction=0.2)
    prepared = prepare_data(cfg)
    assert not prepared.reused
    meta = prepared.meta
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 300
    train, val = prepared.tokens("train"), prepared.tokens("val")
    assert len(train) == meta["train"]["tokens"] and len(val) == meta["val"]["tokens"]
    assert meta["train"]["documents"] + meta["val"]["documents"] == 40
    # every document ends with the end-of-document token
    assert (train == meta["eod_id"]).sum() == meta["train"]["documents"]
    total_bytes = meta["train"]["bytes"] + meta["val"]["bytes"]
    assert total_bytes == sum(p.stat().st_size for p in corpus.iterdir())
    # the saved tokenizer decodes the first training document back to its text
    tokenizer = prepared.tokenizer()
    end = int(np.argmax(train == meta["eod_id"]))
    first = next(d.text for d in iter_documents(cfg) if not is_validation(d.text, cfg.val_fraction))
    assert tokenizer.tokenizer.decode(train[:end].tolist()) == first


def test_two_preparations_give_identical_tokens_and_the_cache_is_reused(corpus, tmp_path):
    cfg = DataConfig(source=str(corpus), vocab_size=300)
    a = prepare_data(cfg, cache=tmp_path / "a")
    b = prepare_data(cfg, cache=tmp_path / "b")
    assert a.path.name == b.path.name  # same key
    for split in ("train", "val"):
        np.testing.assert_array_equal(a.tokens(split), b.tokens(split))
    again = prepare_data(cfg, cache=tmp_path / "a")
    assert again.reused and again.path == a.path
    other_vocab = prepare_data(cfg.model_copy(update={"vocab_size": 320}), cache=tmp_path / "a")
    assert other_vocab.path != a.path
    assert len(list_cache(tmp_path / "a")) == 2


def test_bytes_tokenizer(corpus, cache):
    prepared = prepare_data(DataConfig(source=str(corpus), tokenizer="bytes"))
    assert prepared.vocab_size == 256
    meta = prepared.meta
    # one token per byte plus one end-of-document token per document
    for split in ("train", "val"):
        assert meta[split]["tokens"] == meta[split]["bytes"] + meta[split]["documents"]


def test_user_tokenizer_file(corpus, cache, tmp_path):
    trained = prepare_data(DataConfig(source=str(corpus), vocab_size=300))
    path = tmp_path / "tok.json"
    path.write_bytes((trained.path / "tokenizer.json").read_bytes())
    reused = prepare_data(DataConfig(source=str(corpus), tokenizer=str(path)))
    assert reused.meta["tokenizer"]["hash"] == trained.meta["tokenizer"]["hash"]
    np.testing.assert_array_equal(reused.tokens("train"), trained.tokens("train"))


def _prepare_in_process(source: str, cache: str, queue) -> None:
    from pathlib import Path

    prepared = prepare_data(DataConfig(source=source, vocab_size=300), cache=Path(cache))
    queue.put((str(prepared.path), prepared.reused))


def test_concurrent_preparation_builds_once(corpus, tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_prepare_in_process, args=(str(corpus), str(tmp_path), queue))
        for _ in range(3)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert len({path for path, _ in results}) == 1
    assert sorted(reused for _, reused in results) == [False, True, True]
    leftovers = [p.name for p in (tmp_path / "data").iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_a_partial_entry_is_never_used(corpus, cache):
    cfg = DataConfig(source=str(corpus), vocab_size=300)
    good = prepare_data(cfg)
    # simulate a process killed mid-build: a staging directory without meta.json, and a
    # final directory whose meta.json was never written
    stale = good.path.parent / f"{good.path.name}.tmp-99999"
    stale.mkdir()
    (stale / "train.bin").write_bytes(b"junk")
    (good.path / "meta.json").unlink()
    rebuilt_path = good.path
    import shutil

    shutil.rmtree(rebuilt_path)
    rebuilt = prepare_data(cfg)
    assert not rebuilt.reused and not stale.exists()
    assert rebuilt.meta["train"]["tokens"] > 0


def test_bits_per_byte_by_hand():
    # 2 nats/token, 100 tokens for 400 bytes: 2·100/400 nats per byte = 0.5/ln 2 bits
    assert bits_per_byte(2.0, 100, 400) == pytest.approx(0.5 / math.log(2))
    prepared = PreparedData(path=None, meta={"val": {"tokens": 100, "bytes": 400}})
    assert prepared.bits_per_byte(2.0) == pytest.approx(0.7213475204444817)


def test_cli_prepare_info_and_bad_inputs(corpus, cache, tmp_path):
    runner = CliRunner()
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[data]\nsource = "{corpus}"\nvocab_size = 300\n\n[[grid]]\nkind = "x"\n')
    result = runner.invoke(app, ["data", "prepare", str(spec)])
    assert result.exit_code == 0, result.output
    assert "prepared" in result.output
    result = runner.invoke(app, ["data", "prepare", str(spec), "--json"])
    assert result.exit_code == 0 and '"reused": true' in result.output
    result = runner.invoke(app, ["data", "info", "--json"])
    assert result.exit_code == 0 and str(corpus) in result.output

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("\n")
    (tmp_path / "nofield.jsonl").write_text('{"body": 1}\n')
    cases = [
        (["--set", f"source={tmp_path}/nope"], "does not exist"),
        (["--set", f"source={tmp_path}/empty"], "the corpus is empty"),
        (["--set", f"source={corpus}", "--set", "vocab_size=100"], "at least 257"),
        (["--set", f"source={tmp_path}/nofield.jsonl"], "nofield.jsonl:1: no field 'text'"),
        (["--set", f"source={corpus}", "--set", "val_fraction=0"], "val_fraction"),
        (["--set", f"source={corpus}", "--set", "tokenizer=/no/tok.json"], "does not exist"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["data", "prepare", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    # nothing written by the failed preparations
    assert len(list_cache()) == 1
