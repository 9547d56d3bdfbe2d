"""The GDAL scale and offset tags of a raster's bands (``value = raw x scale + offset``).

One place for every reader: the predictor's ``read_window``, polygon training's scene and the torchgeo
:class:`~carl_geo.datasets.raster.SpectralRaster` apply them alike (e.g. Landsat Collection 2 surface reflectance
= DN x 2.75e-5 - 0.2), so a model sees the same values in training and prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def scale_offset(ds: Any, indexes: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The GDAL scale and offset tags of bands ``indexes`` (1-based) of an open dataset as (C,) float32 arrays, so
    that ``value = raw x scale + offset`` (e.g. Landsat Collection 2 reflectance = DN x 2.75e-5 - 0.2); None when
    every band has scale 1 and offset 0 (nothing to apply)."""
    return band_scale_offset(ds.scales, ds.offsets, indexes)


def band_scale_offset(scales: Sequence[float | None], offsets: Sequence[float | None],
                      indexes: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`scale_offset` from a dataset's ``scales`` / ``offsets`` tuples (one per band, None = unset)."""
    sc = np.array([1.0 if scales[i - 1] is None else scales[i - 1] for i in indexes], dtype=np.float64)
    off = np.array([0.0 if offsets[i - 1] is None else offsets[i - 1] for i in indexes], dtype=np.float64)
    if np.all(sc == 1.0) and np.all(off == 0.0):
        return None
    return sc.astype(np.float32), off.astype(np.float32)


def describe_scale_offset(applied: tuple[np.ndarray, np.ndarray] | None) -> str | None:
    """One line for a log / notice: which scale and offset were applied (None when none was)."""
    if applied is None:
        return None
    scale, offset = ((f"{a[0]:.6g}" if np.all(a == a[0]) else "per band") for a in applied)
    return (f"the input's GDAL scale/offset tags were applied (value = raw x {scale} + {offset}), "
            "in training and prediction alike")
