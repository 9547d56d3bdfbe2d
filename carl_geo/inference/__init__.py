"""Tiled, georeferenced prediction with CARL models.

* :func:`predict_raster`: a raster file in, a GeoTIFF of classes / probabilities / embeddings out
  (streaming, atomic, same grid as the input);
* :func:`predict_dataarray`: the same on an ``xarray.DataArray`` (band, y, x) with dask, for
  mosaics on a cluster;
* :func:`resolve_wavelengths`: which bands to read and their wavelengths (µm);
* :func:`write_quicklook`: a PNG of the input beside the predicted map.
"""

from carl_geo.inference.engine import PredictionCancelled
from carl_geo.inference.predictor import PredictionResult, predict_raster
from carl_geo.io.band_metadata import BandSelection, resolve_band_selection, resolve_wavelengths


def __getattr__(name: str):  # heavy optional parts load on first use
    if name == "predict_dataarray":
        from carl_geo.inference.xarray_predict import predict_dataarray

        return predict_dataarray
    if name == "write_quicklook":
        from carl_geo.inference.quicklook import write_quicklook

        return write_quicklook
    raise AttributeError(f"module 'carl_geo.inference' has no attribute {name!r}")


__all__ = [
    "BandSelection", "PredictionCancelled", "PredictionResult", "predict_dataarray", "predict_raster",
    "resolve_band_selection", "resolve_wavelengths", "write_quicklook",
]
