"""Tiled, georeferenced prediction with CARL models.

* :func:`predict_raster`: a raster file in, a GeoTIFF of classes / probabilities / embeddings out
  (streaming, atomic, same grid as the input);
* :class:`PredictSettings`: how to predict (tiles, batch, device, precision, output dtypes, ...),
  shared by both functions, the command line and the QGIS plugin;
* :func:`predict_dataarray`: the same on an ``xarray.DataArray`` (band, y, x) with dask, for
  mosaics on a cluster;
* :func:`resolve_wavelengths`: which bands to read and their wavelengths (µm);
* :func:`write_quicklook`: a PNG of the input beside the predicted map.

Names load on first use (the command line imports this package without torch).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "PredictionCancelled": "carl_geo.inference.engine",
    "PredictionResult": "carl_geo.inference.predictor",
    "PredictSettings": "carl_geo.inference.settings",
    "predict_raster": "carl_geo.inference.predictor",
    "predict_dataarray": "carl_geo.inference.xarray_predict",
    "write_quicklook": "carl_geo.inference.quicklook",
    "BandSelection": "carl_geo.io.band_metadata",
    "resolve_band_selection": "carl_geo.io.band_metadata",
    "resolve_wavelengths": "carl_geo.io.band_metadata",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
