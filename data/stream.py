"""The training stream: which image, and which random draw, each training sample of a run gets.

A run sees one endless stream of sample positions p = 0, 1, 2, ...; position p shows image perm_e[p mod N] of the
epoch e = p div N, where perm_e is a permutation seeded by (seed, e). Everything random about that sample (its XDoG
blur, its TPS warp, its noise level, noise and condition dropout) is drawn from a generator seeded by
(seed, p) alone. So the batch of optimizer step t is a fixed function of (seed, t):

- resuming from any checkpoint continues the stream at the checkpoint's step (``start()``), so an interrupted and
  resumed run trains on exactly the samples of an uninterrupted one;
- with DDP, rank r of W takes positions p = W q + r: the union of the ranks' batches at step t is the batch a single
  process with W times the batch size gets at step t.

:class:`StreamSampler` subclasses ``DistributedSampler`` so that Lightning uses it as it is instead of wrapping it.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from torch.utils.data.distributed import DistributedSampler

# SeedSequence words that keep the stream's random uses apart.
_ORDER = 201
_DRAW = 202


def sample_seed(seed: int, position: int) -> int:
    """The 63-bit seed of every random draw of the sample at stream ``position``."""
    return int(np.random.SeedSequence([seed, _DRAW, position]).generate_state(1, dtype=np.uint64)[0] >> 1)


class StreamSampler(DistributedSampler):
    """Yields ``(image index, stream position)`` for one epoch's worth of whole batches of this rank.

    Args:
        size: number of training images N.
        batch_size: samples per batch on this rank.
        seed: the run's seed.
        start: returns the number of batches this rank has already consumed (e.g. the trainer's global step times
            the gradient accumulation), read each time an epoch's iterator is made.
        rank, world_size: this process's place among the DDP processes.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: Callable[[], int], rank: int = 0,
                 world_size: int = 1) -> None:
        if size < 1 or batch_size < 1:
            raise ValueError(f"need at least one image and a batch size >= 1, got {size} and {batch_size}")
        # DistributedSampler's own state is not used; its constructor only checks rank < world_size.
        super().__init__(range(size), num_replicas=world_size, rank=rank, shuffle=False)
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.batches = max(1, size // (batch_size * world_size))  # whole batches per epoch on every rank
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, _ORDER, epoch]).permutation(self.size)}
        return self._orders[epoch]

    def __len__(self) -> int:
        return self.batches * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.start() * self.batch_size  # this rank's samples already consumed
        for k in range(first, first + len(self)):
            position = k * self.num_replicas + self.rank
            epoch, offset = divmod(position, self.size)
            yield int(self.order(epoch)[offset]), position

    def set_epoch(self, epoch: int) -> None:
        """Epochs are implied by the stream position; Lightning's epoch counter changes nothing."""
