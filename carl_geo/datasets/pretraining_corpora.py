"""Readers for upstream CARL's three pre-training corpora, in their published folder layouts
(``carl_geo.ssl.layouts`` before issue #29; that name still imports).

Each reader is a map-style dataset whose samples are ``{"image": (C, H, W) float32, "wavelengths":
(C,) float32 µm}``, the image scaled to reflectance (digital numbers / 10000) and standardised by
one scalar mean/std over all its bands (upstream's order: scale, standardise, then draw a band
subset, see :class:`carl_geo.datasets.band_subset.RandomBandSubset`).

* :class:`HySpecNet11k` (EnMAP, 202 bands): ``ROOT/<tile>/<patch>/<patch>-SPECTRAL_IMAGE.TIF``;
* :class:`SpectralEarth` (EnMAP, several dates per location): ``ROOT/<patch>/*.tif``; each
  sample is one date drawn at random (per epoch, reproducibly);
* :class:`BigEarthNetS2` (Sentinel-2, 12 bands): ``ROOT/<tile>/<patch>/<patch>_<band>.tif``, one file
  per band at 10, 20 or 60 m, each resized bilinearly to ``size`` (upstream 128).

Differences from upstream's loaders (``carl/data/*SSL.py`` of github IMSY-DKFZ/CARL, 426cf54):

* SpectralEarth: upstream calls ``image.permute(2, 0, 1)`` on the (C, H, W) array rasterio already
  returns, so its "bands" are image columns; here the bands are read as bands.
* BigEarthNet: upstream silently skips unreadable band files (a sample may then have fewer bands);
  here a missing or unreadable band file is an error that names it.
* Samples stay float32 (upstream returns float16 images and wavelengths).
* Folders are listed in sorted order (upstream: ``os.listdir`` order) and the random date of
  SpectralEarth is drawn from a generator seeded by (seed, epoch, index) instead of ``random``.
* The wavelengths of the EnMAP sources come from a text file of nanometres, one per band
  (upstream's ``wlens_path``), or default to the ``enmap`` preset of :mod:`carl_geo.sensors`
  (upstream's 202-band list).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from carl_geo.datasets.band_subset import sample_generator
from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.transforms import standardize_image

#: Reflectance scale of the stored digital numbers (upstream divides by 10000).
REFLECTANCE_SCALE = 1e-4
#: Sentinel-2 bands of BigEarthNet and their centre wavelengths (nm, upstream's table; no B10).
BIGEARTHNET_BANDS_NM = {"B01": 442.7, "B02": 492.4, "B03": 559.8, "B04": 664.6, "B05": 704.1, "B06": 740.5,
                        "B07": 782.8, "B08": 832.8, "B8A": 864.7, "B09": 945.1, "B11": 1613.7, "B12": 2202.4}
LAYOUTS = ("hyspecnet11k", "spectralearth", "bigearthnet")


def read_wavelengths_nm(path: str | os.PathLike) -> list[float]:
    """Wavelengths (nm, one number per line, upstream's ``wlens_path`` format) -> µm."""
    values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    if values.ndim != 1 or not len(values) or not np.isfinite(values).all() or (values < 100).any():
        raise CarlGeoError(f"{path}: expected one wavelength in nanometres per line")
    return [round(float(v) / 1000.0, 6) for v in values]


def _enmap_wavelengths(wavelengths_file: str | None) -> list[float]:
    if wavelengths_file:
        return read_wavelengths_nm(wavelengths_file)
    from carl_geo.sensors import get_sensor

    return list(get_sensor("enmap").wavelengths)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _read(path: Path, bands: Sequence[int] | None = None) -> np.ndarray:
    """(C, H, W) float32 of a raster (1-based ``bands``, default all); errors name the file."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.read(list(bands) if bands else None).astype(np.float32)
    except (rasterio.errors.RasterioError, OSError, IndexError) as e:
        raise CarlGeoError(f"cannot read {path}: {e}") from None


def _sample(image: np.ndarray | Tensor, wavelengths: Tensor) -> dict[str, Any]:
    img = torch.as_tensor(image, dtype=torch.float32) * REFLECTANCE_SCALE
    return {"image": standardize_image(img), "wavelengths": wavelengths.clone()}


class _EnMAPFiles(Dataset):
    """Shared part of the two EnMAP readers: wavelengths, band selection, checks."""

    sensor = "enmap"

    def __init__(self, root: str | os.PathLike, wavelengths_file: str | None, bands: Sequence[int] | None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"pre-training folder not found: {root}")
        self.bands = list(bands) if bands else None
        self.wavelengths = torch.tensor(_enmap_wavelengths(wavelengths_file), dtype=torch.float32)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _load(self, path: Path) -> dict[str, Any]:
        image = _read(path, self.bands)
        if image.shape[0] != len(self.wavelengths):
            raise CarlGeoError(f"{path} has {image.shape[0]} bands but {len(self.wavelengths)} wavelengths are given; "
                             "give a wavelength file with one line per band of the files (wavelengths_file), or "
                             "select the bands it lists (bands)")
        return _sample(image, self.wavelengths)


class HySpecNet11k(_EnMAPFiles):
    """HySpecNet-11k EnMAP patches: ``ROOT/<tile>/<patch>/<patch>-SPECTRAL_IMAGE.TIF``.

    Args:
        root: the folder holding the tile folders (upstream ``root_dir``).
        wavelengths_file: nm per band, one per line (upstream ``wlens_path``); default: the
            ``enmap`` preset (202 bands).
        bands: 1-based bands to read (default all; their count must match the wavelengths).
    """

    def __init__(self, root: str | os.PathLike, wavelengths_file: str | None = None,
                 bands: Sequence[int] | None = None) -> None:
        super().__init__(root, wavelengths_file, bands)
        self.paths = [patch / f"{patch.name}-SPECTRAL_IMAGE.TIF"
                      for tile in _subfolders(self.root) for patch in _subfolders(tile)]
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} HySpecNet-11k patch folder(s) without their image, e.g. "
                                    f"{missing[0]}")
        if not self.paths:
            raise FileNotFoundError(f"no HySpecNet-11k patches (<tile>/<patch>/<patch>-SPECTRAL_IMAGE.TIF) "
                                    f"under {root}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._load(self.paths[index])


class SpectralEarth(_EnMAPFiles):
    """SpectralEarth EnMAP locations: ``ROOT/<patch>/*.tif``, one file per acquisition date.

    Each sample is one location; its date is drawn at random, the draw being fixed by
    (``seed``, epoch, index) (:meth:`set_epoch`).

    Args:
        root: folder of the location folders (upstream ``root_dir``).
        wavelengths_file, bands: as :class:`HySpecNet11k`.
        seed: base seed of the date draws.
    """

    def __init__(self, root: str | os.PathLike, wavelengths_file: str | None = None,
                 bands: Sequence[int] | None = None, seed: int = 0) -> None:
        super().__init__(root, wavelengths_file, bands)
        self.seed = seed
        self.dates = [sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".tif", ".tiff"))
                      for folder in _subfolders(self.root)]
        self.dates = [d for d in self.dates if d]
        if not self.dates:
            raise FileNotFoundError(f"no SpectralEarth locations (<patch>/*.tif) under {root}")

    def __len__(self) -> int:
        return len(self.dates)

    def date_index(self, index: int) -> int:
        """Which date of location ``index`` this epoch's sample uses."""
        gen = sample_generator(self.seed, self.epoch, index)
        return int(torch.randint(len(self.dates[index]), (1,), generator=gen))

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._load(self.dates[index][self.date_index(index)])


class BigEarthNetS2(Dataset):
    """BigEarthNet Sentinel-2 patches: ``ROOT/<tile>/<patch>/<patch>_<band>.tif``, one file per band.

    Bands B01-B12 without B10 (:data:`BIGEARTHNET_BANDS_NM`), each resized bilinearly to
    ``size`` x ``size`` (upstream 128) before stacking.

    Args:
        root: folder of the tile folders (upstream ``root_dir``).
        size: output side in pixels.
    """

    sensor = "sentinel2_l2a"

    def __init__(self, root: str | os.PathLike, size: int = 128) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"pre-training folder not found: {root}")
        self.size = size
        self.band_names = list(BIGEARTHNET_BANDS_NM)
        self.wavelengths = torch.tensor([v / 1000.0 for v in BIGEARTHNET_BANDS_NM.values()], dtype=torch.float32)
        self.patches = [patch for tile in _subfolders(self.root) for patch in _subfolders(tile)]
        if not self.patches:
            raise FileNotFoundError(f"no BigEarthNet patches (<tile>/<patch>/<patch>_B01.tif ...) under {root}")

    def __len__(self) -> int:
        return len(self.patches)

    def band_path(self, index: int, band: str) -> Path:
        patch = self.patches[index]
        return patch / f"{patch.name}_{band}.tif"

    def __getitem__(self, index: int) -> dict[str, Any]:
        bands = []
        for name in self.band_names:
            path = self.band_path(index, name)
            if not path.is_file():
                raise FileNotFoundError(f"BigEarthNet band file missing: {path}")
            band = torch.from_numpy(_read(path, [1]))[None]  # (1, 1, h, w)
            bands.append(F.interpolate(band, size=(self.size, self.size), mode="bilinear", align_corners=False)[0])
        return _sample(torch.cat(bands), self.wavelengths)


@dataclass
class LayoutSource:
    """One of upstream's pre-training sources, for :class:`~carl_geo.datamodules.RasterSSLDataModule`.

    Attributes:
        layout: ``"hyspecnet11k"``, ``"spectralearth"`` or ``"bigearthnet"``.
        root: the folder upstream calls ``root_dir``.
        wavelengths_file: nm per band (EnMAP layouts; default: the ``enmap`` preset).
        bands: 1-based bands to read (EnMAP layouts).
        size: output side of BigEarthNet samples (upstream 128).
        band_subset: random bands per sample for this source (overrides the data module's
            ``band_subset``; 0 = all bands). Upstream: 64 for the EnMAP sources, none for BigEarthNet.
    """

    layout: str
    root: str
    wavelengths_file: str | None = None
    bands: list[int] | None = None
    size: int = 128
    band_subset: int | None = None

    def build(self, seed: int = 0) -> Dataset:
        """The reader of this source."""
        check_choice("layout", self.layout, LAYOUTS)
        if self.layout == "hyspecnet11k":
            return HySpecNet11k(self.root, self.wavelengths_file, self.bands)
        if self.layout == "spectralearth":
            return SpectralEarth(self.root, self.wavelengths_file, self.bands, seed=seed)
        return BigEarthNetS2(self.root, self.size)


__all__ = ["BIGEARTHNET_BANDS_NM", "BigEarthNetS2", "HySpecNet11k", "LAYOUTS", "LayoutSource", "SpectralEarth",
           "read_wavelengths_nm"]
