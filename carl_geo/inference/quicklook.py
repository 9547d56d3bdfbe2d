"""A PNG quick look: the input in false colour beside the predicted map with a legend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from carl_geo.errors import CarlGeoError
from carl_geo.io.band_metadata import file_band_wavelengths, open_raster
from carl_geo.io.output_paths import atomic_path

#: Preferred display wavelengths (µm): NIR/red/green false colour, else red/green/blue.
FALSE_COLOUR_UM = (0.84, 0.66, 0.56)
TRUE_COLOUR_UM = (0.66, 0.56, 0.49)


def default_rgb_bands(src: Any, wavelengths: Sequence[float] | None = None) -> list[int]:
    """1-based bands to show as RGB: nearest to NIR/red/green (or red/green/blue when there is no
    NIR band) when wavelengths are known, else 3, 2, 1 (or band 1 as grey)."""
    wl = list(wavelengths) if wavelengths is not None else file_band_wavelengths(src)
    if wl and len(wl) == src.count and all(w is not None for w in wl):
        target = FALSE_COLOUR_UM if max(wl) >= 0.75 else TRUE_COLOUR_UM
        return [int(np.argmin([abs(w - t) for w in wl])) + 1 for t in target]
    return [3, 2, 1] if src.count >= 3 else [1, 1, 1]


def _shape(ds: Any, max_side: int) -> tuple[int, int]:
    scale = max(1.0, max(ds.height, ds.width) / max_side)
    return max(1, round(ds.height / scale)), max(1, round(ds.width / scale))


def _stretch(data: np.ma.MaskedArray) -> np.ndarray:
    """(3, h, w) masked -> (h, w, 4) RGBA float in 0..1, 2-98 % stretch per band, masked transparent."""
    out = np.zeros(data.shape[1:] + (4,), dtype=np.float32)
    mask = np.ma.getmaskarray(data).any(0)
    for i in range(3):
        band = np.ma.getdata(data[i]).astype(np.float64)
        vals = band[~mask & np.isfinite(band)]
        lo, hi = np.percentile(vals, (2, 98)) if vals.size else (0.0, 1.0)
        out[..., i] = np.clip((band - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    out[..., 3] = (~mask).astype(np.float32)
    return out


#: File types the quick look can be written as (matplotlib's raster and vector formats without extra packages).
QUICKLOOK_FORMATS = ("png", "jpg", "jpeg", "pdf", "svg", "tif", "tiff", "webp")


def check_quicklook_path(path: str | os.PathLike[str]) -> None:
    """Raise a one-line :class:`~carl_geo.errors.CarlGeoError` (before any prediction) when ``path``'s extension is
    not a file type the quick look can be written as (:data:`QUICKLOOK_FORMATS`)."""
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in QUICKLOOK_FORMATS:
        raise CarlGeoError(f"the quick look {path} must end in one of .{', .'.join(QUICKLOOK_FORMATS)} (got "
                           f"{'.' + suffix if suffix else 'no extension'}); e.g. {Path(path).with_suffix('.png')}")


def write_quicklook(src: str | os.PathLike, prediction_tif: str | os.PathLike, png_path: str | os.PathLike,
                    class_names: Sequence[str] | None, colors: Sequence[Sequence[int]] | None,
                    rgb_bands: Sequence[int] | None = None, *, wavelengths: Sequence[float] | None = None,
                    max_side: int = 1024, title: str | None = None,
                    class_values: Sequence[int] | None = None) -> Path:
    """Write a two-panel PNG: the input (false colour) | the prediction (classes with a legend).

    Args:
        src: the input raster.
        prediction_tif: the predictor's output. With ``class_names``, band 1 is drawn as classes
            (a multi-band probability file is reduced by argmax); otherwise its first three bands
            are drawn stretched (embeddings).
        png_path: output PNG (written atomically). The caller checks that it is not a file the run
            reads (:func:`carl_geo.io.output_paths.check_outputs`).
        class_names, colors: class names and RGB 0-255 colours (None for embeddings).
        class_values: the pixel value of each class in ``prediction_tif`` (default 0..K-1).
        rgb_bands: 1-based input bands for R, G, B (default :func:`default_rgb_bands`).
        wavelengths: µm of every input band, to choose the default RGB bands.
        max_side: longest side (px) of the panels; the rasters are read decimated.
        title: figure title.

    Returns:
        the PNG path.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    png_path = Path(png_path)
    with open_raster(src) as ds:
        bands = list(rgb_bands) if rgb_bands else default_rgb_bands(ds, wavelengths)
        if len(bands) != 3 or not all(1 <= b <= ds.count for b in bands):
            raise CarlGeoError(f"rgb_bands must be three 1-based bands of {ds.name} (1..{ds.count}), got {bands}")
        rgb = _stretch(ds.read(bands, out_shape=(3, *_shape(ds, max_side)), masked=True,
                               resampling=Resampling.nearest))
    with rasterio.open(prediction_tif) as ps:
        shape = _shape(ps, max_side)
        pred = ps.read(out_shape=(ps.count, *shape), masked=True, resampling=Resampling.nearest)

    fig = Figure(figsize=(13, 6.5), dpi=100, layout="constrained")
    ax_in, ax_out = fig.subplots(1, 2)
    ax_in.imshow(rgb, interpolation="nearest")
    ax_in.set_title(f"input (bands {bands[0]}, {bands[1]}, {bands[2]} as RGB)")
    if class_names:
        k = len(class_names)
        if pred.shape[0] > 1:
            mask = np.ma.getmaskarray(pred).any(0)
            pred = np.ma.masked_array(np.ma.getdata(pred).argmax(0), mask)
        else:
            pred = pred[0]
            if class_values is not None:  # pixel values are the classes' own codes
                lut = np.full(max(class_values) + 2, -1, dtype=np.int64)
                lut[list(class_values)] = np.arange(k)
                raw = np.ma.getdata(pred).astype(np.int64)
                index = lut[np.clip(raw, 0, len(lut) - 1)]
                index[(raw < 0) | (raw >= len(lut) - 1)] = -1
                pred = np.ma.masked_array(index, np.ma.getmaskarray(pred) | (index < 0))
        cols = [tuple(v / 255 for v in c) for c in (colors or [])] or None
        cmap = ListedColormap(cols if cols else [f"C{i % 10}" for i in range(k)]).with_extremes(bad=(0, 0, 0, 0))
        ax_out.imshow(np.ma.masked_where(np.ma.getmaskarray(pred) | (pred >= k), pred), cmap=cmap,
                      vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
        handles = [Patch(facecolor=cmap(i), edgecolor="black", label=str(n)) for i, n in enumerate(class_names)]
        ax_out.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
        ax_out.set_title("prediction")
    else:
        idx = [0, 1, 2] if pred.shape[0] >= 3 else [0, 0, 0]
        ax_out.imshow(_stretch(pred[idx]), interpolation="nearest")
        ax_out.set_title("prediction (bands 1-3)")
    for ax in (ax_in, ax_out):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format=png_path.suffix.lstrip(".").lower() or "png")
    return png_path
