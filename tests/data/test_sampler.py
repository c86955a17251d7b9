import warnings

import numpy as np
import pytest
import torch

from scaling.data import DataError, ValidationWindows, WindowSampler

TOKENS = np.arange(10_000, dtype=np.uint16)


def test_windows_are_contiguous_next_token_pairs():
    sampler = WindowSampler(TOKENS, seq_len=16, batch_size=8, seed=0)
    x, y = sampler.next_batch()
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.int64
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
    starts = x[:, 0].numpy()
    assert np.all(starts % 16 == 0)


def test_each_epoch_visits_every_window_once_in_a_seeded_order():
    sampler = WindowSampler(TOKENS, seq_len=100, batch_size=11, seed=3)
    n = sampler.n_windows  # (10000 - 1) // 100 = 99
    starts = sampler.window_starts(0, 2 * n)
    assert sorted(starts[:n]) == list(range(0, n * 100, 100))
    assert sorted(starts[n:]) == sorted(starts[:n])
    assert not np.array_equal(starts[:n], starts[n:])  # a new permutation per epoch
    again = WindowSampler(TOKENS, seq_len=100, batch_size=11, seed=3).window_starts(0, 2 * n)
    np.testing.assert_array_equal(starts, again)
    other = WindowSampler(TOKENS, seq_len=100, batch_size=11, seed=4).window_starts(0, n)
    assert not np.array_equal(starts[:n], other)


def test_resume_is_exact():
    a = WindowSampler(TOKENS, seq_len=32, batch_size=16, seed=1)
    for _ in range(30):  # crosses an epoch boundary (312 windows)
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(5)]
    b = WindowSampler(TOKENS, seq_len=32, batch_size=16, seed=1)
    b.load_state_dict(state)
    for (xa, ya), (xb, yb) in zip(expected, (b.next_batch() for _ in range(5)), strict=True):
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)
    with pytest.raises(ValueError, match="seq_len"):
        WindowSampler(TOKENS, seq_len=64, batch_size=16, seed=1).load_state_dict(state)


@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_slices_make_the_single_rank_global_batch(world_size):
    single = WindowSampler(TOKENS, seq_len=20, batch_size=8, seed=0)
    ranks = [
        WindowSampler(TOKENS, seq_len=20, batch_size=8, seed=0, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for _ in range(70):  # several epochs of 499 windows
        x, y = single.next_batch()
        parts = [s.next_batch() for s in ranks]
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), x)
        torch.testing.assert_close(torch.cat([p[1] for p in parts]), y)
    with pytest.raises(ValueError, match="does not split"):
        WindowSampler(TOKENS, seq_len=20, batch_size=6, seed=0, rank=0, world_size=4)


def test_epochs_are_counted_and_repetition_warns_once():
    sampler = WindowSampler(TOKENS, seq_len=100, batch_size=33, seed=0)
    for _ in range(6):
        sampler.next_batch()
    assert sampler.epochs == pytest.approx(6 * 33 / 99)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sampler.warn_if_repeating(29_700) == pytest.approx(3.0)
        sampler.warn_if_repeating(29_700)
    assert len(caught) == 1 and "3.00 epochs" in str(caught[0].message)
    assert sampler.warn_if_repeating(5_000) < 1


def test_validation_windows_are_fixed_and_shared():
    a = ValidationWindows(TOKENS, seq_len=64, count=20, seed=0)
    b = ValidationWindows(TOKENS, seq_len=64, count=20, seed=0)
    np.testing.assert_array_equal(a.starts, b.starts)
    assert len(a) == 20 and len(set(a.starts.tolist())) == 20
    batches = list(a.batches(batch_size=8))
    assert [x.shape[0] for x, _ in batches] == [8, 8, 4]
    # ranks split the windows between them without overlap
    per_rank = [torch.cat([x for x, _ in a.batches(8, rank=r, world_size=2)]) for r in range(2)]
    assert sum(len(p) for p in per_rank) == 20
    everything = ValidationWindows(TOKENS, seq_len=64, count=10_000)
    assert len(everything) == (10_000 - 1) // 64


def test_too_small_splits_are_clear_errors():
    with pytest.raises(DataError, match="validation split has 10 tokens"):
        ValidationWindows(TOKENS[:10], seq_len=64, count=4)
    with pytest.raises(DataError, match="training split has 10 tokens"):
        WindowSampler(TOKENS[:10], seq_len=64, batch_size=4, seed=0)
