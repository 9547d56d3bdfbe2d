"""The tile grid of a raster and the smooth blending window.

Conventions (pixels):

* ``overlap`` O is the number of pixels two neighbouring tiles share; the stride is
  ``tile_size - O``.
* The raster is reflect-padded by ``pad = O // 2`` on every side, so a pixel at the raster
  border sees as much context as a pixel on a seam between two tiles.
* Each axis gets the fewest tiles that cover ``-pad .. length + pad`` with neighbours sharing at
  least ``O`` pixels; the tile extent is then shrunk to the smallest multiple of
  :data:`EXTENT_MULTIPLE` (CARL's patch size) that still covers the axis with that many tiles, and
  the tiles are spread evenly (the first starts at ``-pad``, the last ends at ``length + pad``).
  So little is computed twice: at tile 256, overlap 16, a 4096-pixel axis takes 18 tiles of 248 px
  (1.09 computed pixels per raster pixel along the axis, 1.19 over the area).
* A raster (plus padding) smaller than one tile gets a single tile of its padded size.

Each tile's prediction is weighted by :func:`blend_window` (a raised-cosine ramp over the
overlap, 1 in the middle, strictly positive at the tile edge); the blended prediction is
``sum(weight * prediction) / sum(weight)``, which has no seams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carl_geo.errors import CarlGeoError
# the defaults and their check live with the other prediction settings (torch- and numpy-free)
from carl_geo.inference.settings import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, check_tiling  # noqa: F401

#: Smallest weight of the blending window (at a tile's outermost pixel), so every pixel has weight > 0.
MIN_WEIGHT = 1e-3
#: Fitted tile extents are rounded up to a multiple of this (CARL's patch size: CARL pads any other
#: size up to it internally, so a smaller multiple would not compute less).
EXTENT_MULTIPLE = 8


def axis_starts(length: int, tile: int, overlap: int, pad: int) -> tuple[int, list[int]]:
    """Tile extent and tile starts along one axis.

    Args:
        length: raster size along the axis (pixels).
        tile: largest tile size.
        overlap: fewest pixels shared by neighbouring tiles (< tile).
        pad: reflect padding on each side.

    Returns:
        ``(extent, starts)``: the tile size actually used (``<= tile``; the padded length when that
        fits in one tile) and the start of every tile in raster coordinates (the first is ``-pad``,
        the last is ``length + pad - extent``, neighbours overlap by ``>= overlap``).
    """
    span = length + 2 * pad
    if span <= tile:
        return span, [-pad]
    n = math.ceil((span - overlap) / (tile - overlap))  # fewest tiles of the full size
    extent = math.ceil((span + (n - 1) * overlap) / n)
    extent = min(tile, -(-extent // EXTENT_MULTIPLE) * EXTENT_MULTIPLE)
    while True:
        starts = [-pad + (k * (span - extent)) // (n - 1) for k in range(n)]
        if extent >= tile or all(b - a <= extent - overlap for a, b in zip(starts, starts[1:])):
            return extent, starts
        extent += 1  # integer spacing left a pair sharing fewer than `overlap` pixels


def blend_window_1d(size: int, overlap: int, min_weight: float = MIN_WEIGHT) -> np.ndarray:
    """(size,) float32 weights: raised-cosine ramps of length ``overlap`` at both ends, 1 between.

    Two tiles overlapping by exactly ``overlap`` pixels have weights summing to ~1 in the overlap.
    Every weight is >= ``min_weight`` > 0.
    """
    t = np.arange(size, dtype=np.float64)
    if overlap <= 0:
        return np.ones(size, dtype=np.float32)
    ramp = lambda d: np.where(d < overlap, 0.5 - 0.5 * np.cos(math.pi * (d + 0.5) / overlap), 1.0)  # noqa: E731
    w = np.minimum(ramp(t), ramp(size - 1 - t))
    return np.maximum(w, min_weight).astype(np.float32)


def blend_window(height: int, width: int, overlap: int) -> np.ndarray:
    """(height, width) float32 separable blending window (outer product of the 1-D windows)."""
    return np.outer(blend_window_1d(height, overlap), blend_window_1d(width, overlap)).astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """Tiles covering a raster of ``height`` x ``width`` pixels.

    Attributes:
        height, width: raster size.
        tile_h, tile_w: tile extent actually used (smaller than ``tile_size`` for small rasters).
        overlap: pixels shared by neighbouring tiles.
        pad: reflect padding on each side (``overlap // 2``).
        row_starts, col_starts: tile origins in raster coordinates (may be negative: padding).
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int
    pad: int
    row_starts: tuple[int, ...]
    col_starts: tuple[int, ...]

    @classmethod
    def build(cls, height: int, width: int, tile_size: int, overlap: int) -> "TileGrid":
        """The grid for a ``height`` x ``width`` raster (see the module docstring)."""
        check_tiling(tile_size, overlap)
        if height < 1 or width < 1:
            raise CarlGeoError(f"raster is empty ({width} x {height} pixels)")
        pad = overlap // 2
        th, rows = axis_starts(height, tile_size, overlap, pad)
        tw, cols = axis_starts(width, tile_size, overlap, pad)
        return cls(height, width, th, tw, overlap, pad, tuple(rows), tuple(cols))

    @property
    def n_tiles(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    @property
    def padded_width(self) -> int:
        """Width of a padded strip: columns ``-pad .. width + pad`` (all tiles of a row lie in it)."""
        return self.col_starts[-1] + self.tile_w - self.col_starts[0]

    def window(self) -> np.ndarray:
        """(tile_h, tile_w) float32 blending weights."""
        return blend_window(self.tile_h, self.tile_w, self.overlap)

    def row_span(self, i: int) -> tuple[int, int]:
        """Raster rows ``[r0, r1)`` that tile row ``i`` covers (clipped to the raster)."""
        y0 = self.row_starts[i]
        return max(0, y0), min(self.height, y0 + self.tile_h)


def reflect_index(coords: np.ndarray, n: int) -> np.ndarray:
    """Map coordinates outside ``0 .. n-1`` into it by (repeated) reflection without repeating the
    edge, like ``np.pad(mode="reflect")``; an axis of length 1 repeats its only element."""
    if n == 1:
        return np.zeros_like(coords)
    period = 2 * (n - 1)
    c = np.abs(coords) % period
    return np.where(c >= n, period - c, c)


def reflect_fill(buf: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    """Fill (C, H, W) ``buf`` outside its (top, left, h, w) region by reflecting that region, in
    place (like ``np.pad(mode="reflect")`` without a full-size temporary). Returns ``buf``."""
    big_h, big_w = buf.shape[1:]
    cols = np.r_[0:left, left + w:big_w]
    if cols.size:
        buf[:, top:top + h, cols] = buf[:, top:top + h, reflect_index(cols - left, w) + left]
    rows = np.r_[0:top, top + h:big_h]
    if rows.size:
        buf[:, rows, :] = buf[:, reflect_index(rows - top, h) + top, :]
    return buf
