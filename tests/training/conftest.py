import os

import pytest

from scaling.config import DataConfig, ModelConfig, RunConfig, TrainConfig

DATA = DataConfig(
    source="builtin:python-stdlib", max_bytes=1_500_000, val_fraction=0.05, vocab_size=512
)


def tiny_run(run_id="tiny", model=None, **train) -> RunConfig:
    model = {
        "vocab_size": 512,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "max_seq_len": 64,
        **(model or {}),
    }
    defaults = {
        "tokens": 40 * 1024,
        "batch_tokens": 1024,
        "micro_batch_size": 8,
        "seq_len": 64,
        "lr": 3e-3,
        "eval_interval": 10,
        "eval_windows": 16,
        "log_interval": 5,
        "checkpoint_interval": 10,
    }
    return RunConfig(
        run_id=run_id,
        model=ModelConfig(**model),
        data=DATA,
        train=TrainConfig(**{**defaults, **train}),
    )


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory):
    """One data cache for the whole session: the corpus is tokenized once."""
    cache = tmp_path_factory.mktemp("scaling-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCALING_CACHE", str(cache))
        from scaling.data import prepare_data

        prepare_data(DATA)
        yield cache
    os.environ.pop("SCALING_CACHE", None)
