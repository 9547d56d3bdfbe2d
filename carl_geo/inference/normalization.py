"""Input normalisation of a scene: one scalar mean and std over all bands (as upstream CARL).

``(img - mean) / (std + 1e-6)``; nodata pixels are then set to 0 (the normalised mean).
For ``"scene"`` normalisation the statistics come from a sample of windows spread over the
raster (:func:`sample_windows`), never from the whole raster in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from rasterio.windows import Window

EPS = 1e-6

#: ``reader(window) -> (data (C, h, w) float32, valid (h, w) bool)``.
WindowReader = Callable[[Window], tuple[np.ndarray, np.ndarray]]


def sample_windows(height: int, width: int, size: int = 256, per_axis: int = 4) -> list[Window]:
    """Windows for scene statistics: a ``per_axis`` x ``per_axis`` grid of ``size`` px windows,
    evenly spread. When an axis is at most ``per_axis * size`` long its windows partition it
    (every pixel is sampled once), so small rasters are measured exactly."""

    def spans(length: int) -> list[tuple[int, int]]:
        if length <= per_axis * size:
            n = max(1, math.ceil(length / size))
            edges = [round(i * length / n) for i in range(n + 1)]
            return [(edges[i], edges[i + 1] - edges[i]) for i in range(n)]
        step = (length - size) / (per_axis - 1)
        return [(round(i * step), size) for i in range(per_axis)]

    return [Window(c0, r0, cw, rh) for r0, rh in spans(height) for c0, cw in spans(width)]


def scene_statistics(reader: WindowReader, windows: Sequence[Window]) -> tuple[float, float]:
    """Scalar mean and std (float64 sums) over the valid pixels of all bands in ``windows``.

    Raises:
        ValueError: no valid pixel in the sample.
    """
    n, s, ss = 0, 0.0, 0.0
    for win in windows:
        data, valid = reader(win)
        vals = data[:, valid].astype(np.float64)
        n += vals.size
        s += float(vals.sum())
        ss += float(np.square(vals).sum())
    if n == 0:
        raise ValueError("no valid pixel found in the sampled windows (all nodata?); check the nodata value "
                         "or pass normalization=(mean, std)")
    mean = s / n
    return mean, math.sqrt(max(ss / n - mean * mean, 0.0))


def resolve_normalization(normalization: Any, bundle_normalization: Mapping[str, Any] | None
                          ) -> tuple[float, float] | None:
    """``(mean, std)`` for fixed statistics, or None when they must come from the scene.

    Args:
        normalization: None (use the bundle's), ``"scene"``, a ``(mean, std)`` pair, or a
            bundle-style dict ``{"mode": "scene"}`` / ``{"mode": "fixed", "mean": m, "std": s}``.
        bundle_normalization: the model bundle's ``normalization`` dict, or None.

    Raises:
        ValueError: anything else, or a non-positive / non-finite std.
    """
    value = bundle_normalization if normalization is None else normalization
    if value is None or value == "scene":
        return None
    if isinstance(value, Mapping):
        mode = value.get("mode")
        if mode == "scene":
            return None
        if mode != "fixed":
            raise ValueError(f"normalization mode must be 'scene' or 'fixed', got {mode!r}")
        value = (value.get("mean"), value.get("std"))
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"normalization must be None, 'scene' or a (mean, std) pair, got {value!r}")
    try:
        mean, std = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(f"normalization (mean, std) must be numbers, got {value!r}") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise ValueError(f"normalization needs a finite mean and a std >= 0, got {value!r}")
    return mean, std


def normalize_(data: np.ndarray, valid: np.ndarray, mean: float, std: float) -> np.ndarray:
    """In place: ``(data - mean) / (std + 1e-6)`` on (C, h, w) float32, then 0 where ``valid`` (h, w) is False."""
    data -= np.float32(mean)
    data *= np.float32(1.0 / (std + EPS))
    if not valid.all():
        data[:, ~valid] = 0.0
    return data
