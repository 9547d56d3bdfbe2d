"""Atomic, streaming GeoTIFF output.

:class:`GeoTiffWriter` writes a tiled, deflate-compressed GeoTIFF to a temporary file next to the
target and renames it into place only in :meth:`~GeoTiffWriter.commit`; :meth:`~GeoTiffWriter.abort`
(or an exception inside ``with``) removes the temporary file(s), so a failed or cancelled run
leaves nothing behind. A replaced output loses its stale ``.ovr`` / ``.aux.xml`` / ``.msk`` sidecars.
A failed write raises one :class:`~carl_geo.errors.RasterIOError` naming the output and the cause
(e.g. "No space left on device"). Rows arrive in order in any number; they are buffered to whole
block rows (``BLOCK`` px high) so every compressed block is written exactly once.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from carl_geo.errors import CarlGeoError, RasterIOError
from carl_geo.io.failures import io_cause, is_io_error, raster_io
from carl_geo.io.georeference import placement_without_grid
from carl_geo.io.output_paths import partial_path, replace_sidecars, sidecars

BLOCK = 256


def class_tags(class_names: Sequence[str], class_values: Sequence[int] | None = None) -> dict[str, str]:
    """Dataset tags naming the classes: ``CLASS_NAMES`` (JSON list, class order), ``CLASS_VALUES``
    (JSON list: the pixel value of each class, 0..K-1 unless the model keeps the labels' own codes)
    and ``CLASS_<value>`` = name per value."""
    values = list(range(len(class_names))) if class_values is None else [int(v) for v in class_values]
    tags = {"CLASS_NAMES": json.dumps(list(class_names)), "CLASS_VALUES": json.dumps(values)}
    tags.update({f"CLASS_{v}": str(n) for v, n in zip(values, class_names)})
    return tags


def read_class_map(path: str | os.PathLike[str]) -> tuple[np.ndarray, list[str]]:
    """Read back a class map written by carl_geo (the inverse of :func:`class_tags`).

    Returns:
        ``(classes, class_names)``: ``classes`` (H, W) int64 holds each pixel's position in ``class_names``
        (whatever pixel values the file uses: 0..K-1, or the labels' own codes of ``CLASS_VALUES``), -1 for nodata
        and for values that name no class.

    Raises:
        CarlGeoError: the file has no ``CLASS_NAMES`` tag (it is not a class map of carl_geo).
        RasterIOError: the file cannot be read.
    """
    with raster_io(path, "read"), rasterio.open(path) as src:
        band = src.read(1, masked=True)
        tags = src.tags()
    if "CLASS_NAMES" not in tags:
        raise CarlGeoError(f"{os.fspath(path)} is not a class map of carl_geo (it has no CLASS_NAMES tag)")
    names = [str(n) for n in json.loads(tags["CLASS_NAMES"])]
    values = [int(v) for v in json.loads(tags.get("CLASS_VALUES", "null")) or range(len(names))]
    data = np.asarray(band.data, dtype=np.int64)
    lut = np.full(max(values, default=0) + 2, -1, dtype=np.int64)
    lut[values] = np.arange(len(values))
    classes = lut[np.clip(data, -1, len(lut) - 1)]  # -1 and values above every class land on -1
    classes[np.ma.getmaskarray(band)] = -1
    return classes, names


def overview_factors(height: int, width: int, min_size: int = BLOCK) -> list[int]:
    """2, 4, 8, ... while the overview is still at least ``min_size`` px on its longer side."""
    out, f = [], 2
    while max(height, width) / f >= min_size / 2 and max(height, width) > min_size:
        out.append(f)
        f *= 2
    return out


def _with_sidecars(path: Path) -> list[Path]:
    return [path, *sidecars(path)]


class GeoTiffWriter:
    """Write a GeoTIFF row by row; atomically renamed into place on :meth:`commit`.

    Args:
        path: final output path.
        width, height, crs, transform: the output grid (the input's).
        gcps: ``(ground control points, their CRS)`` of an input georeferenced by GCPs (its transform is the
            identity and its CRS None), copied so that GIS tools place the output as they place the input; or None.
        rpcs: rational polynomial coefficients of an input georeferenced by them, copied likewise; or None.
        count: bands.
        dtype: numpy dtype name (``uint8``, ``uint16``, ``float16``, ``float32``).
        nodata: nodata value (NaN for floats).
        descriptions: one per band, or None.
        tags: dataset tags.
        colormap: ``{value: (r, g, b, a)}`` for band 1 (uint8/uint16 only), or None.
        scale: band scale factor (e.g. 1/254 for uint8 probabilities), or None.
        cog: convert to a Cloud Optimized GeoTIFF (with overviews) on commit.
        overviews: build internal overviews (plain GeoTIFF).
        resampling: overview resampling (``nearest`` for classes, ``average`` otherwise).
    """

    def __init__(self, path: str | os.PathLike, *, width: int, height: int, crs: Any, transform: Any,
                 count: int, dtype: str, nodata: float | None, descriptions: Sequence[str] | None = None,
                 tags: Mapping[str, str] | None = None, colormap: Mapping[int, tuple[int, ...]] | None = None,
                 scale: float | None = None, cog: bool = False, overviews: bool = False,
                 resampling: Resampling = Resampling.nearest, gcps: tuple[Sequence[Any], Any] | None = None,
                 rpcs: Any = None) -> None:
        self.path = Path(path)
        self.cog, self.overviews, self.resampling = cog, overviews, resampling
        self.width, self.height, self.count, self.dtype = width, height, count, np.dtype(dtype)
        self.tmp = partial_path(self.path, ".tif")
        self.tmp_cog = self.tmp.with_name(self.tmp.name[:-len(".tif")] + ".cog.tif")
        floating = self.dtype.kind == "f"
        profile = dict(
            driver="GTiff", width=width, height=height, count=count, dtype=self.dtype.name, crs=crs,
            transform=transform, nodata=nodata, tiled=True, blockxsize=BLOCK, blockysize=BLOCK,
            compress="deflate", predictor=3 if floating and self.dtype.itemsize == 4 else 2 if not floating else 1,
            interleave="band" if count > 1 else "pixel", bigtiff="if_safer", sparse_ok=False,
        )
        # without a CRS, the points / coefficients set below place the file: no (identity) geotransform; a file with
        # a map grid keeps it, and RPCs it also carries are copied as metadata
        gcps = gcps if gcps is not None and len(gcps[0]) else None
        placed = bool(placement_without_grid(dict(crs=crs, gcps=gcps, rpcs=rpcs)))
        if placed:
            profile.pop("transform")
        with raster_io(self.path, "write"), warnings.catch_warnings():
            if placed:
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._ds = rasterio.open(self.tmp, "w", **profile)
        try:
            if descriptions:
                for b, d in enumerate(descriptions, start=1):
                    self._ds.set_band_description(b, str(d))
            if tags:
                self._ds.update_tags(**{k: str(v) for k, v in tags.items()})
            if colormap:
                self._ds.write_colormap(1, dict(colormap))
            if scale is not None:
                self._ds.scales = (float(scale),) * count
            if gcps is not None:
                self._ds.gcps = (list(gcps[0]), gcps[1])
            if rpcs is not None:
                self._ds.rpcs = rpcs
        except Exception as e:
            self.abort()
            if is_io_error(e):
                raise RasterIOError(f"cannot write {self.path}: {io_cause(e, self.path, writing=True)}") from e
            raise
        self._buf = np.zeros((count, min(BLOCK, height), width), dtype=self.dtype)
        self._buf_top = 0  # first row held in the buffer
        self._next = 0  # next expected row

    def write_rows(self, row0: int, data: np.ndarray) -> None:
        """Rows ``row0 .. row0 + h`` of all bands, (count, h, width), in order."""
        if row0 != self._next:
            raise RuntimeError(f"rows must arrive in order: expected row {self._next}, got {row0}")
        h = data.shape[1]
        done = 0
        while done < h:
            at = self._next - self._buf_top
            n = min(h - done, self._buf.shape[1] - at)
            self._buf[:, at:at + n] = data[:, done:done + n]
            done += n
            self._next += n
            if self._next - self._buf_top == self._buf.shape[1] or self._next == self.height:
                self._flush()

    def _flush(self) -> None:
        n = self._next - self._buf_top
        if n > 0:
            with raster_io(self.path, "write"):
                self._ds.write(self._buf[:, :n], window=Window(0, self._buf_top, self.width, n))
        self._buf_top = self._next

    def commit(self) -> Path:
        """Finish the file (overviews / COG) and move it to :attr:`path`; the sidecars of a file it
        replaces are removed (or replaced by the new file's own)."""
        try:
            with raster_io(self.path, "write"):
                final = self._finish()
            os.replace(final, self.path)
            replace_sidecars(self.path, final)
        except BaseException:
            self.abort()
            raise
        self._remove_temps()
        return self.path

    def _finish(self) -> Path:
        """Write the last rows, overviews and the COG copy; returns the finished temporary file."""
        if self._next != self.height:
            raise RuntimeError(f"only {self._next} of {self.height} rows were written")
        self._flush()
        if self.overviews and not self.cog:
            factors = overview_factors(self.height, self.width)
            if factors:
                self._ds.build_overviews(factors, self.resampling)
                self._ds.update_tags(ns="rio_overview", resampling=self.resampling.name)
        self._ds.close()
        final = self.tmp
        if self.cog:
            rasterio.shutil.copy(
                self.tmp, self.tmp_cog, driver="COG", compress="DEFLATE", blocksize=BLOCK, bigtiff="IF_SAFER",
                overviews="AUTO", overview_resampling=self.resampling.name.upper(),
                predictor="YES" if self.dtype.kind != "f" or self.dtype.itemsize == 4 else "NO")
            final = self.tmp_cog
        return final

    def abort(self) -> None:
        """Close and delete the temporary file(s); the target path is not touched."""
        try:
            if not self._ds.closed:
                self._ds.close()
        except Exception:
            pass
        self._remove_temps()

    def _remove_temps(self) -> None:
        for p in _with_sidecars(self.tmp) + _with_sidecars(self.tmp_cog):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "GeoTiffWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.abort()
