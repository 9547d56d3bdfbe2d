"""Upstream CARL's balanced multi-source loader as a batch sampler (one source per batch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Sampler

from carl_geo.samplers.sensor_group import SensorGroupBatchSampler


class BalancedSourceBatchSampler(SensorGroupBatchSampler):
    """Upstream's balanced multi-source loader (``carl/data/dataloader.py``, ``MultiDataLoader``):
    every source (group) gives the same number of batches per epoch, that of the smallest source
    (``min(n_g // batch_size)``, full batches only), each drawn from the source's shuffled samples,
    and the sources' batches are interleaved in a random order.

    Args: as :class:`~carl_geo.samplers.SensorGroupBatchSampler` (``drop_last`` is always True;
    ``shuffle=False`` keeps sample order and takes the sources in turn).
    """

    def __init__(self, group_sizes: Sequence[int], batch_size: int, shuffle: bool = True, drop_last: bool = True,
                 seed: int = 0, sampler: Sampler | None = None) -> None:
        super().__init__(group_sizes, batch_size, shuffle=shuffle, drop_last=True, seed=seed, sampler=sampler)

    @property
    def batches_per_source(self) -> int:
        return min(n // self.batch_size for n in self.group_sizes)

    def _all_batches(self) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        m, start, per_source = self.batches_per_source, 0, []
        for n in self.group_sizes:
            order = (torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)) + start
            per_source.append([order[i * self.batch_size:(i + 1) * self.batch_size].tolist() for i in range(m)])
            start += n
        if not self.shuffle:
            return [b for turn in zip(*per_source) for b in turn]
        schedule = torch.randperm(m * len(per_source), generator=gen).tolist()  # slot -> source = slot // m
        taken = [0] * len(per_source)
        batches = []
        for slot in schedule:
            g = slot // m
            batches.append(per_source[g][taken[g]])
            taken[g] += 1
        return batches

    def _n_all_batches(self) -> int:
        return self.batches_per_source * len(self.group_sizes)
