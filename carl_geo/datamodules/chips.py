"""Scene classification from folders of labelled chips, one or several sensors.

Layout of one source: ``root/<split>/<class name>/*.tif`` (split = ``train``, ``val``, ``test``).
Each chip is a small raster of any band count; its wavelengths come from the source's explicit list,
its sensor preset, or the chip's own metadata (see :mod:`carl_geo.io.band_metadata`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import rasterio
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from carl_geo.errors import CarlGeoError
from carl_geo.datasets.collate import pad_bands_collate, same_sensor_collate
from carl_geo.samplers import SensorGroupBatchSampler
from carl_geo.transforms import standardize_image

CHIP_SUFFIXES = (".tif", ".tiff")


@dataclass
class ChipSource:
    """One folder of chips from one sensor.

    Attributes:
        root: folder with ``<split>/<class>/*.tif``.
        sensor: :mod:`carl_geo.sensors` preset name, or None.
        wavelengths: explicit µm per band, or None (then ``sensor``, then file metadata).
    """

    root: str
    sensor: str | None = None
    wavelengths: list[float] | None = None


def chip_wavelengths(path: Path, source: ChipSource) -> list[float]:
    """Wavelengths (µm) of a chip's bands, resolved as the predictor resolves them."""
    from carl_geo.io.band_metadata import resolve_band_selection

    with rasterio.open(path) as src:
        _, wavelengths, _ = resolve_band_selection(src, wavelengths=source.wavelengths, sensor=source.sensor, bands=None)
    return list(wavelengths)


class ChipFolderDataset(Dataset):
    """Chips of one source and split. Samples: ``image`` (C, H, W) float32 standardised per image
    (one scalar mean/std, as upstream), ``wavelengths`` (C,) µm, ``label`` () int64.

    Args:
        source: the folder and its band facts.
        split: sub-folder name.
        classes: class names in label order; default: sorted sub-folder names of ``split``.
    """

    def __init__(self, source: ChipSource, split: str, classes: Sequence[str] | None = None) -> None:
        folder = Path(source.root) / split
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no '{split}' folder in {source.root}: chip sources must be laid out as "
                f"{source.root}/{{train,val,test}}/<class>/*.tif (set data.init_args.sources[].root)")
        self.classes = list(classes) if classes else sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not self.classes:
            raise CarlGeoError(f"{folder} has no class sub-folders")
        self.items = [(p, i) for i, c in enumerate(self.classes) for p in sorted((folder / c).glob("*"))
                      if p.suffix.lower() in CHIP_SUFFIXES]
        if not self.items:
            raise CarlGeoError(f"no chips (*.tif) under {folder}/<class>/")
        self.wavelengths = torch.tensor(chip_wavelengths(self.items[0][0], source), dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.items[index]
        with rasterio.open(path) as src:
            data = src.read(masked=True).astype(np.float32)
        if data.shape[0] != len(self.wavelengths):
            raise CarlGeoError(f"{path} has {data.shape[0]} bands, other chips of its source {len(self.wavelengths)}")
        fill = float(data.mean()) if data.count() else 0.0
        image = torch.from_numpy(np.ma.filled(data, fill))
        return {"image": standardize_image(image), "wavelengths": self.wavelengths, "label": torch.tensor(label)}


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
        if batching not in ("group", "pad"):
            raise CarlGeoError("batching must be 'group' or 'pad'")
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
