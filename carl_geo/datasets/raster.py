"""A wavelength-aware torchgeo :class:`~torchgeo.datasets.RasterDataset`.

:class:`SpectralRaster` indexes one or more raster files (any band count) like any torchgeo
``RasterDataset`` (``dataset[GeoSlice]``, torchgeo samplers, ``stack_samples``) and adds the
band centre wavelengths (µm) to every sample, so that CARL can be called as
``model(sample["image"], sample["wavelengths"])``.

Sample keys: ``image`` (C, H, W) float32 (the file's values with its GDAL scale / offset tags applied, as the
predictor reads them; nodata filled with the file's nodata value, see torchgeo, and left unscaled),
``wavelengths`` (C,) float32 µm, and torchgeo's ``bounds`` and ``transform``. After ``stack_samples`` the wavelengths are (B, C), which CARL accepts.

Wavelengths come from, in this order: an explicit list, a sensor preset
(:mod:`carl_geo.sensors`), or the first file's metadata (band descriptions, GDAL ``IMAGERY``
``CENTRAL_WAVELENGTH_UM``, ENVI ``wavelength``), resolved by
:func:`carl_geo.io.band_metadata.resolve_wavelengths` exactly as the predictor does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import rasterio
import torch
from torchgeo.datasets import RasterDataset
try:  # torchgeo >= 0.9
    from torchgeo.datasets.utils import GeoSlice, Sample
except ImportError:  # torchgeo 0.8 (Python 3.11, e.g. the QGIS venv): names for type hints only
    GeoSlice = Any  # type: ignore[misc,assignment]
    Sample = dict  # type: ignore[misc,assignment]

from carl_geo.errors import CarlGeoError
from carl_geo.io.band_metadata import resolve_wavelengths
from carl_geo.io.scale_offset import band_scale_offset


class SpectralRaster(RasterDataset):
    """Multi-band raster files whose samples carry their wavelengths.

    Args:
        paths: raster file(s) or folder(s) (folders are searched with ``filename_glob``).
        wavelengths: one µm value per selected band.
        sensor: sensor preset name (e.g. ``"landsat7_etm"``, ``"sentinel2_l2a"``).
        bands: 1-based band indexes or band names to read (default all bands).
        wavelength_range: ``(min_um, max_um)``: of the bands above, keep those whose centre
            wavelength lies in the closed interval (e.g. ``(0.4, 1.0)`` for VNIR only).
        crs, res: target CRS / resolution (default: those of the first file).
        transforms: applied to each sample after ``wavelengths`` has been added.
        cache: keep file handles open (torchgeo).
        filename_glob: pattern of files inside folders (default ``"*.tif"``).

    Attributes:
        wavelengths: (C,) float32 tensor, µm.
        band_names: names of the selected bands, or None.
        sensor: the preset that supplied the wavelengths, or None.

    Raises:
        ValueError: wavelengths missing, in nm, or not one per band; files whose band count
            differs from the first file's.
    """

    filename_glob = "*.tif"
    is_image = True
    separate_files = False

    def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike] = "data", *,
                 wavelengths: Sequence[float] | None = None, sensor: str | None = None,
                 bands: Sequence[int | str] | None = None, wavelength_range: tuple[float, float] | None = None,
                 crs: Any = None, res: float | tuple[float, float] | None = None,
                 transforms: Callable[[Sample], Sample] | None = None, cache: bool = True,
                 filename_glob: str | None = None) -> None:
        if filename_glob is not None:
            self.filename_glob = filename_glob
        super().__init__(paths, crs=crs, res=res, bands=None, transforms=None, cache=cache)
        self.sample_transforms = transforms
        files = list(self.index.filepath)
        with rasterio.open(files[0]) as first:
            sel = resolve_wavelengths(first, wavelengths=wavelengths, sensor=sensor, bands=bands)
            count = first.count
            tags = (tuple(first.scales), tuple(first.offsets), first.nodata)
        for path in files[1:]:
            with rasterio.open(path) as other:
                if other.count != count:
                    raise CarlGeoError(f"{path} has {other.count} bands but {files[0]} has {count}; "
                                       "a SpectralRaster needs files of the same band layout")
                if (tuple(other.scales), tuple(other.offsets), other.nodata) != tags:
                    raise CarlGeoError(f"{path} has other GDAL scale / offset / nodata tags than {files[0]}; a "
                                       "SpectralRaster mosaics files read alike: index them as separate datasets")
        keep = list(range(len(sel.band_indexes)))
        if wavelength_range is not None:
            lo, hi = (float(v) for v in wavelength_range)
            keep = [i for i in keep if lo <= sel.wavelengths[i] <= hi]
            if not keep:
                raise CarlGeoError(f"no band of {files[0]} lies in {lo}-{hi} µm (band wavelengths: "
                                   f"{', '.join(f'{w:g}' for w in sel.wavelengths)} µm)")
        self.band_indexes = [sel.band_indexes[i] for i in keep]
        self.wavelengths = torch.tensor([sel.wavelengths[i] for i in keep], dtype=torch.float32)
        self.band_names = [sel.band_names[i] for i in keep] if sel.band_names else None
        self.sensor = sel.sensor
        #: ``(scale, offset)`` (C,) float32 of the selected bands, or None: applied to every sample.
        self.scale_offset = band_scale_offset(tags[0], tags[1], self.band_indexes)
        self._nodata = tags[2]

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Sample at a spatial(-temporal) slice: image (C, H, W), wavelengths (C,), bounds, transform."""
        sample = super().__getitem__(index)
        if self.scale_offset is not None:
            sample["image"] = self._apply_scale_offset(sample["image"])
        sample["wavelengths"] = self.wavelengths.clone()
        if self.sample_transforms is not None:
            sample = self.sample_transforms(sample)
        return sample

    def _apply_scale_offset(self, image: torch.Tensor) -> torch.Tensor:
        """``raw x scale + offset`` per band of (C, H, W), float32; nodata pixels keep the nodata value."""
        scale, offset = (torch.from_numpy(np.asarray(a)).view(-1, 1, 1) for a in self.scale_offset)  # type: ignore[misc]
        raw = image.float()
        out = raw * scale + offset
        if self._nodata is not None and not np.isnan(self._nodata):
            out = torch.where(raw == float(self._nodata), raw, out)
        return out
