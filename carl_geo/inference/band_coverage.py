"""Why a raster has no valid pixel: a band that holds no value.

A pixel is valid only where every selected band has a value (not nodata, not NaN), so a single band that is
nodata or NaN everywhere (a zero-filled Sentinel-2 L2A B10 under nodata 0, a failed band of a stack) empties the
whole map or every polygon. :func:`bands_without_data` finds such bands with the library's reader, one band at a
time; :func:`no_data_advice` says which band it is and how to leave it out, or, when no single band is to blame,
what to check about the nodata value. Used by the predictor (an empty map) and by polygon training (no labelled
pixel on data); only when that has happened, so it costs nothing on a good raster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from rasterio.windows import Window

from carl_geo.errors import option

#: ``read(band_indexes (1-based), window) -> (data (C, h, w), valid (h, w) bool)``: the library's
#: :func:`carl_geo.inference.predictor.read_window` bound to an open raster and its nodata override.
BandReader = Callable[[list[int], Window], tuple[np.ndarray, np.ndarray]]


def bands_without_data(read: BandReader, indexes: Sequence[int], windows: Sequence[Window]) -> list[int]:
    """The 1-based bands of ``indexes`` without one valid value (nodata or NaN everywhere) in ``windows``."""
    return [int(i) for i in indexes if not any(read([int(i)], w)[1].any() for w in windows)]


def _band_label(index: int, names: Sequence[str | None] | None, wavelengths: Sequence[float] | None,
                position: int) -> str:
    parts = [names[position]] if names and position < len(names) and names[position] else []
    if wavelengths is not None and position < len(wavelengths):
        parts.append(f"{float(wavelengths[position]):.3f} µm")
    return f"{index} ({', '.join(parts)})" if parts else str(index)


def no_data_advice(dead: Sequence[int], indexes: Sequence[int], *, where: str,
                   names: Sequence[str | None] | None = None, wavelengths: Sequence[float] | None = None,
                   nodata: float | None = None, wavelengths_given: bool = False) -> str:
    """One sentence on why every pixel ``where`` is invalid, and what to change.

    Args:
        dead: the bands without data (:func:`bands_without_data`), 1-based file indexes.
        indexes: every selected band (1-based), in order; ``names`` / ``wavelengths`` (µm) line up with it.
        where: the place, for the sentence (``"under the polygons"``, ``"in the raster"``).
        nodata: the nodata value in use (the file's or the user's), or None.
        wavelengths_given: the user typed the wavelengths, so leaving a band out means dropping its wavelength too.
    """
    value = "" if nodata is None else f" ({nodata:g})"
    keep = [int(i) for i in indexes if int(i) not in set(dead)]
    if not dead or not keep:
        return (f"every pixel {where} is nodata{value} or NaN in at least one band; check the nodata value "
                f"({option('nodata', 'VALUE')} sets another one) and the bands ({option('bands', 'B,B,...', '[...]')})")
    pos = {int(i): k for k, i in enumerate(indexes)}
    labels = ", ".join(_band_label(i, names, wavelengths, pos[i]) for i in dead)
    one = len(dead) == 1
    also = (" and its wavelength" if one else " and their wavelengths") if wavelengths_given else ""
    return (f"band{'' if one else 's'} {labels} {'is' if one else 'are'} nodata{value} or NaN everywhere {where}, "
            f"and a pixel has data only where every band has: leave {'it' if one else 'them'} out with "
            f"{option('bands', ','.join(map(str, keep)), repr(keep))}{also}")
