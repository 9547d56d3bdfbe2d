"""Input normalisation of a scene: one scalar mean and std over all bands (as upstream CARL).

``(img - mean) / (std + 1e-6)``; nodata pixels are then set to 0 (the normalised mean).
For ``"scene"`` normalisation the statistics come from a sample of windows spread over the
raster (:func:`sample_windows`), never from the whole raster in memory.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from rasterio.windows import Window

from carl_geo.errors import CarlGeoWarning, InputError, interface, option
from carl_geo.inference.settings import resolve_normalization  # noqa: F401  (its home is the settings module)
from carl_geo.transforms import EPS


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


def scene_statistics(reader: WindowReader, windows: Sequence[Window],
                     why_empty: Callable[[], str] | None = None) -> tuple[float, float]:
    """Scalar mean and std (float64 sums) over the valid pixels of all bands in ``windows``.

    Raises:
        ValueError: no valid pixel in the sample (``why_empty()``, when given, says why and what to change).
    """
    n, s, ss = 0, 0.0, 0.0
    for win in windows:
        data, valid = reader(win)
        vals = data[:, valid].astype(np.float64)
        n += vals.size
        s += float(vals.sum())
        ss += float(np.square(vals).sum())
    if n == 0:
        if why_empty is not None:
            raise InputError(f"no valid pixel found in the sampled windows: {why_empty()}")
        raise InputError("no valid pixel found in the sampled windows (all nodata?); check the nodata value "
                         f"({option('nodata', 'VALUE')}) or give the statistics "
                         f"({option('normalization', 'MEAN,STD', '(mean, std)')})")
    mean = s / n
    return mean, math.sqrt(max(ss / n - mean * mean, 0.0))


#: Share of the valid sampled pixels that are 0 in every band from which :class:`ZeroFill` says the input probably
#: holds fill it does not declare as nodata (real spectra are hardly ever 0 in every band; fill outside a
#: Landsat / Sentinel-2 footprint is).
ZERO_FILL_SHARE = 0.01


class ZeroFill:
    """A :data:`WindowReader` that passes ``reader``'s windows on and counts the valid pixels that are 0 in every
    band: the fill outside the footprint of most satellite products, which a file without a declared nodata value
    hands over as data (mapped as some class, and counted in the scene statistics)."""

    def __init__(self, reader: WindowReader) -> None:
        self.reader, self.zero, self.total = reader, 0, 0

    def __call__(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        data, valid = self.reader(win)
        self.total += int(valid.sum())
        self.zero += int((valid & ~data.any(axis=0)).sum())
        return data, valid

    def message(self, out_of: str = "") -> str | None:
        """One line when at least :data:`ZERO_FILL_SHARE` of the valid pixels read were 0 in every band, with what to
        do in the caller's interface (``--nodata 0`` / ``nodata=0`` "to leave them out" + ``out_of``; in the QGIS
        dialogs the layer's no data value), else None."""
        share = self.zero / max(self.total, 1)
        if share < ZERO_FILL_SHARE:
            return None
        fix = (f"give {option('nodata', '0', '0')} to leave them out{out_of}" if interface() != "gui" else
               "set 0 as the layer's additional no data value (Layer Properties > Transparency) and run again: the "
               "algorithms take it as the input's nodata")
        return (f"{100 * share:.0f} % of the sampled pixels are 0 in every band, and the file declares no nodata for "
                "them: if they are fill (outside the scene's footprint), they are mapped as a class and counted in "
                f"the statistics that normalise the input; {fix}")


#: The input's sampled mean may lie this many of the model's stds from the model's mean, and its std
#: may differ from the model's by this factor, before :func:`scale_mismatch` reports "another scale".
#: (Another scale, e.g. reflectance 0-1 against digital numbers 0-10000, differs by orders of magnitude.)
FAR_MEAN_STDS = 5.0
FAR_STD_FACTOR = 5.0
#: Smaller drifts that still change the map, reported when the input has the model's own bands (``drift=True``).
#: Measured (``benchmarks/bench_scale_shift.py``, the kept polygon models of the bench, their own scene multiplied
#: by a factor): x1.1 moved NC's mIoU from 0.308 to 0.283, x0.9 to 0.215, x1.25 to 0.160; Sentinel-2 x0.9 from
#: 0.345 to 0.221. A 5 % change of the std or 0.15 of the model's std in the mean is already more than a scene
#: shows against its own statistics (0).
DRIFT_MEAN_STDS = 0.15
DRIFT_STD_FACTOR = 1.05


