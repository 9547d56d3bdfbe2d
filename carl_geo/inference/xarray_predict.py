"""Tiled prediction of an ``xarray.DataArray`` (band, y, x) with dask: :func:`predict_dataarray`.

The array is split into chunks of about ``chunk_size`` px. The tiles are those of
:func:`~carl_geo.inference.predict_raster` on the whole array (one grid, anchored to the array, not to the
chunks); :func:`dask.array.map_overlap` gives each chunk a halo of one tile, so that it can run every tile
of that grid which touches it (reflecting at the array's border as ``predict_raster`` does) and blend them
with the same weights. Every pixel therefore gets the same tiles, weights and normalisation whatever the
chunking: the map equals ``predict_raster``'s up to float rounding. Chunks run wherever dask runs them: the
default scheduler, an existing ``distributed.Client``, or a ``LocalCluster`` started on request
(``client="local"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from carl_geo.errors import CarlGeoError
from carl_geo.inference.engine import run_array
from carl_geo.inference.normalization import input_statistics, resolve_normalization
from carl_geo.inference.predictor import _encode, _output_layout
from carl_geo.inference.runner import (
    ModelRunner,
    finish_spec,
    has_model_bands,
    inference_device,
    model_spec,
    resolve_precision,
    warn_band_path,
)
from carl_geo.inference.settings import PredictSettings, check_tiling
from carl_geo.inference.tiling import TileGrid, reflect_index
from carl_geo.io.band_metadata import check_wavelengths, match_preset
from carl_geo.io.wavelength_text import parse_wavelength_list
from carl_geo.sensors import get_sensor


def _valid_and_float(block: np.ndarray, nodata: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) any dtype -> float32 copy and (h, w) valid mask (all bands finite and != nodata)."""
    arr = np.array(block, dtype=np.float32, copy=True)
    valid = np.isfinite(arr).all(0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= ~(arr == np.float32(nodata)).any(0)
    return arr, valid


def _band_wavelengths(da: Any, band_dim: str, wavelengths: Sequence[float] | None, sensor: str | None,
                      bundle: Any) -> list[float]:
    """Explicit > sensor preset (by band names in ``long_name`` or by position) > a ``wavelength``
    coordinate/attribute (µm, or nm converted) > the bundle's list when the band counts match: the
    order of :func:`~carl_geo.io.band_metadata.resolve_wavelengths`, with a DataArray's coordinates
    and attributes in place of a file's metadata (the same preset matching and text parser)."""
    n = da.sizes[band_dim]
    if wavelengths is not None:
        wl = check_wavelengths(wavelengths)
        if len(wl) != n:
            raise CarlGeoError(f"the array has {n} bands but {len(wl)} wavelengths were given")
        return wl
    if sensor:
        preset = get_sensor(sensor)
        names = da.attrs.get("long_name")
        if isinstance(names, (list, tuple)) and len(names) == n:
            by_name = match_preset([str(b) for b in names], preset)
            if by_name is not None:
                return by_name
        if preset.num_bands != n:
            raise CarlGeoError(f"the array has {n} bands but sensor preset {preset.name!r} has {preset.num_bands}; "
                               "select the bands first or give wavelengths=[...]")
        return list(preset.wavelengths)
    for source in (da.coords.get("wavelength"), da.attrs.get("wavelength"), da.attrs.get("wavelengths")):
        if source is not None:
            vals = parse_wavelength_list([float(v) for v in np.atleast_1d(np.asarray(source, dtype=float))])
            if len(vals) == n:
                return check_wavelengths(vals)
    fb = getattr(bundle, "wavelengths", None)
    if fb is not None and len(fb) == n:
        from carl_geo.inference.runner import warn_assumed_bands

        warn_assumed_bands(fb, getattr(bundle, "band_names", None))
        return check_wavelengths(fb)
    raise CarlGeoError(f"no wavelengths for the {n} bands of the array: give wavelengths=[...] (µm) or "
                       "sensor=<preset>, "
                       "or add a 'wavelength' coordinate on the band dimension")


def _chunks(length: int, size: int, least: int = 1) -> tuple[int, ...]:
    """Near-equal chunks of at most ``size`` (more where that would make one smaller than ``least``)."""
    n = max(1, min(math.ceil(length / size), length // max(1, least)))
    return tuple(length // n + (1 if i < length % n else 0) for i in range(n))


def _touching(starts: Sequence[int], extent: int, lo: int, hi: int) -> list[int]:
    """Indexes of the tiles (``starts``, ``extent`` px) that share a pixel with ``[lo, hi)``."""
    return [i for i, s in enumerate(starts) if s < hi and s + extent > lo]


def _chunk_grid(grid: TileGrid, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[TileGrid, int, int]:
    """The tiles of ``grid`` (the whole array's) touching the chunk ``rows`` x ``cols`` (array px), as a grid of
    their own region (no padding: the region is filled by reflection beforehand), and the region's origin."""
    ri = _touching(grid.row_starts, grid.tile_h, *rows)
    ci = _touching(grid.col_starts, grid.tile_w, *cols)
    r0, c0 = grid.row_starts[ri[0]], grid.col_starts[ci[0]]
    h = grid.row_starts[ri[-1]] + grid.tile_h - r0
    w = grid.col_starts[ci[-1]] + grid.tile_w - c0
    sub = TileGrid(h, w, grid.tile_h, grid.tile_w, grid.overlap, 0, tuple(grid.row_starts[i] - r0 for i in ri),
                   tuple(grid.col_starts[j] - c0 for j in ci))
    return sub, r0, c0


#: Defaults of :func:`predict_dataarray`: :class:`~carl_geo.inference.settings.PredictSettings` on the CPU
#: (dask schedules the chunks; ``device="auto"`` would put every worker on one GPU).
DATAARRAY_DEFAULTS = PredictSettings(device="cpu")
#: Settings that only apply to files (``predict_raster``) or to compiled models.
_FILE_ONLY = ("compile", "cog", "overviews", "gdal_cache_mb")


def predict_dataarray(
    model: Any,
    da: Any,
    *,
    wavelengths: Sequence[float] | None = None,
    sensor: str | None = None,
    class_names: Sequence[str] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
    chunk_size: int = 2048,
    client: Any = None,
    compute: bool = True,
    settings: PredictSettings | None = None,
    **overrides: Any,
) -> Any:
    """Predict a (band, y, x) DataArray chunk by chunk with dask.

    Args:
        model: a :class:`~carl_geo.models.ModelBundle`, a model file's path or an ``nn.Module`` (see
            :func:`~carl_geo.inference.predict_raster`).
        da: (band, y, x) array, numpy- or dask-backed; rioxarray CRS/transform are carried over.
        wavelengths, sensor: as in ``predict_raster``; otherwise a ``wavelength`` coordinate or
            attribute of ``da`` (µm, or nm converted), then the bundle's wavelengths.
        class_names, colors: as in ``predict_raster``.
        chunk_size: spatial chunk side (px) of the dask computation, at most (chunks are made near-equal, and
            at least one tile each); each chunk gets a halo of one tile via ``map_overlap``. The map does not
            depend on it.
        client: None (default dask scheduler), ``"local"`` (start a ``distributed.LocalCluster``
            in this process for the call), or a ``distributed.Client``.
        compute: compute now (default); False returns a lazy dask-backed DataArray (not with
            ``client="local"``).
        settings: :class:`~carl_geo.inference.settings.PredictSettings` (default
            :data:`DATAARRAY_DEFAULTS`: the defaults of ``predict_raster`` but ``device="cpu"``);
            ``compile``, ``cog``, ``overviews`` and ``gdal_cache_mb`` do not apply here. ``"scene"``
            statistics come from the same sample of windows as in ``predict_raster``; ``nodata``
            defaults to ``da.rio.nodata`` (NaN is always nodata); ``batch_size`` must be a number.
        **overrides: fields of ``PredictSettings`` applied on top of ``settings``.

    Returns:
        DataArray (band, y, x) with the input's y/x coordinates, CRS and transform; dtype and
        nodata as in ``predict_raster`` (attrs ``_FillValue``-free; nodata via ``rio.nodata``).
    """
    import dask
    import dask.array as dsa
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    cfg = PredictSettings.resolve(settings, DATAARRAY_DEFAULTS, **overrides)
    changed = [n for n in _FILE_ONLY if getattr(cfg, n) != getattr(DATAARRAY_DEFAULTS, n)]
    if changed:
        raise CarlGeoError(f"predict_dataarray does not write files or compile models: {', '.join(changed)} "
                           "only apply to predict_raster")
    output, batch_size = cfg.output, cfg.batch_size
    normalization, precision, nodata = cfg.normalization, cfg.precision, cfg.nodata
    if batch_size == "auto" or (cfg.tile_size is not None and chunk_size < cfg.tile_size):
        raise CarlGeoError(f"batch_size must be a number >= 1 and chunk_size >= tile_size, got {batch_size}, "
                           f"{chunk_size}")
    if client == "local" and not compute:
        raise CarlGeoError("client='local' closes its cluster when the call returns; use compute=True")
    if da.ndim != 3:
        raise CarlGeoError(f"da must be a (band, y, x) DataArray, got dims {da.dims}")
    y_dim, x_dim = da.rio.y_dim, da.rio.x_dim
    band_dim = next(d for d in da.dims if d not in (y_dim, x_dim))
    da = da.transpose(band_dim, y_dim, x_dim)
    dev = inference_device(cfg.device, precision)

    spec = model_spec(model, output, class_names, colors)
    precision = resolve_precision(precision, dev, spec.module)
    tile_size, overlap = cfg.tiling_for(spec.module)
    check_tiling(tile_size, overlap)
    if chunk_size < tile_size:
        raise CarlGeoError(f"chunk_size ({chunk_size}) must be >= the tile size ({tile_size})")
    wl = _band_wavelengths(da, band_dim, wavelengths, sensor, spec.bundle)
    warn_band_path(spec.module, wl)
    if nodata is None:
        nodata = da.rio.nodata
    module = spec.module
    if spec.num_outputs is None:
        with ModelRunner(module, wl, output=output, device=dev, precision=precision) as probe_runner:
            probe = np.zeros((1, len(wl), 16, 16), np.float32)
            finish_spec(spec, probe_runner(probe).shape[1])
    layout = _output_layout(output, spec, cfg.probability_dtype, cfg.embedding_dtype)

    c, height, width = (int(s) for s in da.shape)
    grid = TileGrid.build(height, width, int(tile_size), int(overlap))  # the whole array's tiles, as predict_raster
    arr = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(np.asarray(da.data), chunks=-1)
    arr = arr.rechunk((c, _chunks(height, chunk_size, grid.tile_h), _chunks(width, chunk_size, grid.tile_w)))
    fixed = resolve_normalization(normalization, spec.bundle.normalization if spec.bundle else None)

    def read(w: Any) -> tuple[np.ndarray, np.ndarray]:
        block = arr[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width].compute()
        return _valid_and_float(block, nodata)

    # as predict_raster: the input's sampled statistics, or the model's stored ones (is the input on their scale?)
    mean, std = input_statistics(read, height, width, fixed, check_scale=normalization is None,
                                 drift=has_model_bands(spec.bundle, wl))

    # a halo of one tile: a tile touching a chunk reaches at most tile - 1 px beyond it (none with one chunk)
    depth_y = grid.tile_h - 1 if len(arr.chunks[1]) > 1 else 0
    depth_x = grid.tile_w - 1 if len(arr.chunks[2]) > 1 else 0
    row_edges = np.cumsum((0,) + arr.chunks[1])
    col_edges = np.cumsum((0,) + arr.chunks[2])
    dtype, count, out_nodata = layout["dtype"], layout["count"], layout["nodata"]

    def predict_block(block: np.ndarray, model: Any = None, block_info: dict | None = None) -> np.ndarray:
        _, bi, bj = block_info[0]["chunk-location"]  # type: ignore[index]
        rows = int(row_edges[bi]), int(row_edges[bi + 1])
        cols = int(col_edges[bj]), int(col_edges[bj + 1])
        top = rows[0] - (depth_y if bi > 0 else 0)  # array row / column of the block's first pixel
        left = cols[0] - (depth_x if bj > 0 else 0)
        sub, r0, c0 = _chunk_grid(grid, rows, cols)
        # the tiles' region, reflected at the array's border exactly as predict_raster pads it
        ry = reflect_index(np.arange(r0, r0 + sub.height), height) - top
        cx = reflect_index(np.arange(c0, c0 + sub.width), width) - left
        block = np.asarray(block)
        if min(ry.min(), cx.min()) < 0 or ry.max() >= block.shape[1] or cx.max() >= block.shape[2]:
            raise RuntimeError(f"chunk {bi}, {bj}: its tiles reach beyond its halo")  # a bug, never input
        data, valid = _valid_and_float(block[:, ry][:, :, cx], nodata)
        out = np.empty((count, sub.height, sub.width), dtype=dtype)

        def emit(row0: int, blended: Any, ok: np.ndarray) -> None:
            out[:, row0:row0 + blended.shape[1]] = _encode(output, dtype, blended, ok, out_nodata, layout["codes"])

        runner = ModelRunner(model.to(dev).eval(), wl, output=output, device=dev, precision=precision)
        run_array(runner.predict, data, valid, emit, tile_size=tile_size, overlap=overlap, batch_size=int(batch_size),
                  mean=mean, std=std, grid=sub)
        return out[:, rows[0] - r0:rows[1] - r0, cols[0] - c0:cols[1] - c0]

    result = dsa.map_overlap(
        # the model is one node of the graph: a distributed worker receives and unpickles it once, not per chunk
        # (unpickled per chunk, Sentinel-2 in 128 px chunks on one worker took 288 s; now 179 s)
        predict_block, arr, model=dask.delayed(module, pure=False), depth={0: 0, 1: depth_y, 2: depth_x},
        boundary="none",
        trim=False, dtype=np.dtype(dtype), chunks=((count,), arr.chunks[1], arr.chunks[2]),
        meta=np.empty((0, 0, 0), dtype=dtype))

    first = next(iter(module.parameters()), None)
    restore = (first.device if first is not None else None, module.training)
    try:
        if compute:
            result = _compute(result, client)
    finally:
        if restore[0] is not None and compute:
            module.to(restore[0])
        module.train(restore[1])

    out = xr.DataArray(result, dims=("band", y_dim, x_dim),
                       coords={"band": np.arange(1, count + 1), y_dim: da[y_dim].values, x_dim: da[x_dim].values},
                       attrs={"long_name": tuple(layout["descriptions"]), "carl_output": output,
                              "carl_wavelengths_um": json.dumps(wl), **layout["tags"]})
    if da.rio.crs is not None:
        out = out.rio.write_crs(da.rio.crs)
    out = out.rio.write_transform(da.rio.transform())
    return out.rio.write_nodata(out_nodata, encoded=False)


def _compute(result: Any, client: Any) -> np.ndarray:
    if client is None:
        return result.compute()
    if isinstance(client, str):
        if client != "local":
            raise CarlGeoError(f"client must be None, 'local' or a distributed.Client, got {client!r}")
        from distributed import Client, LocalCluster

        with LocalCluster(processes=False, dashboard_address=None) as cluster, \
                Client(cluster, set_as_default=False) as local:
            return local.compute(result, sync=True)
    compute = getattr(client, "compute", None)
    if compute is None:
        raise CarlGeoError(f"client must be None, 'local' or a distributed.Client, got {type(client).__name__}")
    return compute(result, sync=True)
