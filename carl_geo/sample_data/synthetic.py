"""Generated labelled scenes for tests and benchmarks: many bands, small, many classes.

:func:`hyperspectral_fields` writes an airborne-hyperspectral-like scene (AVIRIS-style 0.4-2.5 µm
with the water-vapour bands removed, radiance-like int16 values) of agricultural fields in
``n_classes`` crop classes, the analyst's training polygons (drawn inside fields of the training
blocks only) and a reference raster of the test blocks (spatially disjoint from every polygon).

The spectra are smooth mixtures of vegetation, soil and residue end-members with a few class
specific absorption features; classes come in pairs that differ only slightly (like "corn no-till"
and "corn min-till"), and every field, row of crop and pixel adds its own brightness, mixture and
noise, so a per-pixel classifier is far from perfect while a model that uses the field context
can do better. Everything is seeded: the same arguments write the same files.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carl_geo.errors import CarlGeoError

#: AVIRIS-like band centres: 224 bands over 0.40-2.50 µm minus the water-vapour bands.
_WATER_UM = ((1.34, 1.44), (1.79, 1.96), (2.46, 2.60))


def aviris_like_wavelengths(n_bands: int = 200) -> list[float]:
    """``n_bands`` band centres (µm) evenly over 0.40-2.45 µm outside the water-vapour windows."""
    grid = np.linspace(0.40, 2.50, 4000)
    keep = np.ones_like(grid, dtype=bool)
    for lo, hi in _WATER_UM:
        keep &= ~((grid > lo) & (grid < hi))
    grid = grid[keep]
    idx = np.round(np.linspace(0, len(grid) - 1, n_bands)).astype(int)
    return [round(float(v), 4) for v in grid[idx]]


def _endmembers(wl: np.ndarray) -> dict[str, np.ndarray]:
    """Smooth reflectance-like curves (0..1) on the wavelength grid ``wl`` (µm)."""
    def g(c: float, w: float) -> np.ndarray:
        return np.exp(-0.5 * ((wl - c) / w) ** 2)

    red_edge = 1 / (1 + np.exp(-(wl - 0.715) / 0.012))
    veg = 0.04 + 0.06 * g(0.55, 0.03) + 0.42 * red_edge * (1 - 0.55 * (wl > 1.3)) \
        - 0.10 * g(1.45, 0.06) - 0.12 * g(1.95, 0.08) - 0.05 * g(0.98, 0.03)
    soil = 0.08 + 0.22 * (1 - np.exp(-(wl - 0.4) / 0.6)) - 0.04 * g(2.2, 0.04)
    residue = 0.10 + 0.25 * (1 - np.exp(-(wl - 0.4) / 0.9)) - 0.08 * g(2.1, 0.06) - 0.05 * g(1.7, 0.05)
    return {"veg": np.clip(veg, 0.01, 1), "soil": np.clip(soil, 0.01, 1), "residue": np.clip(residue, 0.01, 1)}


def _class_signatures(wl: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, C) reflectance signatures: pairs of classes share a mixture and differ slightly."""
    em = _endmembers(wl)
    sigs = []
    for pair in range((k + 1) // 2):
        mix = rng.dirichlet([2.0, 1.0, 1.0])
        centre, width = rng.uniform(0.45, 2.35), rng.uniform(0.02, 0.08)
        for j in range(2):
            m = mix + (rng.normal(0, 0.05, 3) if j else 0)
            m = np.clip(m, 0.02, None)
            m /= m.sum()
            s = m[0] * em["veg"] + m[1] * em["soil"] + m[2] * em["residue"]
            s = s * (1 - 0.08 * np.exp(-0.5 * ((wl - centre) / width) ** 2))  # class feature
            if j:  # the sibling class: a small shift of its own
                c2 = rng.uniform(0.45, 2.35)
                s = s * (1 - 0.04 * np.exp(-0.5 * ((wl - c2) / 0.05) ** 2))
            sigs.append(s)
    return np.stack(sigs[:k])


def _fields(size: int, rng: np.random.Generator, min_side: int, max_side: int) -> np.ndarray:
    """(size, size) int32 field ids 0..n-1 from recursive random splits of the scene."""
    ids = np.zeros((size, size), np.int32)
    boxes = [(0, 0, size, size)]
    out = []
    while boxes:
        r0, c0, r1, c1 = boxes.pop()
        h, w = r1 - r0, c1 - c0
        if max(h, w) <= max_side and (min(h, w) < 2 * min_side or rng.random() < 0.35):
            out.append((r0, c0, r1, c1))
            continue
        if h >= w and h >= 2 * min_side:
            cut = int(rng.integers(r0 + min_side, r1 - min_side + 1))
            boxes += [(r0, c0, cut, c1), (cut, c0, r1, c1)]
        elif w >= 2 * min_side:
            cut = int(rng.integers(c0 + min_side, c1 - min_side + 1))
            boxes += [(r0, c0, r1, cut), (r0, cut, r1, c1)]
        else:
            out.append((r0, c0, r1, c1))
    for i, (r0, c0, r1, c1) in enumerate(out):
        ids[r0:r1, c0:c1] = i
    return ids


@dataclass(frozen=True)
class SyntheticScene:
    """Files of :func:`hyperspectral_fields`.

    Attributes:
        image: (C, H, W) int16 GeoTIFF with per-band ``CENTRAL_WAVELENGTH_UM``.
        polygons: GeoPackage of training polygons (field ``label_field``), in the training blocks only.
        test_reference: uint8 GeoTIFF, value ``i + 1`` = ``class_names[i]`` on labelled pixels of the
            test blocks, 0 elsewhere (never under a polygon).
        reference: uint8 GeoTIFF of every labelled pixel (0 = background, unlabelled).
        label_field: the class column of ``polygons``.
        class_names: the classes in value order.
        wavelengths: µm per band.
    """

    image: Path
    polygons: Path
    test_reference: Path
    reference: Path
    label_field: str
    class_names: tuple[str, ...]
    wavelengths: tuple[float, ...]


def hyperspectral_fields(out_dir: str | os.PathLike, *, size: int = 145, n_bands: int = 200, n_classes: int = 16,
                         pixel_size: float = 20.0, noise: float = 0.04, background: float = 0.35,
                         block: int = 29, test_every: int = 3, seed: int = 0) -> SyntheticScene:
    """Write a hyperspectral crop-field scene with training polygons and a disjoint test reference.

    Args:
        out_dir: folder to write ``image.tif``, ``train_polygons.gpkg``, ``test_reference.tif``,
            ``reference.tif`` into (created).
        size: scene side in pixels (square).
        n_bands: spectral bands (0.40-2.45 µm, water-vapour windows left out).
        n_classes: crop classes (>= 2); class frequencies are uneven (a few rare classes).
        pixel_size: metres per pixel (EPSG:32616, UTM 16N).
        noise: per-pixel noise, relative to the signal (band-correlated plus white).
        background: share of fields that are unlabelled background (roads, farmsteads, fallow).
        block: side (px) of the square blocks used for the train/test split.
        test_every: every ``test_every``-th block (diagonal pattern) is a test block.
        seed: seeds everything.

    Returns:
        :class:`SyntheticScene`.
    """
    import geopandas as gpd
    import rasterio
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import shape

    if n_classes < 2:
        raise CarlGeoError(f"n_classes must be >= 2, got {n_classes}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wl = np.asarray(aviris_like_wavelengths(n_bands))
    sigs = _class_signatures(wl, n_classes, rng)
    bg_sig = _class_signatures(wl, 4, rng)

    rows, cols = np.indices((size, size))
    blocks = (rows // block) * (size // block + 1) + cols // block
    is_test_px = ((rows // block) + 2 * (cols // block)) % test_every == 0

    # fields and their classes: uneven frequencies, every class in a training and in a test block
    for attempt in range(200):
        fields = _fields(size, rng, min_side=5, max_side=max(12, size // 4))
        n_f = int(fields.max()) + 1
        weights = 1.0 / (1 + np.arange(n_classes)) ** 0.8
        weights = rng.permutation(weights / weights.sum())
        cls = rng.choice(n_classes, size=n_f, p=weights)
        cls[rng.random(n_f) < background] = -1
        label = np.where(cls[fields] >= 0, cls[fields] + 1, 0).astype(np.uint8)
        ok = all(((label == k + 1) & ~is_test_px).sum() >= 12 and ((label == k + 1) & is_test_px).sum() >= 12
                 for k in range(n_classes))
        if ok:
            break
    else:
        raise RuntimeError("could not place every class in both training and test blocks; use a larger size")

    # spectra: field mixture + brightness, crop rows, smooth illumination, band-correlated and white noise
    c = len(wl)
    img = np.empty((c, size, size), np.float32)
    basis = np.stack([np.sin(2 * math.pi * (wl - wl[0]) * f / (wl[-1] - wl[0]) + p)
                      for f, p in ((0.5, 0.3), (1.0, 1.1), (2.0, 2.0))])  # (3, C) smooth shapes
    illum = 1 + 0.06 * np.sin(rows / size * 2 * math.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6)) \
        * np.cos(cols / size * 2 * math.pi * rng.uniform(0.5, 1.5))
    for f in range(n_f):
        sel = fields == f
        k = cls[f]
        base = sigs[k] if k >= 0 else bg_sig[rng.integers(len(bg_sig))]
        base = base * (1 + 0.04 * rng.normal() * basis[rng.integers(3)])  # field-level spectral variation
        gain = rng.uniform(0.9, 1.1)
        rr = rows[sel]
        period, phase = rng.uniform(3, 6), rng.uniform(0, 2 * math.pi)
        texture = 1 + 0.05 * np.sin(2 * math.pi * rr / period + phase)  # crop rows
        n = int(sel.sum())
        corr = rng.normal(0, noise, (n, 3)) @ basis  # (n, C)
        white = rng.normal(0, noise * 0.5, (n, c))
        pix = base[None] * gain * (texture * illum[sel])[:, None] * (1 + corr + white)
        img[:, sel] = pix.T
    radiance = np.clip(img * 8000 + rng.normal(0, 15, img.shape), 0, 32767).astype(np.int16)

    transform = Affine(pixel_size, 0, 500000.0, 0, -pixel_size, 4_500_000.0)
    crs = "EPSG:32616"
    names = tuple(f"crop_{k + 1:02d}" for k in range(n_classes))
    profile = {"driver": "GTiff", "width": size, "height": size, "count": c, "dtype": "int16", "crs": crs,
               "transform": transform, "compress": "deflate", "predictor": 2, "tiled": True,
               "blockxsize": 128, "blockysize": 128, "interleave": "pixel"}
    image = out / "image.tif"
    with rasterio.open(image, "w", **profile) as dst:
        dst.write(radiance)
        dst.update_tags(SENSOR="synthetic AVIRIS-like", UNITS="radiance-like DN")
        for i, w in enumerate(wl, start=1):
            dst.set_band_description(i, f"B{i:03d}")
            dst.update_tags(i, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=f"{w:.4f}")

    def write_labels(path: Path, data: np.ndarray) -> Path:
        prof = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8", "crs": crs,
                "transform": transform, "nodata": 0, "compress": "deflate"}
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(data, 1)
            dst.update_tags(CLASS_NAMES=",".join(names))
        return path

    reference = write_labels(out / "reference.tif", label)
    test_reference = write_labels(out / "test_reference.tif", np.where(is_test_px, label, 0).astype(np.uint8))

    # polygons: each labelled field's part inside a training block, shrunk by one pixel (drawn inside the field)
    from scipy.ndimage import binary_erosion

    recs = []
    for f in range(n_f):
        if cls[f] < 0:
            continue
        for b in np.unique(blocks[(fields == f) & ~is_test_px]):
            part = (fields == f) & (blocks == b) & ~is_test_px
            part = binary_erosion(part, iterations=1)
            if part.sum() < 4:
                continue
            for geom, v in shapes(part.astype(np.uint8), mask=part, transform=transform):
                if v:
                    recs.append({"label": names[cls[f]], "geometry": shape(geom)})
    gdf = gpd.GeoDataFrame(recs, crs=crs)
    polygons = out / "train_polygons.gpkg"
    polygons.unlink(missing_ok=True)
    gdf.to_file(polygons, driver="GPKG")
    return SyntheticScene(image=image, polygons=polygons, test_reference=test_reference, reference=reference,
                          label_field="label", class_names=names, wavelengths=tuple(float(w) for w in wl))
