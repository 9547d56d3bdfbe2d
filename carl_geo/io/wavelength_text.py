"""Wavelength lists written as text: ``"0.49,0.56,0.665"``, ``"490 560 665"`` (nm, converted), ENVI's
``"{450.0, 550.0}"``; one parser for the command line, the QGIS plugin and file metadata.

Imports nothing heavy (the command line parses its options with it before torch or rasterio load).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from carl_geo.errors import CarlGeoError
from carl_geo.validation import MAX_WAVELENGTH_UM

_UNIT_FACTORS = {
    "nm": 1e-3, "nanometer": 1e-3, "nanometers": 1e-3, "nanometre": 1e-3, "nanometres": 1e-3,
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micrometer": 1.0, "micrometers": 1.0, "micrometre": 1.0,
    "micrometres": 1.0, "micron": 1.0, "microns": 1.0,
    "mm": 1e3, "millimeter": 1e3, "millimeters": 1e3, "millimetre": 1e3, "millimetres": 1e3,
}
_WAVENUMBER_UNITS = {"wavenumber", "wavenumbers", "cm-1", "1/cm", "cm^-1"}


def parse_wavelength_list(text: str | Sequence[float | str], units: str | None = None) -> list[float]:
    """Wavelengths in µm from ``"{450, 550, 650}"``, ``"0.49,0.56"`` or a sequence.

    Args:
        text: the values (ENVI braces and whitespace allowed).
        units: ``"nm"``, ``"um"``/``"µm"``/``"micrometers"``, ``"mm"``, ``"wavenumber"`` (cm⁻¹), or
            None/unknown: then values above :data:`MAX_WAVELENGTH_UM` are taken to be nm.

    Raises:
        CarlGeoError: an entry is not a number.
    """
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,\s;]+", text.strip().strip("{}[]()")) if p]
    else:
        parts = list(text)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise CarlGeoError(f"wavelengths must be numbers, got {text!r}") from None
    key = (units or "").strip().lower()
    if key in _WAVENUMBER_UNITS:
        return [1e4 / v if v else math.nan for v in values]
    factor = _UNIT_FACTORS.get(key)
    if factor is None:
        large = [v for v in values if v > MAX_WAVELENGTH_UM]
        if large and len(large) < len(values):  # one mistyped value must not rescale the others
            small = [v for v in values if v <= MAX_WAVELENGTH_UM]
            odd, rest, unit = (large, small, "nanometres") if len(large) <= len(small) else (small, large,
                                                                                              "micrometres")
            raise CarlGeoError(f"the wavelengths mix units: {', '.join(f'{v:g}' for v in odd)} {'looks' if len(odd) == 1 else 'look'} like {unit} "
                               f"among {', '.join(f'{v:g}' for v in rest[:4])}{', ...' if len(rest) > 4 else ''}; "
                               "give every wavelength in µm (or every one in nm)")
        factor = 1e-3 if large else 1.0
    return [v * factor for v in values]
