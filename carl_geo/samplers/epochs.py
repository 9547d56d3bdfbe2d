"""Epoch and rank machinery shared by carl_geo's batch samplers.

* :class:`EpochHook`: stands in for ``batch_sampler.sampler``: Lightning calls ``set_epoch`` there
  (not on the batch sampler itself) at the start of every training epoch;
* :func:`batches_per_rank` / :func:`shard_batches`: one rank's share of an epoch's batches, the same
  number on every rank (every rank builds the same batch list from the same seed and epoch);
* :class:`EpochBatchSampler`: wraps any batch sampler with both (and redraws datasets that draw
  new samples per epoch), for data modules that shard batches themselves (CARL-SSL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler


class EpochHook:
    """The epoch Lightning last announced (``set_epoch``), optionally forwarded to ``on_epoch``."""

    def __init__(self, on_epoch: Callable[[int], None] | None = None) -> None:
        self.epoch = 0
        self._on_epoch = on_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self._on_epoch is not None:
            self._on_epoch(epoch)


def batches_per_rank(n_batches: int, world_size: int, drop_last: bool) -> int:
    """Batches each of ``world_size`` ranks runs per epoch: ``n // world`` (``drop_last``: the batches
    that do not fill a round are dropped), else ``ceil(n / world)`` (the last round is filled)."""
    return n_batches // world_size if drop_last else -(-n_batches // world_size)


def shard_batches(batches: Sequence[Any], rank: int, world_size: int, drop_last: bool) -> list[Any]:
    """Rank ``rank``'s share of ``batches``: every ``world_size``-th batch from ``rank`` on,
    :func:`batches_per_rank` of them; without ``drop_last`` the last round is filled with batches
    from the start, so all ranks run the same number of steps."""
    batches = list(batches)
    if world_size == 1:
        return batches
    n = batches_per_rank(len(batches), world_size, drop_last)
    if batches and len(batches) < n * world_size:
        batches = [batches[i % len(batches)] for i in range(n * world_size)]
    return batches[rank::world_size][:n]


class EpochBatchSampler(Sampler[list[int]]):
    """Wraps a batch sampler: forwards Lightning's ``set_epoch`` (also to chip datasets, which redraw
    their locations) and keeps rank ``rank``'s share of the batches (:func:`shard_batches` with
    ``drop_last``: the same count on every rank).

    With DataLoader workers, the redrawn locations reach the workers when they start for the
    epoch (the default, ``persistent_workers=False``).

    Args:
        batch_sampler: yields lists of dataset indices.
        datasets: datasets with a ``set_epoch(epoch)`` method to call (others are skipped).
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, batch_sampler: Any, datasets: Sequence[Any] = (), rank: int = 0, world_size: int = 1) -> None:
        self.batch_sampler, self.datasets = batch_sampler, list(datasets)
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochHook(self.set_epoch)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        yield from shard_batches(list(self.batch_sampler), self.rank, self.world_size, drop_last=True)

    def __len__(self) -> int:
        return batches_per_rank(len(self.batch_sampler), self.world_size, drop_last=True)
