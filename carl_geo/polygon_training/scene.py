"""Stage 1 of polygon training: the scene. Everything a user can get wrong is checked here, before training.

:func:`prepare_scene` resolves the bands and wavelengths (the predictor's rules), reads the labelled window of
the raster with the library's one reader (:func:`carl_geo.inference.predictor.read_window`), measures the
scene's scalar statistics the way the predictor does (:func:`carl_geo.inference.normalization.scene_statistics`
on :func:`~carl_geo.inference.normalization.sample_windows`), burns the polygons into a class mask and holds
out whole polygons (or spatial blocks) for validation. It returns a :class:`TrainingScene`: arrays in the
pixel grid of the window, image (C, H, W) float32 in raw units, masks (H, W) int64 with
:data:`~carl_geo.datasets.vector_labels.IGNORE_INDEX` where unlabelled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from carl_geo.datasets.vector_labels import (
    IGNORE_INDEX,
    MIN_CLASS_PIXELS,
    LabelRaster,
    check_label_pixels,
    polygons_on_grid,
    rasterize_labels,
    read_label_vector,
    scarce_classes,
    without_classes,
)
from carl_geo.devices import available_memory
from carl_geo.errors import CarlGeoError, option
from carl_geo.inference.band_coverage import bands_without_data, no_data_advice
from carl_geo.inference.normalization import ZeroFill, sample_windows, scene_statistics
from carl_geo.inference.predictor import read_window
from carl_geo.io.scale_offset import describe_scale_offset, scale_offset
from carl_geo.io.band_metadata import open_raster, resolve_wavelengths
from carl_geo.io.georeference import georeference, placement_without_grid, without_crs_advice
from carl_geo.polygon_training.chips import HoldoutSplit, holdout_split, labels_window
from carl_geo.polygon_training.recipe import SceneFacts


@dataclass
class TrainingScene:
    """The labelled window of a raster, ready for training.

    Attributes:
        raster, labels, label_field: the inputs.
        image: (C, H, W) float32 raw pixel values of the window (0 where invalid).
        valid: (H, W) bool, every band valid and finite.
        labels_raster: the burnt polygons (:class:`~carl_geo.datasets.vector_labels.LabelRaster`).
        mask: (H, W) int64 class index where labelled and valid, else IGNORE_INDEX.
        split: training / validation masks (whole polygons or blocks held out).
        band_indexes: 1-based bands read; wavelengths (µm), band_names and sensor as resolved.
        mean, std: scalar statistics of the whole scene (the predictor's sample).
        window: the window read; crs: the raster's CRS as text.
        facts: what the recipe planner needs (:class:`~carl_geo.polygon_training.recipe.SceneFacts`).
    """

    raster: Path
    labels: Path
    label_field: str
    image: np.ndarray
    valid: np.ndarray
    labels_raster: LabelRaster
    mask: np.ndarray
    split: HoldoutSplit
    band_indexes: list[int]
    wavelengths: list[float]
    band_names: list[str] | None
    sensor: str | None
    mean: float
    std: float
    window: Window
    crs: str
    facts: SceneFacts
    notices: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return list(self.labels_raster.class_names)

    @property
    def n_classes(self) -> int:
        return len(self.labels_raster.class_names)

    @property
    def n_train(self) -> int:
        return int((self.split.train != IGNORE_INDEX).sum())

    @property
    def n_val(self) -> int:
        return int((self.split.val != IGNORE_INDEX).sum())

    def normalized(self) -> np.ndarray:
        """(C, H, W) float32 ``(image - mean) / std`` (the bundle's fixed normalisation), 0 where invalid."""
        from carl_geo.transforms import EPS

        out = np.array(self.image, dtype=np.float32)  # one copy, normalised in place (normalize()'s formula)
        out -= np.float32(self.mean)
        out /= np.float32(self.std + EPS)
        out[:, ~self.valid] = 0.0
        return out


def polygon_widths(geoms: Any, transform: Any) -> tuple[float, ...]:
    """Square root of each polygon's area in raster pixels (its typical width, px)."""
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    areas = np.asarray(geoms.area, dtype=np.float64) / max(pixel_area, 1e-12)
    return tuple(float(v) for v in np.sqrt(np.maximum(areas, 0)))


#: Training holds about this many float32 copies of the labelled window at its peak (the window, the normalised
#: window, the CARL part's tiles and features: 3.7 measured on a 224-band window of 0.5 Mpx, above the process's
#: own 1 GB).
WINDOW_COPIES = 4


def check_window_memory(height: int, width: int, bands: int) -> None:
    """Refuse, before reading it, a labelled window that training could not hold in the memory the system has free
    (the process would be killed without a word, or the machine swap for hours).

    Raises:
        CarlGeoError: the window's size, what it needs and has, and what to change.
    """
    need = WINDOW_COPIES * 4 * height * width * bands
    free = available_memory()
    if free is not None and need > free:
        raise CarlGeoError(
            f"the labelled window ({width} x {height} px, {bands} bands: the polygons' extent) needs about "
            f"{need / 2**30:.1f} GB of memory to train on, and {free / 2**30:.1f} GB is free: training reads only the "
            "window around the polygons, so draw them in a smaller part of the raster, or use fewer bands "
            f"({option('bands', 'B,B,...', '[...]')}), or free memory")


def prepare_scene(raster: str | os.PathLike, labels: str | os.PathLike, label_field: str, *,
                  wavelengths: Sequence[float] | None = None, sensor: str | None = None,
                  bands: Sequence[int | str] | None = None, nodata: float | None = None, margin: int = 64,
                  device: str = "cpu") -> TrainingScene:
    """Read and check the labelled window of ``raster``.

    Args:
        raster: any raster rasterio opens; must have a CRS.
        labels: vector file (any OGR format, any CRS), one class per polygon in ``label_field``.
        wavelengths / sensor / bands: band selection and wavelengths (µm), the predictor's rules.
        nodata: nodata value in place of the file's (None: the file's nodata / mask).
        margin: pixels read around the polygons' bounding box (context for chips at the edges).
        device: the training device type (goes into the scene facts).

    Nothing is held out yet: :func:`split_scene` does that once the recipe knows the block size.

    Raises:
        CarlGeoError: no CRS, no polygon on the raster, fewer than two classes with enough valid pixels (classes
            with fewer than MIN_CLASS_PIXELS are left out with a notice while two remain),
            wavelengths that do not match the bands.
    """
    gdf = read_label_vector(labels, label_field)  # /vsizip/... paths go to GDAL as given
    raster_source = os.fspath(raster)
    raster, labels = Path(raster), Path(labels)
    notices: list[str] = []
    with open_raster(raster_source) as src:
        how = placement_without_grid(georeference(src))
        if how:
            raise CarlGeoError(f"{raster.name} has no map grid: it is placed by {how}, which the polygons cannot be "
                               "drawn on; warp it to a map projection first (e.g. gdalwarp -t_srs EPSG:xxxx "
                               + ("-rpc " if how.startswith("rational") else "") + "in.tif warped.tif, or QGIS's "
                               "Warp (reproject)) and train on the warped raster")
        if src.crs is None:
            raise CarlGeoError(f"{raster.name} has no coordinate reference system, so the polygons cannot be placed "
                               f"on it{without_crs_advice(src)}")
        res = resolve_wavelengths(src, wavelengths=wavelengths, sensor=sensor, bands=bands)
        indexes = [int(i) for i in res.band_indexes]
        geoms, inside = polygons_on_grid(gdf, src.crs, tuple(src.bounds))
        window = labels_window(tuple(geoms[inside].total_bounds), src.transform, (src.height, src.width), int(margin))
        lab = rasterize_labels(gdf, label_field, shape=(int(window.height), int(window.width)),
                               transform=src.window_transform(window), crs=src.crs)
        check_window_memory(int(window.height), int(window.width), len(indexes))
        raw, valid = read_window(src, indexes, window, nodata)
        if not (valid & (lab.mask != IGNORE_INDEX)).any() and (lab.mask != IGNORE_INDEX).any():
            dead = bands_without_data(lambda b, w: read_window(src, b, w, nodata), indexes, [window])
            in_use = nodata if nodata is not None else src.nodatavals[indexes[0] - 1]
            raise CarlGeoError("no polygon covers a pixel with data: " + no_data_advice(
                dead, indexes, where="under the polygons", names=res.band_names, wavelengths=res.wavelengths,
                nodata=in_use, wavelengths_given=wavelengths is not None))
        image = np.asarray(raw, dtype=np.float32)
        image[:, ~valid] = 0.0
        scarce = scarce_classes(lab, valid)
        kept = [n for n in lab.class_names if n not in scarce]
        if scarce and len(kept) >= 2:  # e.g. slivers of a class at the edge of a clipped raster
            gdf = without_classes(gdf, label_field, list(scarce))
            geoms, inside = polygons_on_grid(gdf, src.crs, tuple(src.bounds))
            lab = rasterize_labels(gdf, label_field, shape=(int(window.height), int(window.width)),
                                   transform=src.window_transform(window), crs=src.crs, class_names=kept)
            desc = ", ".join(f"{n!r} ({c} px)" for n, c in scarce.items())
            notices.append(f"class(es) {desc} have fewer than {MIN_CLASS_PIXELS} labelled pixels on valid data of "
                           "this raster and were left out: the map will not show them (draw larger polygons for "
                           "them inside the raster to map them)")
        check_label_pixels(lab, valid)

        def reader(win: Window) -> tuple[np.ndarray, np.ndarray]:
            return read_window(src, indexes, win, nodata)

        sample = ZeroFill(reader)
        mean, std = scene_statistics(sample, sample_windows(src.height, src.width))
        fill = sample.message()
        if fill:
            notices.append(fill)
        applied = describe_scale_offset(scale_offset(src, indexes))
        if applied:
            notices.append(applied)
        scene_shape = (src.height, src.width)
        widths = polygon_widths(geoms[inside], src.transform)
        crs = src.crs.to_string()
    k = len(lab.class_names)
    mask = np.where(valid, lab.mask, IGNORE_INDEX)
    facts = SceneFacts(n_bands=len(indexes), window=mask.shape, scene=scene_shape,
                       class_pixels=tuple(int((mask == i).sum()) for i in range(k)), polygon_widths=widths,
                       device=device)
    if lab.n_polygons_outside:
        notices.append(f"{lab.n_polygons_outside} polygon(s) lie outside the raster and were ignored")
    if lab.n_conflict_pixels:
        notices.append(f"{lab.n_conflict_pixels} px lie under polygons of different classes and were left out of "
                       "training")
    no_split = HoldoutSplit(mask.copy(), np.full_like(mask, IGNORE_INDEX), {n: "train only" for n in lab.class_names})
    return TrainingScene(raster=raster, labels=labels, label_field=label_field, image=image, valid=valid,
                          labels_raster=lab, mask=mask, split=no_split, band_indexes=indexes,
                          wavelengths=[float(w) for w in res.wavelengths],
                          band_names=list(res.band_names) if res.band_names else None, sensor=res.sensor,
                          mean=float(mean), std=float(std), window=window, crs=crs, facts=facts, notices=notices)


def split_scene(scene: TrainingScene, val_fraction: float, block: int, seed: int) -> HoldoutSplit:
    """Hold out about ``val_fraction`` of each class's pixels as whole polygons (or ``block`` px blocks of a class
    with one polygon), and set it on ``scene``."""
    scene.split = holdout_split(scene.mask, scene.labels_raster.polygon_ids, scene.class_names,
                                val_fraction=val_fraction, block=block, seed=seed)
    return scene.split
