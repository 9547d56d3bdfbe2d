"""One sensor per batch: the mixed-sensor strategy of upstream CARL's multi-loader."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, ConcatDataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from carl_geo.errors import CarlGeoError
from carl_geo.samplers.epochs import EpochHook, batches_per_rank, shard_batches


class SensorGroupBatchSampler(BatchSampler):
    """Yields batches of dataset indices where every batch comes from one sensor group, and the
    batches of all groups are shuffled together.

    Works with Lightning as built inside a LightningDataModule's ``*_dataloader`` hook: Lightning's
    per-epoch ``set_epoch`` reaches it (new order every epoch), and when Lightning injects a
    :class:`~torch.utils.data.distributed.DistributedSampler` (DDP, or prediction), the batches are
    split between ranks: every rank builds the same batch list (same seed and epoch) and keeps
    every ``world_size``-th batch, so all ranks run the same number of steps.

    Args:
        group_sizes: number of samples in each group; group g owns the contiguous index range
            after groups 0..g-1 (the layout of a :class:`torch.utils.data.ConcatDataset`).
        batch_size: samples per batch.
        shuffle: shuffle samples within groups and batches across groups (new order per epoch).
        drop_last: drop each group's last incomplete batch (and, across ranks, the batches that do
            not fill a round; otherwise the last round is filled with batches from the start).
        seed: base seed; epoch ``e`` uses ``seed + e`` (see :meth:`set_epoch`).
        sampler: only for Lightning's re-instantiation: the sampler it injects; a
            ``DistributedSampler`` gives the rank, world size and epoch. Its order is not used.
    """

    def __init__(self, group_sizes: Sequence[int], batch_size: int, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, sampler: Sampler | None = None) -> None:
        if isinstance(group_sizes, Sampler):
            raise TypeError(
                "SensorGroupBatchSampler was re-created without its group sizes (Lightning does this for "
                "DDP and prediction when the DataLoader was built outside a LightningDataModule hook): "
                "build the DataLoader in your datamodule's *_dataloader() method, or pass "
                "Trainer(use_distributed_sampler=False)")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise CarlGeoError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not group_sizes or any(int(n) < 0 for n in group_sizes):
            raise CarlGeoError("group_sizes must be a non-empty list of non-negative sizes")
        super().__init__(sampler if sampler is not None else EpochHook(), batch_size, bool(drop_last))
        self.group_sizes = [int(n) for n in group_sizes]
        self.shuffle = shuffle
        self.seed = seed
        self._epoch = 0

    @classmethod
    def from_concat_dataset(cls, dataset: ConcatDataset, batch_size: int, **kwargs) -> "SensorGroupBatchSampler":
        """One group per member dataset of a ConcatDataset (e.g. one dataset per sensor)."""
        return cls([len(d) for d in dataset.datasets], batch_size, **kwargs)

    @property
    def epoch(self) -> int:
        """The epoch whose order :meth:`__iter__` yields (the injected sampler's, when it has one)."""
        return int(getattr(self.sampler, "epoch", self._epoch))

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch ``epoch`` (Lightning calls this through :attr:`sampler`)."""
        self._epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    @property
    def _ranks(self) -> tuple[int, int]:
        """(rank, world size) from an injected DistributedSampler, else (0, 1)."""
        if isinstance(self.sampler, DistributedSampler):
            return int(self.sampler.rank), int(self.sampler.num_replicas)
        return 0, 1

    def _all_batches(self) -> list[list[int]]:
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

    def _n_all_batches(self) -> int:
        if self.drop_last:
            return sum(n // self.batch_size for n in self.group_sizes)
        return sum(-(-n // self.batch_size) for n in self.group_sizes)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._ranks
        yield from shard_batches(self._all_batches(), rank, world, self.drop_last)

    def __len__(self) -> int:
        rank, world = self._ranks
        return batches_per_rank(self._n_all_batches(), world, self.drop_last)
