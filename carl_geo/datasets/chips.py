"""Labelled chip folders, one sensor per folder (moved here from :mod:`carl_geo.datamodules.chips` in
issue #29; that module still exports these names).

Layout of one source: ``root/<split>/<class name>/*.tif`` (split = ``train``, ``val``, ``test``).
Each chip is a small raster of any band count; its wavelengths come from the source's explicit list,
its sensor preset, or the chip's own metadata (see :mod:`carl_geo.io.band_metadata`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from torch.utils.data import Dataset

from carl_geo.errors import CarlGeoError
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


__all__ = ["CHIP_SUFFIXES", "ChipFolderDataset", "ChipSource", "chip_wavelengths"]
