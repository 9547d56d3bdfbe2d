"""Raster I/O helpers shared by the predictor, the datasets and the training code."""

from carl_geo.io.band_metadata import (
    BandSelection,
    file_band_wavelengths,
    parse_wavelength_list,
    resolve_band_selection,
    resolve_wavelengths,
)

__all__ = [
    "BandSelection", "file_band_wavelengths", "parse_wavelength_list", "resolve_band_selection",
    "resolve_wavelengths",
]
