"""Raster I/O helpers shared by the predictor, the datasets and the training code.

* :mod:`carl_geo.io.band_metadata`: which bands to read and their wavelengths (µm);
* :mod:`carl_geo.io.wavelength_text`: wavelength lists written as text (µm, nm converted);
* :mod:`carl_geo.io.georeference`: how a raster is placed (CRS + transform, ground control points, RPCs);
* :mod:`carl_geo.io.output_paths`: outputs never replace a file the run reads; atomic writes;
* :mod:`carl_geo.io.failures`: one-line causes of failed raster reads and writes.

Names load on first use (this package imports neither rasterio nor torch by itself).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {**{n: "carl_geo.io.band_metadata" for n in (
    "BandSelection", "file_band_wavelengths", "resolve_band_selection", "resolve_wavelengths")},
    "parse_wavelength_list": "carl_geo.io.wavelength_text"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
