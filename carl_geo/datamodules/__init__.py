"""Lightning data modules feeding the CARL tasks (samples carry ``wavelengths`` in µm)."""

from carl_geo.datamodules.chips import ChipFolderDataModule, ChipFolderDataset, ChipSource
from carl_geo.datamodules.raster_polygons import RasterPolygonDataModule

__all__ = ["ChipFolderDataModule", "ChipFolderDataset", "ChipSource", "RasterPolygonDataModule"]
