"""Batch samplers: length bucketing, and resuming part way through an epoch.

Length bucketing makes batches of examples of similar length, so dynamic padding pads little.

Indices come from any sampler (a shuffled one for training); each pool of ``pool_batches`` batches'
worth of them is sorted by length and cut into batches, and for training the batches are then
shuffled, so a batch is homogeneous in length but the order of lengths is random. Deterministic
given ``seed`` and the epoch. Off by default (``data.bucket_by_length``).

Resuming: a run restored from a checkpoint saved mid-epoch must see the rest of that epoch's
batches, in the same order, and nothing twice. Every batch sampler here can skip the batches
its first pass already served (``skip_batches``); the order itself depends only on seed and epoch.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(num_rows)`` that depends only on ``seed`` and the epoch.

    Unlike a ``RandomSampler`` drawing from one generator, epoch ``e``'s order can be rebuilt
    from scratch, which is what resuming from a checkpoint needs. Lightning calls :meth:`set_epoch`.
    """

    def __init__(self, num_rows: int, seed: int = 0) -> None:
        self.num_rows = num_rows
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_rows

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_rows, generator=generator).tolist())


class ResumableBatchSampler(BatchSampler):
    """A ``BatchSampler`` whose first pass skips the ``skip_batches`` batches a resumed run already trained on."""

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool = False, skip_batches: int = 0) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.skip_batches = skip_batches

    def batches(self) -> Iterator[list[int]]:
        return super().__iter__()

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip_batches = self.skip_batches, 0
        return itertools.islice(self.batches(), skip, None)


class LengthBucketBatchSampler(ResumableBatchSampler):
    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: Sequence[int] = (),
        pool_batches: int | None = 50,
        shuffle: bool = True,
        seed: int = 0,
        skip_batches: int = 0,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last, skip_batches)
        self.lengths = list(lengths)
        self.pool_batches = pool_batches
        self.shuffle = shuffle
        self.seed = seed

    def batches(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        pool = len(indices) if self.pool_batches is None else self.pool_batches * self.batch_size
        batches = []
        for start in range(0, len(indices), max(pool, 1)):
            chunk = sorted(indices[start : start + pool], key=lambda i: self.lengths[i], reverse=True)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + getattr(self.sampler, "epoch", 0)).shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        total = len(self.sampler)  # type: ignore[arg-type]
        pool = total if self.pool_batches is None else self.pool_batches * self.batch_size
        sizes = [min(pool, total - start) for start in range(0, total, max(pool, 1))]
        if self.drop_last:
            return sum(size // self.batch_size for size in sizes)
        return sum(-(-size // self.batch_size) for size in sizes)
