"""Data layer: wavelength-aware torchgeo rasters and vector training labels.

* :class:`SpectralRaster`: torchgeo ``RasterDataset`` whose samples carry ``wavelengths`` (C,) µm;
* :mod:`carl_geo.datasets.vector_labels`: polygons (any OGR format, any CRS) -> class mask on a grid.
"""

from carl_geo.datasets.raster import SpectralRaster
from carl_geo.datasets.vector_labels import (
    IGNORE_INDEX,
    LabelRaster,
    check_label_pixels,
    class_names_from_values,
    rasterize_labels,
    read_label_vector,
)

__all__ = [
    "IGNORE_INDEX", "LabelRaster", "SpectralRaster", "check_label_pixels", "class_names_from_values",
    "rasterize_labels", "read_label_vector",
]