def _beyond(scene: tuple[float, float], model: tuple[float, float], mean_stds: float, std_factor: float) -> bool:
    (ms, ss), (mm, sm) = scene, model
    ref = max(sm, EPS)
    ratio = max(ss, EPS) / ref
    return abs(ms - mm) > mean_stds * ref or not 1 / std_factor <= ratio <= std_factor


def scale_mismatch(scene: tuple[float, float], model: tuple[float, float], drift: bool = False) -> str | None:
    """A one-line warning when the input's statistics ``scene`` (mean, std) are far from the model's
    stored normalisation ``model`` (mean, std) ("another scale": :data:`FAR_MEAN_STDS`, :data:`FAR_STD_FACTOR`),
    or, with ``drift`` (the input has the bands the model was trained on), when they drifted enough to change
    the map (:data:`DRIFT_MEAN_STDS`, :data:`DRIFT_STD_FACTOR`); else None."""
    (ms, ss), (mm, sm) = scene, model
    if _beyond(scene, model, FAR_MEAN_STDS, FAR_STD_FACTOR):
        return (f"the input's values (sampled mean {ms:.4g}, std {ss:.4g}) are far from the statistics the model "
                f"was trained with (mean {mm:.4g}, std {sm:.4g}): the input is probably on another scale (e.g. "
                "reflectance 0-1 vs. 0-10000, or another data type) and the map may come out as one class; "
                f"rescale the input like the training data, or normalise with the input's own statistics: "
                f"{option('normalization', 'scene', repr('scene'))}")
    if drift and _beyond(scene, model, DRIFT_MEAN_STDS, DRIFT_STD_FACTOR):
        return (f"the input's values (sampled mean {ms:.4g}, std {ss:.4g}) differ from the statistics the model was "
                f"trained with (mean {mm:.4g}, std {sm:.4g}): mean {(ms - mm) / max(sm, EPS):+.2f} of its std, spread "
                f"{100 * (ss / max(sm, EPS) - 1):+.0f} %. Maps of models trained on one scene change with drifts of "
                "this size (an input 10 % brighter or darker cost 8-36 % of the mIoU on the sample scenes); use the "
                "product and processing level the model was trained on, or train on this scene")
    return None


def warn_scale_mismatch(reader: WindowReader, windows: Sequence[Window], model: tuple[float, float],
                        drift: bool = False) -> bool:
    """Sample the input (:func:`scene_statistics`) and warn (:class:`~carl_geo.errors.CarlGeoWarning`)
    when :func:`scale_mismatch` finds it far from (or, with ``drift``, drifted from) the model's ``(mean, std)``;
    returns whether it warned. An input without valid pixels in the sample is not judged."""
    try:
        scene = scene_statistics(reader, windows)
    except InputError:
        return False
    message = scale_mismatch(scene, model, drift)
    if message:
        warnings.warn(message, CarlGeoWarning, stacklevel=3)
    return message is not None


def input_statistics(reader: WindowReader, height: int, width: int, fixed: tuple[float, float] | None, *,
                     check_scale: bool, drift: bool, why_empty: Callable[[], str] | None = None) -> tuple[float, float]:
    """The scalar (mean, std) that normalise an input of ``height`` x ``width`` px read by ``reader``: its sampled
    statistics (:func:`scene_statistics`) when ``fixed`` is None, else ``fixed``. Warns
    (:class:`~carl_geo.errors.CarlGeoWarning`) when, with ``check_scale`` (``fixed`` is the model's own), the sample is
    far from, or with ``drift`` drifted from, ``fixed`` (:func:`warn_scale_mismatch`), and when the sample holds
    fill the file does not declare (:class:`ZeroFill`)."""
    sample = ZeroFill(reader)
    windows = sample_windows(height, width)
    if fixed is None:
        stats = scene_statistics(sample, windows, why_empty)
    else:
        stats = fixed
        if check_scale:
            warn_scale_mismatch(sample, windows, fixed, drift=drift)
    fill = sample.message(" of the map")
    if fill:
        warnings.warn(fill, CarlGeoWarning, stacklevel=3)
    return stats


def normalize_(data: np.ndarray, valid: np.ndarray, mean: float, std: float) -> np.ndarray:
    """In place: ``(data - mean) / (std + 1e-6)`` on (C, h, w) float32, then 0 where ``valid`` (h, w) is False
    (:func:`carl_geo.transforms.normalize`'s formula without temporaries, for the engine's tile buffers)."""
    data -= np.float32(mean)
    data *= np.float32(1.0 / (std + EPS))
    if not valid.all():
        data[:, ~valid] = 0.0
    return data
