"""Trained models and scenes shared by ``bench_int8.py`` and ``bench_tiling.py``.

* the NC demo model: a tiny CARL trained from the 29 analyst polygons of the shipped North Carolina
  Landsat 7 scene exactly like ``carl-geo demo`` (15 epochs, seed 0);
* a generated 13-band scene (``bench_predictor.generate_raster``: smooth fields + noise, uint16,
  Sentinel-2 wavelengths) with polygons cut from k-means clusters of its pixels, and a tiny CARL
  trained on them (10 epochs), so class maps on it come from a model with confident classes.

Models are cached as bundles in the data folder and reused by later runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bench_predictor import generate_raster

#: Epochs of the demo (``carl_geo.demo.DEMO_EPOCHS``).
NC_EPOCHS = 15


def uptime() -> str:
    """``/proc/loadavg`` (1, 5, 15 min load averages), recorded beside every measurement."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def nc_model(data: Path) -> tuple[Any, Any]:
    """(bundle, scene) of the NC demo model, trained once into ``data``."""
    import carl_geo
    from carl_geo.sample_data import nc_landsat7
    from carl_geo.polygon_training import train_from_polygons

    scene = nc_landsat7()
    path = data / "nc_demo_model.pt"
    if not path.exists():
        train_from_polygons(scene.image, scene.polygons, scene.label_field, path, sensor=scene.sensor,
                            epochs=NC_EPOCHS, val_fraction=0.0, seed=0, device="cpu")
    return carl_geo.load_bundle(path), scene


def generated_scene(data: Path, size: int = 1024, classes: int = 6, seed: int = 0) -> tuple[Path, Path]:
    """A ``size``^2 13-band scene and a GeoPackage of square polygons (24 px) labelled by k-means
    cluster of the pixels inside (only squares whose pixels agree >= 90 %)."""
    import geopandas as gpd
    import rasterio
    from shapely.geometry import box
    from sklearn.cluster import KMeans

    src = generate_raster(data / f"bench_{size}.tif", size)
    gpkg = data / f"bench_{size}_polygons.gpkg"
    if gpkg.exists():
        return src, gpkg
    with rasterio.open(src) as ds:
        img = ds.read().astype(np.float32)
        transform, crs = ds.transform, ds.crs
    rng = np.random.default_rng(seed)
    pix = img.reshape(img.shape[0], -1).T
    km = KMeans(classes, n_init=3, random_state=seed).fit(pix[rng.choice(len(pix), 20000, replace=False)])
    labels = km.predict(pix).reshape(size, size)
    rows, names, side = [], [], 24
    for _ in range(4000):
        y, x = rng.integers(0, size - side, 2)
        win = labels[y:y + side, x:x + side]
        values, counts = np.unique(win, return_counts=True)
        if counts.max() >= 0.9 * win.size and names.count(f"c{values[counts.argmax()]}") < 12:
            x0, y0 = transform * (x, y)
            x1, y1 = transform * (x + side, y + side)
            rows.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
            names.append(f"c{values[counts.argmax()]}")
    gpd.GeoDataFrame({"label": names}, geometry=rows, crs=crs).to_file(gpkg, driver="GPKG")
    return src, gpkg


def generated_model(data: Path, size: int = 1024) -> tuple[Any, Path]:
    """(bundle, raster) of a tiny CARL trained on :func:`generated_scene`'s polygons (10 epochs)."""
    import carl_geo
    from carl_geo.polygon_training import train_from_polygons

    src, gpkg = generated_scene(data, size)
    path = data / f"bench_{size}_model.pt"
    if not path.exists():
        train_from_polygons(src, gpkg, "label", path, epochs=10, val_fraction=0.0, seed=0, device="cpu")
    return carl_geo.load_bundle(path), src


def class_agreement(a: Path | os.PathLike, b: Path | os.PathLike) -> dict[str, float]:
    """Share of pixels (valid in both) with the same class in two class GeoTIFFs."""
    import rasterio

    with rasterio.open(a) as da, rasterio.open(b) as db:
        ma, mb = da.read(1, masked=True), db.read(1, masked=True)
    valid = ~np.ma.getmaskarray(ma) & ~np.ma.getmaskarray(mb)
    same = (np.asarray(ma) == np.asarray(mb)) & valid
    return {"agreement": float(same.sum() / max(valid.sum(), 1)), "pixels": int(valid.sum())}


def feature_cosine(a: Path | os.PathLike, b: Path | os.PathLike) -> dict[str, float]:
    """Per-pixel cosine similarity of two embedding GeoTIFFs (D bands): mean, 1st percentile, min."""
    import rasterio

    with rasterio.open(a) as da, rasterio.open(b) as db:
        fa, fb = da.read().astype(np.float64), db.read().astype(np.float64)
    ok = np.isfinite(fa).all(0) & np.isfinite(fb).all(0)
    fa, fb = fa[:, ok], fb[:, ok]
    cos = (fa * fb).sum(0) / (np.linalg.norm(fa, axis=0) * np.linalg.norm(fb, axis=0) + 1e-12)
    return {"mean": float(cos.mean()), "p1": float(np.percentile(cos, 1)), "min": float(cos.min()),
            "pixels": int(ok.sum())}
