"""Chips of rasters for CARL-SSL: random chips of a torchgeo GeoDataset, and labelled chips of a scene for
the k-NN monitor (moved here from :mod:`carl_geo.datamodules.carl_ssl` in issue #29; that module still
exports them).

* :class:`RandomChips`: ``length`` random chips of a torchgeo GeoDataset (e.g.
  :class:`~carl_geo.datasets.SpectralRaster`) drawn by torchgeo's ``RandomGeoSampler``, redrawn
  every epoch; samples ``image`` (C, H, W) standardised per image (one scalar mean/std, as
  upstream) and ``wavelengths`` (C,) µm.
* :class:`LabelledRasterChips` (+ :class:`LabelRasterSource`): the bank or query chips of a labelled scene.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.transforms import standardize_image


class RandomChips(Dataset):
    """``length`` random chips of ``dataset`` per epoch, drawn by torchgeo's ``RandomGeoSampler``.

    Args:
        dataset: a GeoDataset whose samples carry ``image`` (C, H, W) and ``wavelengths`` (C,) µm.
        chip_size: chip side in pixels.
        length: chips per epoch.
        seed: epoch ``e`` draws with seed ``seed + e`` (:meth:`set_epoch`).
        nodata: pixel value that marks missing data when every band has it (e.g. outside the
            scene footprint); such pixels are set to the mean of the chip's valid pixels before
            standardisation, so they do not dominate its mean and std. None: no such value.
    """

    def __init__(self, dataset: Any, chip_size: int, length: int, seed: int = 0, nodata: float | None = None) -> None:
        if length < 1:
            raise CarlGeoError("chips_per_epoch must be >= 1")
        self.dataset, self.chip_size, self.length, self.seed = dataset, chip_size, length, seed
        self.nodata = nodata
        self.wavelengths = torch.as_tensor(dataset.wavelengths, dtype=torch.float32)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's chip locations (deterministic in ``seed + epoch``)."""
        from torchgeo.samplers import RandomGeoSampler

        seed = self.seed + epoch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # renamed RandomPatchSampler in torchgeo 0.10
            sampler = RandomGeoSampler(self.dataset, size=self.chip_size, length=self.length,
                                       generator=torch.Generator().manual_seed(seed))
            if not sampler.bounds:
                raise CarlGeoError(f"no raster of this source is at least {self.chip_size}x{self.chip_size} pixels; "
                                   "lower chip_size")
            with torch.random.fork_rng(devices=[]):  # the sampler picks tiles with the global RNG
                torch.manual_seed(seed)
                self.slices = list(sampler)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[self.slices[index]]
        image = torch.as_tensor(sample["image"], dtype=torch.float32)
        if self.nodata is not None:
            missing = (image == self.nodata).all(dim=0)  # (H, W)
            if bool(missing.any()) and not bool(missing.all()):
                image = torch.where(missing, image[:, ~missing].mean(dim=1)[:, None, None], image)
        return {"image": standardize_image(image), "wavelengths": torch.as_tensor(sample["wavelengths"],
                                                                                 dtype=torch.float32)}


@dataclass
class LabelRasterSource:
    """A labelled scene for the k-NN monitor: an image and a class raster on the same pixel grid.

    Non-overlapping ``chip_size`` chips are labelled with their majority class; chips whose
    majority covers less than ``min_purity`` of the chip's labelled pixels, or with fewer than half
    of their pixels labelled, are skipped. The chips form a checkerboard: the "white" squares
    are the bank, the "black" ones the queries.

    Attributes:
        image: multi-band raster.
        labels: single-band class raster (same width/height as ``image``).
        sensor, wavelengths, bands: band facts of ``image`` (as :class:`~carl_geo.datamodules.carl_ssl.RasterSource`).
        chip_size: chip side (pixels).
        min_purity: minimum majority-class fraction.
        ignore_value: label value that means "no label".
    """

    image: str
    labels: str
    sensor: str | None = None
    wavelengths: list[float] | None = None
    bands: list[int | str] | None = None
    chip_size: int = 32
    min_purity: float = 0.6
    ignore_value: int | None = 0


class LabelledRasterChips(Dataset):
    """The bank or query chips of a :class:`LabelRasterSource` (samples: ``image`` (C, s, s)
    standardised, ``wavelengths`` (C,) µm, ``label`` () int64: the class value of the label raster;
    :attr:`classes` lists the values present)."""

    def __init__(self, source: LabelRasterSource, split: str) -> None:
        import numpy as np
        import rasterio

        from carl_geo.io.band_metadata import resolve_wavelengths

        check_choice("split", split, ("bank", "query"))
        s = source.chip_size
        with rasterio.open(source.image) as src:
            sel = resolve_wavelengths(src, wavelengths=source.wavelengths, sensor=source.sensor, bands=source.bands)
            data = src.read(list(sel.band_indexes), masked=True).astype(np.float32)
        with rasterio.open(source.labels) as lab:
            labels = lab.read(1)
        if labels.shape != data.shape[1:]:
            raise CarlGeoError(f"{source.labels} is {labels.shape[1]}x{labels.shape[0]} px but {source.image} is "
                               f"{data.shape[2]}x{data.shape[1]}; the label raster must share the image grid")
        self.wavelengths = torch.tensor(sel.wavelengths, dtype=torch.float32)
        chips = []
        for i in range(labels.shape[0] // s):
            for j in range(labels.shape[1] // s):
                win = labels[i * s:(i + 1) * s, j * s:(j + 1) * s].ravel()
                if source.ignore_value is not None:
                    win = win[win != source.ignore_value]
                if win.size < s * s / 2:
                    continue
                values, counts = np.unique(win, return_counts=True)
                if counts.max() / win.size >= source.min_purity:
                    chips.append((i, j, int(values[counts.argmax()])))
        self.classes = sorted({c for _, _, c in chips})
        parity = 0 if split == "bank" else 1
        self.items = []
        for i, j, c in chips:
            if (i + j) % 2 == parity:
                block = data[:, i * s:(i + 1) * s, j * s:(j + 1) * s]
                fill = float(block.mean()) if block.count() else 0.0
                image = standardize_image(torch.from_numpy(np.ma.filled(block, fill)))
                self.items.append((image, c))
        if not self.items:
            raise CarlGeoError(f"no {split} chips of {s} px with a majority class >= {source.min_purity} in "
                               f"{source.labels}; lower chip_size or min_purity")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.items[index]
        return {"image": image, "wavelengths": self.wavelengths, "label": torch.tensor(label)}


__all__ = ["LabelRasterSource", "LabelledRasterChips", "RandomChips"]
