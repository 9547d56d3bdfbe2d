"""Scene classification from folders of labelled chips, one or several sensors.

Layout of one source: ``root/<split>/<class name>/*.tif`` (split = ``train``, ``val``, ``test``).
Each chip is a small raster of any band count; its wavelengths come from the source's explicit list,
its sensor preset, or the chip's own metadata (see :mod:`carl_geo.io.band_metadata`). The dataset of one
source and split is :class:`~carl_geo.datasets.chips.ChipFolderDataset` (re-exported here).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from torch.utils.data import ConcatDataset, DataLoader

from carl_geo.datasets.chips import CHIP_SUFFIXES, ChipFolderDataset, ChipSource, chip_wavelengths
from carl_geo.datasets.collate import pad_bands_collate, same_sensor_collate
from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.samplers import SensorGroupBatchSampler


class ChipFolderDataModule(L.LightningDataModule):
    """Chips from one or several sensors (sources) for :class:`~carl_geo.trainers.CARLClassificationTask`.

    Args:
        sources: one :class:`ChipSource` (or dict with its fields) per sensor folder.
        batch_size: samples per batch.
        batching: ``"group"`` (every batch from one sensor, batches of all sensors shuffled; upstream
            CARL's way) or ``"pad"`` (mixed batches padded to the largest band count with a band mask).
        num_workers: DataLoader workers.
        classes: class names; default: the first source's train sub-folders.
    """

    def __init__(self, sources: list[ChipSource | dict[str, Any]], batch_size: int = 16, batching: str = "group",
                 num_workers: int = 0, classes: list[str] | None = None) -> None:
        super().__init__()
        check_choice("batching", batching, ("group", "pad"))
        self.sources = [s if isinstance(s, ChipSource) else ChipSource(**s) for s in sources]
        if not self.sources:
            raise CarlGeoError("at least one chip source is needed")
        self.batch_size = batch_size
        self.batching = batching
        self.num_workers = num_workers
        self.classes = classes

    def _dataset(self, split: str) -> ConcatDataset:
        first = ChipFolderDataset(self.sources[0], split, self.classes)
        self.classes = first.classes
        return ConcatDataset([first] + [ChipFolderDataset(s, split, self.classes) for s in self.sources[1:]])

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_dataset, self.val_dataset = self._dataset("train"), self._dataset("val")
        if stage in ("validate",):
            self.val_dataset = self._dataset("val")
        if stage in ("test", "predict"):
            self.test_dataset = self._dataset("test")

    def _loader(self, dataset: ConcatDataset, shuffle: bool) -> DataLoader:
        if self.batching == "pad":
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                              collate_fn=pad_bands_collate)
        sampler = SensorGroupBatchSampler.from_concat_dataset(dataset, self.batch_size, shuffle=shuffle)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=same_sensor_collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)


# the dataset and its source: re-exported from carl_geo.datasets.chips
__all__ = ["CHIP_SUFFIXES", "ChipFolderDataModule", "ChipFolderDataset", "ChipSource", "chip_wavelengths"]
