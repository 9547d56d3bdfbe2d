"""Tiled, georeferenced prediction of whole rasters: :func:`predict_raster`.

Reads a raster of any band count in row strips, runs a CARL model (or any
``module(img (B, C, H, W), wavelengths (C,) µm) -> (B, K, H, W)``) on overlapping tiles in
batches, blends the tiles with a smooth window and streams the result into a GeoTIFF with the
input's CRS, transform and size. Memory does not grow with raster height.

Outputs (``classes``, ``probabilities``, ``embeddings``), their dtypes and nodata: the registry in
:mod:`carl_geo.inference.outputs`.

Input pixels that are nodata (the file's nodata / mask, or ``nodata=``) or NaN in any selected band
are filled with 0 after normalisation (the scene mean) before the model, and get the output nodata.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import MaskFlags
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.windows import Window

from carl_geo.errors import CarlGeoWarning, InputError, interface
from carl_geo.inference.engine import (
    BackgroundWriter,
    BufferPool,
    PredictionCancelled,
    Prefetcher,
    iter_batches,
    run_tiled,
)
from carl_geo.inference.band_coverage import bands_without_data, no_data_advice
from carl_geo.inference.normalization import input_statistics, resolve_normalization, sample_windows
from carl_geo.inference.outputs import LayoutInput, output_kind
from carl_geo.inference.runner import (
    ModelRunner,
    ModelSpec,
    auto_batch_size,
    class_defaults,
    finish_spec,
    has_model_bands,
    inference_device,
    model_spec,
    warn_assumed_bands,
    warn_band_path,
)
from carl_geo.inference.settings import PredictSettings, check_tiling
from carl_geo.inference.tiling import TileGrid
from carl_geo.inference.writer import GeoTiffWriter
from carl_geo.io.georeference import describe_georeference, georeference, without_crs_advice
from carl_geo.io.band_metadata import open_raster, resolve_wavelengths
from carl_geo.io.failures import raster_io
from carl_geo.io.output_paths import check_outputs, check_suffix, reads_of
from carl_geo.io.scale_offset import scale_offset

__all__ = ["PredictSettings", "PredictionCancelled", "PredictionResult", "predict_raster", "protect_inputs", "read_window"]



@dataclass
class PredictionResult:
    """What :func:`predict_raster` wrote.

    Attributes:
        path: the output GeoTIFF.
        width, height, count: output size and band count.
        crs: the output CRS as a string (``""`` when the input has none).
        transform: the output affine transform (the input's).
        seconds: wall time of the whole call.
        tiles: number of model tiles.
        output: ``"classes"``, ``"probabilities"`` or ``"embeddings"``.
        band_indexes: 1-based input bands that were read; wavelengths: their µm values.
        mean, std: the normalisation statistics used.
        device: the torch device used.
        precision: the precision the model ran in (``"auto"`` resolved: ``"bf16"`` for a CARL model on a CPU with
            AMX, else ``"fp32"``).
        georeferencing: how the output is placed, in words: its CRS (``"EPSG:32633"``), the input's ground control
            points or rational polynomial coefficients that it carries (an input without a map grid), or ``""``.
    """

    path: Path
    width: int
    height: int
    count: int
    crs: str
    transform: Affine
    seconds: float
    tiles: int
    output: str
    band_indexes: list[int] = field(default_factory=list)
    wavelengths: list[float] = field(default_factory=list)
    mean: float = 0.0
    std: float = 1.0
    device: str = "cpu"
    precision: str = "fp32"
    georeferencing: str = ""


def read_window(ds: Any, indexes: Sequence[int], window: Window, nodata: float | None = None,
                out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of ``window`` and the (h, w) valid mask (every band valid and finite).

    Values are the file's, with its GDAL scale / offset tags applied when a band has them
    (:func:`scale_offset`; the data are then float32, nodata compared on the raw values first).

    Args:
        ds: an open rasterio dataset.
        indexes: 1-based bands.
        window: the window to read.
        nodata: override of the file's nodata value (None: the file's nodata values / mask bands).
        out: optional (C, h, w) array (or view) to read into; its dtype is used.

    Returns:
        ``(data (C, h, w), valid (h, w) bool)``; ``data`` is ``out`` when given, else in the file's dtype.
    """
    indexes = list(indexes)
    arr, valid = _read_raw(ds, indexes, window, nodata, out)
    applied = scale_offset(ds, indexes)
    if applied is None:
        return arr, valid
    if arr.dtype.kind != "f":
        if out is not None:
            raise TypeError("a buffer for scaled bands must be float (strip_dtype gives float32 for them)")
        arr = arr.astype(np.float32)
    arr *= applied[0][:, None, None]
    arr += applied[1][:, None, None]
    return arr, valid


def _read_raw(ds: Any, indexes: list[int], window: Window, nodata: float | None,
              out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The file's values of ``window`` (no scale / offset) and the valid mask."""
    flags = [ds.mask_flag_enums[i - 1] for i in indexes]
    if nodata is not None or all(MaskFlags.all_valid in f or MaskFlags.nodata in f for f in flags):
        # nodata values: compare ourselves, no second pass for GDAL's mask bands
        arr = ds.read(indexes, window=window, out=out)
        valid = np.isfinite(arr).all(0) if arr.dtype.kind == "f" else np.ones(arr.shape[1:], dtype=bool)
        for k, i in enumerate(indexes):
            value = nodata if nodata is not None else (ds.nodatavals[i - 1] if MaskFlags.nodata in flags[k] else None)
            if value is not None and not np.isnan(value):
                valid &= arr[k] != value
        return arr, valid
    data = ds.read(indexes, window=window, masked=True)  # per-dataset mask or alpha band
    arr = np.ma.getdata(data)
    valid = ~np.ma.getmaskarray(data).any(0)
    if arr.dtype.kind == "f":
        valid &= np.isfinite(arr).all(0)
    if out is not None:
        out[...] = arr
        arr = out
    return arr, valid


def strip_dtype(ds: Any, indexes: Sequence[int]) -> np.dtype:
    """dtype of the strip buffer: the bands' common dtype if it is a <= 32-bit int or float, else float32
    (also when scale / offset tags are applied)."""
    if scale_offset(ds, indexes) is not None:
        return np.dtype(np.float32)
    kinds = {np.dtype(ds.dtypes[i - 1]) for i in indexes}
    if len(kinds) == 1:
        dt = kinds.pop()
        if dt.kind in "uif" and dt.itemsize <= 4:
            return dt
    return np.dtype(np.float32)


@contextmanager
def bounded_gdal_cache(limit_bytes: int) -> Iterator[None]:
    """Lower GDAL's (process-wide) block cache to ``limit_bytes`` for the block, then restore it.

    The predictor reads every input block about once and writes every output block once, so a
    cache beyond a few block rows only holds finished data: GDAL's default (5 % of RAM) would make
    the process grow with the raster until that cap. Never raises the cache; ``limit_bytes <= 0``
    leaves it alone.
    """
    old = get_gdal_config("GDAL_CACHEMAX")
    lower = limit_bytes > 0 and isinstance(old, int) and old > limit_bytes
    if lower:
        set_gdal_config("GDAL_CACHEMAX", int(limit_bytes))
    try:
        yield
    finally:
        if lower:
            set_gdal_config("GDAL_CACHEMAX", old)


def auto_cache_bytes(ds: Any, indexes: Sequence[int], out_count: int, out_dtype: str) -> int:
    """Two block rows of the selected input bands plus two output block rows, at least 64 MiB."""
    block_h = ds.block_shapes[indexes[0] - 1][0] if ds.block_shapes else 256
    itemsize = max(np.dtype(ds.dtypes[i - 1]).itemsize for i in indexes)
    inp = 2 * len(indexes) * ds.width * max(block_h, 1) * itemsize
    out = 2 * out_count * ds.width * 256 * np.dtype(out_dtype).itemsize
    return max(64 << 20, inp + out)


def protect_inputs(src: Any, dst: str | os.PathLike, model: Any, *, overwrite: bool = True) -> Path:
    """Refuse an output ``dst`` that is a file the run reads: the input raster (also through a
    symlink), a file a VRT input reads, or the model file; with ``overwrite=False`` also an existing
    file. Returns ``dst`` as a Path."""
    model_file = model if isinstance(model, (str, os.PathLike)) else getattr(model, "path", None)
    reads = reads_of([("input raster", src)] if isinstance(src, (str, os.PathLike)) else [],
                     [("model file", model_file)])
    checked = check_outputs([("output", dst)], reads, overwrite=overwrite)[0]
    check_suffix(dst, "a GeoTIFF", ("raster of another format", "vector file", "picture", "model file"),
                 f"name it e.g. {Path(dst).stem}.tif" + ("; --quicklook MAP.png draws a picture of the map too"
                                                         if interface() == "cli" and Path(dst).suffix.lower()
                                                         in (".png", ".jpg", ".jpeg") else ""))
    return checked


def _output_layout(output: str, spec: ModelSpec, probability_dtype: str, embedding_dtype: str) -> dict[str, Any]:
    """dtype, nodata, band descriptions, tags, colour map, scale and overview resampling of the output
    (:meth:`~carl_geo.inference.outputs.OutputKind.layout` of the registered kind)."""
    kind = output_kind(output)
    k = int(spec.num_outputs or 0)
    values = spec.bundle.class_values if spec.bundle is not None and spec.bundle.task == "segmentation" else None
    names, colors = class_defaults(spec) if kind.needs_classes else ([], [])
    return kind.layout(LayoutInput(k, names, colors, values, probability_dtype, embedding_dtype))


def encode_rows(output: str, dtype: str, blended: torch.Tensor, codes: Sequence[int] | None = None) -> torch.Tensor:
    """Blended (K, h, W) float32 -> output bands (count, h, W) on the same device, before nodata
    (:meth:`~carl_geo.inference.outputs.OutputKind.encode` of the registered kind)."""
    return output_kind(output).encode(blended, dtype, codes)


def finish_rows(encoded: np.ndarray, valid: np.ndarray, dtype: str, nodata: Any) -> np.ndarray:
    """Encoded rows (count, h, W) -> the file's ``dtype`` with ``nodata`` where ``valid`` is False."""
    out = encoded.astype(dtype, copy=False)
    out[:, ~valid] = nodata
    return out


def _encode(output: str, dtype: str, blended: np.ndarray | torch.Tensor, valid: np.ndarray, nodata: Any,
            codes: Sequence[int] | None = None) -> np.ndarray:
    """Blended (K, h, W) float32 -> output bands (count, h, W) in ``dtype`` with nodata applied."""
    t = torch.as_tensor(blended)
    return finish_rows(encode_rows(output, dtype, t, codes).cpu().numpy(), valid, dtype, nodata)


def _strip_batches(src: Any, indexes: list[int], nodata: float | None, mean: float, std: float,
                   grid: TileGrid, pool: BufferPool) -> Iterator[Any]:
    """Batches of normalised tiles; opens its own handle (it runs in the reader thread). GDAL may
    decode the blocks of one read on all cores (``GDAL_NUM_THREADS``, GeoTIFF), so decompression
    keeps up with a GPU."""
    with rasterio.Env(GDAL_NUM_THREADS=os.environ.get("GDAL_NUM_THREADS", "ALL_CPUS")), open_raster(src) as ds:
        def read_rows(r0: int, r1: int, out: np.ndarray) -> np.ndarray:
            with raster_io(src, "read"):
                return read_window(ds, indexes, Window(0, r0, grid.width, r1 - r0), nodata, out=out)[1]

        yield from iter_batches(grid, read_rows, pool.shape[0], bands=len(indexes), dtype=strip_dtype(ds, indexes),
                                mean=mean, std=std, pool=pool)


def _stream(grid: TileGrid, make_batches: Callable[[], Iterator[Any]], runner: ModelRunner, dst: Path,
            layout: dict[str, Any], tags: dict[str, str], output: str, georef: dict[str, Any], *, cog: bool,
            overviews: bool, progress: Callable[[int, int], Any] | None,
            why_empty: Callable[[], str] = lambda: "") -> tuple[Path, int]:
    """Prefetched batches -> model -> blending on the device -> background writer -> atomic GeoTIFF.
    Returns (path, tiles). ``why_empty()`` explains an input without one valid pixel (the error then raised)."""
    layout = dict(layout)
    resampling = layout.pop("resampling")
    layout_tags = layout.pop("tags")
    codes = layout.pop("codes", None)
    dtype, nodata = layout["dtype"], layout["nodata"]
    cuda = runner.device.type == "cuda"
    valid_pixels = [0]
    with GeoTiffWriter(dst, **georef, tags={**layout_tags, **tags}, cog=cog, overviews=overviews,
                       resampling=resampling, **layout) as writer:
        def write(row0: int, encoded: torch.Tensor, valid: np.ndarray, event: Any) -> None:
            if event is not None:
                event.synchronize()  # the device-to-host copy has landed
            valid_pixels[0] += int(np.count_nonzero(valid))
            writer.write_rows(row0, finish_rows(encoded.numpy(), valid, dtype, nodata))

        with BackgroundWriter(write) as rows, Prefetcher(make_batches, depth=2) as batches:
            def emit(row0: int, blended: torch.Tensor, valid: np.ndarray) -> None:
                encoded = encode_rows(output, dtype, blended, codes)
                event = None
                if cuda:  # asynchronous copy into pinned memory; the writer thread waits for it
                    encoded = encoded.to("cpu", non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                else:
                    encoded = encoded.cpu()
                rows.put(row0, encoded, valid, event)

            tiles = run_tiled(grid, batches, runner.predict, emit, progress)
            batches.close()
        if valid_pixels[0] == 0:
            raise InputError(f"the map would be empty, so nothing was written to {dst}: {why_empty()}")
        return writer.commit(), tiles


def predict_raster(
    model: Any,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    wavelengths: Sequence[float] | None = None,
    sensor: str | None = None,
    bands: Sequence[int | str] | None = None,
    class_names: Sequence[str] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
    progress: Callable[[int, int], Any] | None = None,
    overwrite: bool = True,
    settings: PredictSettings | None = None,
    **overrides: Any,
) -> PredictionResult:
    """Predict a whole raster tile by tile and write a GeoTIFF on the input's grid.

    Args:
        model: a :class:`~carl_geo.models.ModelBundle`, a model file's path (as ``--model`` takes it), or an
            ``nn.Module`` called as
            ``model(img (B, C, H, W), wavelengths (C,) µm) -> (B, K, H, W)``.
        src: anything rasterio opens (GeoTIFF, VRT, ENVI, ``netcdf:file.nc:var``).
        dst: output GeoTIFF path (written atomically: nothing appears there unless the run succeeds;
            stale ``.ovr`` / ``.aux.xml`` sidecars of a replaced file are removed). It may not be a
            file the run reads: the input (compared as real paths, so also through a symlink), a
            file a VRT input reads, or the bundle's model file.
        wavelengths: µm per selected band (beats ``sensor``, file metadata and the model's list).
        sensor: a :mod:`carl_geo.sensors` preset name.
        bands: 1-based band indexes or band names to read (default: all, or the model's bands
            when the file names its bands).
        class_names, colors: class names and RGB 0-255 colours (override the bundle's).
        progress: ``progress(done_tiles, total_tiles)`` after each batch; returning False cancels.
        overwrite: replace an existing ``dst`` (default True; the command line's ``--overwrite``).
        settings: how to predict (:class:`~carl_geo.inference.settings.PredictSettings`: output,
            tile_size 256, overlap 16, batch_size 4 or "auto", normalization, device "auto", precision,
            compile, probability / embedding dtype, nodata, cog, overviews, gdal_cache_mb); default
            ``PredictSettings()``.
        **overrides: any field of ``PredictSettings`` (``output="probabilities"``, ``tile_size=512``,
            ...), applied on top of ``settings``. With the bundle's stored statistics
            (``normalization=None``) the input is sampled too and a
            :class:`~carl_geo.errors.CarlGeoWarning` says when it looks like another scale (e.g.
            reflectance 0-1 for a model trained on 0-10000).

    Returns:
        :class:`PredictionResult`.

    Raises:
        CarlGeoError (a ValueError): bad arguments, wavelengths missing / not matching the bands, an
            output that would replace a file the run reads (raised before any pixel is read); an
            input whose pixels are all nodata (nothing is written).
        TypeError: a keyword that is neither an argument nor a ``PredictSettings`` field.
        RasterIOError: the input cannot be read or the output written (names the file and cause).
        FileNotFoundError: missing input.
        PredictionCancelled: ``progress`` returned False (no output file remains).
    """
    t0 = time.perf_counter()
    cfg = PredictSettings.resolve(settings, **overrides)
    output, nodata = cfg.output, cfg.nodata
    normalization, precision = cfg.normalization, cfg.precision
    dev = inference_device(cfg.device, precision)
    dst = protect_inputs(src, dst, model, overwrite=overwrite)
    spec = model_spec(model, output, class_names, colors)
    fixed = resolve_normalization(normalization, spec.bundle.normalization if spec.bundle else None)
    tile_size, overlap = cfg.tiling_for(spec.module)
    check_tiling(tile_size, overlap)

    with open_raster(src) as ds:
        sel = resolve_wavelengths(ds, wavelengths=wavelengths, sensor=sensor, bands=bands, fallback=spec.bundle)
        indexes = sel.band_indexes
        if sel.source == "model":
            warn_assumed_bands(sel.wavelengths, sel.band_names)
        warn_band_path(spec.module, sel.wavelengths)
        georef = georeference(ds)
        width, height, crs, transform = georef["width"], georef["height"], georef["crs"], georef["transform"]
        if not describe_georeference(georef):
            warnings.warn(f"{Path(str(src)).name} has no coordinate reference system (nor ground control points): the "
                          "output will have none either and will not line up with other layers"
                          f"{without_crs_advice(ds)}, then run again", CarlGeoWarning, stacklevel=2)
        grid = TileGrid.build(height, width, int(tile_size), int(overlap))
        with ModelRunner(spec.module, sel.wavelengths, output=output, device=dev, precision=precision,
                         compile=cfg.compile) as runner:
            precision = runner.precision  # "auto" resolved for this model and device
            if spec.num_outputs is None:  # bare module: one tiny call tells K before any pixel is read
                tile = np.zeros((1, len(indexes), min(grid.tile_h, 32), min(grid.tile_w, 32)), np.float32)
                finish_spec(spec, runner(tile).shape[1])
            n_batch = auto_batch_size(runner, len(indexes), grid.tile_h, grid.tile_w) if cfg.batch_size == "auto" \
                else int(cfg.batch_size)
            layout = _output_layout(output, spec, cfg.probability_dtype, cfg.embedding_dtype)
            cache = auto_cache_bytes(ds, indexes, layout["count"], layout["dtype"]) if cfg.gdal_cache_mb is None \
                else int(cfg.gdal_cache_mb * 2**20)
            with bounded_gdal_cache(cache):
                def read_sample(w: Window) -> tuple[np.ndarray, np.ndarray]:
                    with raster_io(src, "read"):
                        return read_window(ds, indexes, w, nodata)

                def why_empty() -> str:
                    windows = sample_windows(height, width)
                    whole = sum(int(w.width) * int(w.height) for w in windows) == width * height
                    dead = bands_without_data(lambda b, w: read_window(ds, b, w, nodata), indexes, windows)
                    return no_data_advice(dead, indexes, where="in the input" if whole else
                                          f"in the {len(windows)} windows sampled across the input",
                                          names=sel.band_names,
                                          wavelengths=sel.wavelengths,
                                          nodata=nodata if nodata is not None else ds.nodatavals[indexes[0] - 1],
                                          wavelengths_given=wavelengths is not None)

                # the input's sampled statistics, or the model's stored ones (is the input on their scale?)
                mean, std = input_statistics(read_sample, height, width, fixed, check_scale=normalization is None,
                                             drift=has_model_bands(spec.bundle, sel.wavelengths), why_empty=why_empty)
                tags = {"CARL_OUTPUT": output, "CARL_WAVELENGTHS_UM": json.dumps(sel.wavelengths),
                        "CARL_INPUT_BANDS": json.dumps(indexes),
                        "CARL_NORMALIZATION": json.dumps({"mean": mean, "std": std}),
                        "CARL_TILING": json.dumps({"tile_size": int(tile_size), "overlap": int(overlap)})}
                applied = scale_offset(ds, indexes)
                if applied is not None:
                    tags["CARL_SCALE_OFFSET"] = json.dumps({"scale": applied[0].tolist(), "offset": applied[1].tolist()})

                pool = BufferPool((n_batch, len(indexes), grid.tile_h, grid.tile_w), pin=dev.type == "cuda")

                def make_batches() -> Iterator[Any]:
                    return _strip_batches(src, indexes, nodata, mean, std, grid, pool)

                path, tiles = _stream(grid, make_batches, runner, dst, layout, tags, output,
                                      georef,
                                      cog=cfg.cog, overviews=cfg.overviews, progress=progress, why_empty=why_empty)

    return PredictionResult(
        path=path, width=width, height=height, count=layout["count"], crs=crs.to_string() if crs else "",
        transform=transform, seconds=time.perf_counter() - t0, tiles=tiles, output=output,
        band_indexes=list(indexes), wavelengths=list(sel.wavelengths), mean=float(mean), std=float(std),
        device=str(dev), precision=precision, georeferencing=describe_georeference(georef))
