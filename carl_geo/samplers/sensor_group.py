"""One sensor per batch: the mixed-sensor strategy of upstream CARL's multi-loader."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import ConcatDataset, Sampler


class SensorGroupBatchSampler(Sampler[list[int]]):
    """Yields batches of dataset indices where every batch comes from one sensor group, and the
    batches of all groups are shuffled together.

    Args:
        group_sizes: number of samples in each group; group g owns the contiguous index range
            after groups 0..g-1 (the layout of a :class:`torch.utils.data.ConcatDataset`).
        batch_size: samples per batch.
        shuffle: shuffle samples within groups and batches across groups (new order per epoch).
        drop_last: drop each group's last incomplete batch.
        seed: base seed; epoch ``e`` uses ``seed + e`` (call :meth:`set_epoch`).
    """

    def __init__(self, group_sizes: Sequence[int], batch_size: int, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not group_sizes or any(n < 0 for n in group_sizes):
            raise ValueError("group_sizes must be a non-empty list of non-negative sizes")
        self.group_sizes = [int(n) for n in group_sizes]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    @classmethod
    def from_concat_dataset(cls, dataset: ConcatDataset, batch_size: int, **kwargs) -> "SensorGroupBatchSampler":
        """One group per member dataset of a ConcatDataset (e.g. one dataset per sensor)."""
        return cls([len(d) for d in dataset.datasets], batch_size, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        batches, start = [], 0
        for n in self.group_sizes:
            order = (torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)) + start
            for i in range(0, n, self.batch_size):
                chunk = order[i : i + self.batch_size].tolist()
                if len(chunk) == self.batch_size or (chunk and not self.drop_last):
                    batches.append(chunk)
            start += n
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        if self.drop_last:
            return sum(n // self.batch_size for n in self.group_sizes)
        return sum(-(-n // self.batch_size) for n in self.group_sizes)
