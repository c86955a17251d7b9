"""Deterministic batches: training windows in a seeded order, a fixed validation set.

A window is ``seq_len + 1`` contiguous tokens starting at a multiple of ``seq_len`` (inputs
and their next-token targets). Each epoch visits every window once, in a permutation seeded
by (seed, epoch). The whole sampler state is one integer, ``position``: windows consumed
since the start, over all ranks. Epoch and index follow from it, so a checkpoint that saves
it resumes exactly. Every rank reads its own contiguous slice of each global batch, so the
global batch is the same whatever the number of ranks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from scaling.data.corpus import DataError


def _gather(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[torch.Tensor, ...]:
    windows = np.asarray(tokens[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int64)
    batch = torch.from_numpy(windows)
    return batch[:, :-1], batch[:, 1:]


class WindowSampler:
    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        """``batch_size``: windows per global batch (all ranks together)."""
        self.tokens, self.seq_len, self.batch_size, self.seed = tokens, seq_len, batch_size, seed
        self.n_windows = (len(tokens) - 1) // seq_len
        if self.n_windows < 1:
            raise DataError(
                f"the training split has {len(tokens)} tokens, fewer than one window of "
                f"seq_len + 1 = {seq_len + 1}"
            )
        if batch_size % world_size:
            raise ValueError(
                f"batch of {batch_size} windows does not split over {world_size} ranks"
            )
        self.rank, self.world_size = rank, world_size
        self.position = 0
        self._permutations: dict[int, np.ndarray] = {}
        self._warned = False

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            self._permutations = {  # keep two: a batch may straddle an epoch boundary
                e: p for e, p in self._permutations.items() if e >= epoch - 1
            }
            rng = np.random.default_rng([self.seed, epoch])
            self._permutations[epoch] = rng.permutation(self.n_windows)
        return self._permutations[epoch]

    def window_starts(self, first: int, count: int) -> np.ndarray:
        """Token offsets of windows ``first .. first + count`` in the global order."""
        positions = np.arange(first, first + count)
        epochs, index = np.divmod(positions, self.n_windows)
        starts = np.empty(count, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            starts[mask] = self._permutation(int(epoch))[index[mask]]
        return starts * self.seq_len

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (inputs, targets) of the next global batch, each (batch/ranks, seq_len)."""
        per_rank = self.batch_size // self.world_size
        starts = self.window_starts(self.position + self.rank * per_rank, per_rank)
        self.position += self.batch_size
        return _gather(self.tokens, starts, self.seq_len)

    @property
    def epochs(self) -> float:
        """Passes over the training windows so far (1.0 = every window seen once)."""
        return self.position / self.n_windows

    def epochs_for(self, n_tokens: float) -> float:
        return n_tokens / (self.n_windows * self.seq_len)

    def warn_if_repeating(self, n_tokens: float) -> float:
        """Warn once when a token budget needs more than one pass over the data."""
        epochs = self.epochs_for(n_tokens)
        if epochs > 1 and not self._warned:
            self._warned = True
            warnings.warn(
                f"the budget of {n_tokens:.4g} tokens is {epochs:.2f} epochs of the training "
                f"split ({self.n_windows * self.seq_len:,} tokens): data will repeat",
                stacklevel=2,
            )
        return epochs

    def state_dict(self) -> dict:
        return {
            "position": self.position,
            "seed": self.seed,
            "n_windows": self.n_windows,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("seq_len", "batch_size", "seed", "n_windows"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"cannot resume the sampler: checkpoint {key} = {state[key]}, "
                    f"now {getattr(self, key)}"
                )
        self.position = int(state["position"])


class ValidationWindows:
    """A fixed set of validation windows: same count, seed and data give the same windows,
    so every run of a sweep is evaluated on identical tokens."""

    def __init__(self, tokens: np.ndarray, seq_len: int, count: int, seed: int = 0):
        n_windows = (len(tokens) - 1) // seq_len
        if n_windows < 1:
            raise DataError(
                f"the validation split has {len(tokens)} tokens, fewer than one window of "
                f"seq_len + 1 = {seq_len + 1}; raise data.val_fraction or lower seq_len"
            )
        rng = np.random.default_rng([seed, 0x5EED])
        chosen = rng.choice(n_windows, size=min(count, n_windows), replace=False)
        self.tokens, self.seq_len = tokens, seq_len
        self.starts = np.sort(chosen) * seq_len

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _gather(self.tokens, starts, self.seq_len)

    def batches(
        self, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the windows (windows rank, rank + world_size, ...)."""
        mine = self.starts[rank::world_size]
        for first in range(0, len(mine), batch_size):
            yield _gather(self.tokens, mine[first : first + batch_size], self.seq_len)
