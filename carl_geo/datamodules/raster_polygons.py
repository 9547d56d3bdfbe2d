"""Semantic segmentation from one raster and a file of labelled polygons, through torchgeo.

Images come from :class:`~carl_geo.datasets.SpectralRaster` (wavelengths attached), masks from
:class:`~carl_geo.datasets.polygon_labels.PolygonLabels`, joined with torchgeo's
``IntersectionDataset`` (the polygons are reprojected to the raster's CRS by torchgeo). Chips are
drawn with torchgeo samplers inside the polygons' extent; validation chips come from a spatially
separate strip (the eastern ``val_fraction`` of that extent), never from the training area.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from shapely.geometry import box
from torch.utils.data import DataLoader
from torchgeo.datasets import stack_samples

from carl_geo.errors import CarlGeoError
from carl_geo.datasets import SpectralRaster
from carl_geo.datasets.polygon_labels import PolygonLabels
from carl_geo.transforms import standardize_image

try:  # torchgeo >= 0.10 renamed the samplers
    from torchgeo.samplers import GriddedPatchSampler as GridSampler
    from torchgeo.samplers import RandomPatchSampler as RandomSampler
except ImportError:  # torchgeo 0.8
    from torchgeo.samplers import GridGeoSampler as GridSampler  # type: ignore[no-redef]
    from torchgeo.samplers import RandomGeoSampler as RandomSampler  # type: ignore[no-redef]


def _standardize(sample: dict[str, Any]) -> dict[str, Any]:
    sample["image"] = standardize_image(sample["image"].float())
    return sample


class RasterPolygonDataModule(L.LightningDataModule):
    """Chips of a raster with masks from polygons.

    Args:
        raster: raster file; default: the shipped North Carolina Landsat 7 scene.
        labels: vector file; default: that scene's training polygons.
        label_field: class column; default ``"label"``.
        sensor, wavelengths, bands: band facts as in :class:`SpectralRaster`.
        chip_size: chip side in pixels.
        batch_size: chips per batch.
        samples_per_epoch: random training chips per epoch.
        val_fraction: width share of the eastern validation strip.
        num_workers: DataLoader workers.
    """

    def __init__(self, raster: str | None = None, labels: str | None = None, label_field: str = "label",
                 sensor: str | None = None, wavelengths: list[float] | None = None, bands: list[int | str] | None = None,
                 chip_size: int = 64, batch_size: int = 8, samples_per_epoch: int = 256, val_fraction: float = 0.25,
                 num_workers: int = 0) -> None:
        super().__init__()
        if raster is None or labels is None:
            from carl_geo.sample_data import nc_landsat7

            scene = nc_landsat7()
            raster, labels = raster or str(scene.image), labels or str(scene.polygons)
            sensor = sensor or (None if wavelengths else scene.sensor)
        if not 0 < val_fraction < 1:
            raise CarlGeoError("val_fraction must be in (0, 1)")
        self.raster, self.labels, self.label_field = raster, labels, label_field
        self.sensor, self.wavelengths, self.bands = sensor, wavelengths, bands
        self.chip_size, self.batch_size = chip_size, batch_size
        self.samples_per_epoch, self.val_fraction, self.num_workers = samples_per_epoch, val_fraction, num_workers

    def setup(self, stage: str | None = None) -> None:
        image = SpectralRaster(self.raster, sensor=self.sensor, wavelengths=self.wavelengths, bands=self.bands,
                               transforms=_standardize)
        self.label_dataset = PolygonLabels(self.labels, self.label_field, crs=image.crs, res=image.res)
        self.class_names = self.label_dataset.class_names
        self.dataset = image & self.label_dataset
        xmin, ymin, xmax, ymax = self.label_dataset.bounds[0].start, self.label_dataset.bounds[1].start, \
            self.label_dataset.bounds[0].stop, self.label_dataset.bounds[1].stop
        split = xmax - (xmax - xmin) * self.val_fraction
        self.train_roi, self.val_roi = box(xmin, ymin, split, ymax), box(split, ymin, xmax, ymax)

    def _loader(self, sampler: Any) -> DataLoader:
        return DataLoader(self.dataset, sampler=sampler, batch_size=self.batch_size, num_workers=self.num_workers,
                          collate_fn=stack_samples)

    def train_dataloader(self) -> DataLoader:
        return self._loader(RandomSampler(self.dataset, size=self.chip_size, length=self.samples_per_epoch,
                                          roi=self.train_roi))

    def val_dataloader(self) -> DataLoader:
        return self._loader(GridSampler(self.dataset, size=self.chip_size, stride=self.chip_size, roi=self.val_roi))

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


def num_classes(labels: str, label_field: str) -> int:
    """K of a label file (handy for configs and scripts)."""
    return len(PolygonLabels(labels, label_field).class_names)


__all__ = ["RasterPolygonDataModule", "num_classes"]
