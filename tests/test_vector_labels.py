"""Polygons -> class mask on a raster grid (carl_geo.datasets.vector_labels), on the shipped NC scene."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.features import rasterize
from shapely.geometry import box

from carl_geo.datasets.vector_labels import (
    IGNORE_INDEX,
    MAX_CLASSES,
    MIN_CLASS_PIXELS,
    check_label_pixels,
    class_names_from_values,
    rasterize_labels,
    read_label_vector,
)
from carl_geo.sample_data import nc_landsat7

SCENE = nc_landsat7()


@pytest.fixture(scope="module")
def grid() -> dict:
    with rasterio.open(SCENE.image) as src:
        return {"shape": (src.height, src.width), "transform": src.transform, "crs": src.crs}


@pytest.fixture(scope="module")
def polygons() -> gpd.GeoDataFrame:
    return read_label_vector(SCENE.polygons, "label")


def test_mask_matches_per_class_rasterisation(grid, polygons):
    lab = rasterize_labels(polygons, "label", **grid)
    assert lab.class_names == ["developed", "forest", "herbaceous", "sediment", "shrubland", "water"]
    assert lab.mask.shape == grid["shape"] and lab.mask.dtype == np.int64
    in_img = polygons.to_crs(grid["crs"])
    for k, name in enumerate(lab.class_names):
        ref = rasterize([(g, 1) for g in in_img.geometry[in_img["label"] == name]], out_shape=grid["shape"],
                        transform=grid["transform"], dtype="uint8").astype(bool)
        assert (lab.mask == k).sum() == ref.sum() > 0
        assert np.array_equal(lab.mask == k, ref)
    assert set(np.unique(lab.mask)) == set(range(6)) | {IGNORE_INDEX}
    # the shipped polygons agree with the reference map where they lie (the polygons follow strata.tif)
    with rasterio.open(SCENE.strata) as ref:
        strata = ref.read(1)
    codes = np.array([SCENE.class_names.index(n) + 1 for n in lab.class_names])
    inside = lab.mask >= 0
    assert (codes[lab.mask[inside]] == strata[inside]).mean() > 0.99
    ids = np.unique(lab.polygon_ids[lab.polygon_ids > 0])
    assert len(ids) == len(polygons) and lab.n_polygons_outside == 0


def test_polygons_in_wgs84_rasterise_to_the_same_pixels(grid, polygons, tmp_path):
    path = tmp_path / "polygons_4326.gpkg"
    polygons.to_crs("EPSG:4326").to_file(path, driver="GPKG")
    reread = read_label_vector(path, "label")
    assert reread.crs.to_epsg() == 4326
    a = rasterize_labels(polygons, "label", **grid).mask
    b = rasterize_labels(reread, "label", **grid).mask
    # EPSG:3358 -> 4326 -> 32119 moves vertices by far less than a 28.5 m pixel
    assert (a != b).sum() <= 2, f"{(a != b).sum()} pixels differ"
    assert (b >= 0).sum() == (a >= 0).sum()


def test_overlapping_polygons_of_two_classes_are_ignored(grid):
    x0, y0 = grid["transform"] @ (100, 100)
    size = 10 * 28.5
    gdf = gpd.GeoDataFrame({"cls": ["a", "b"]}, geometry=[box(x0, y0 - size, x0 + size, y0),
                                                          box(x0 + size / 2, y0 - size, x0 + 1.5 * size, y0)],
                           crs=grid["crs"])
    lab = rasterize_labels(gdf, "cls", **grid)
    assert (lab.mask == 0).sum() == 50 and (lab.mask == 1).sum() == 50  # 10 x 5 px each, 10 x 5 px shared
    assert lab.n_conflict_pixels == 50
    assert (lab.polygon_ids > 0).sum() == 150


def test_integer_labels_sort_numerically():
    assert class_names_from_values([10, 2, 2, 3]) == ["2", "3", "10"]
    assert class_names_from_values([10.0, 2.0]) == ["2", "10"]
    assert class_names_from_values(["water", "forest"]) == ["forest", "water"]


def test_integer_class_column(grid, polygons):
    lab = rasterize_labels(polygons, "id", **grid)  # GRASS class codes 1..7 as integers
    assert lab.class_names == ["1", "3", "4", "5", "6", "7"]
    named = rasterize_labels(polygons, "label", **grid)
    assert np.array_equal(lab.mask >= 0, named.mask >= 0)


# ---- bad inputs ------------------------------------------------------------------------------

def test_missing_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="label file not found"):
        read_label_vector(tmp_path / "nope.gpkg", "label")
    with pytest.raises(ValueError, match=r"no field 'class'.*label, id"):
        read_label_vector(SCENE.polygons, "class")


def test_the_polygon_layer_of_a_geopackage_with_several_is_found_or_asked_for(polygons, tmp_path):
    """A project GeoPackage holds roads before the land-cover polygons: the one polygon layer with the label field is
    read (and named); with two such layers the error names them and how to export one."""
    import warnings

    from carl_geo.errors import CarlGeoWarning

    gpkg = tmp_path / "project.gpkg"
    roads = polygons.assign(geometry=polygons.geometry.boundary)
    roads.to_file(gpkg, layer="roads")
    polygons.drop(columns="label").to_file(gpkg, layer="parcels")  # polygons, but no class field
    polygons.to_file(gpkg, layer="landcover")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = read_label_vector(gpkg, "label")
    assert len(got) == len(polygons) and set(got.geometry.geom_type) <= {"Polygon", "MultiPolygon"}
    assert sorted(got["label"]) == sorted(polygons["label"])
    said = [str(w.message) for w in seen if issubclass(w.category, CarlGeoWarning)]
    assert said == ["project.gpkg holds 3 layers (roads (LineString), parcels (Polygon), landcover (Polygon)): the "
                    "polygons are read from 'landcover', the only polygon layer with a field 'label'"], said
    assert not [w for w in seen if "More than one layer" in str(w.message)]  # not pyogrio's own words
    polygons.head(5).to_file(gpkg, layer="landcover_2019")
    with pytest.raises(ValueError, match=r"2 polygon layers with a field 'label' \(landcover, landcover_2019\): "
                                         r"export the layer to train on .*ogr2ogr one_layer.gpkg project.gpkg"):
        read_label_vector(gpkg, "label")
    with pytest.raises(ValueError, match=r"4 layers .* none of them is a polygon layer with a field 'class'"):
        read_label_vector(gpkg, "class")


def test_classes_typed_two_ways_are_named(polygons, tmp_path):
    """'Forest ' and 'forest' are two classes to the model: trained as given, with one warning naming them."""
    from carl_geo.datasets.vector_labels import look_alike_classes
    from carl_geo.errors import CarlGeoWarning

    g = polygons.copy()
    g.loc[g.index[:2], "label"] = [" Water", "WATER  "]
    assert look_alike_classes(g["label"]) == [[" Water", "WATER  ", "water"]]
    assert look_alike_classes(polygons["label"]) == [] and look_alike_classes(pd.Series([1, 2, 1])) == []
    assert look_alike_classes(pd.Series(["Dense  forest", "dense forest", "forest"])) == [["Dense  forest",
                                                                                           "dense forest"]]
    g.to_file(tmp_path / "typed.gpkg")
    with pytest.warns(CarlGeoWarning, match=r"differ only in upper / lower case or spaces \(' Water' and 'WATER  ' "
                                            r"and 'water'\) are trained as different classes.*field 'label'"):
        got = read_label_vector(tmp_path / "typed.gpkg", "label")
    assert {" Water", "WATER  ", "water"} <= set(got["label"])


def test_continuous_or_too_many_values_are_rejected(polygons, tmp_path):
    g = polygons.copy()
    g["ndvi"] = np.linspace(0.1, 0.9, len(g))
    g["code"] = np.arange(len(g)) * 1.0
    g.to_file(tmp_path / "p.gpkg", driver="GPKG")
    with pytest.raises(ValueError, match="non-integer numbers.*not a class"):
        read_label_vector(tmp_path / "p.gpkg", "ndvi")
    assert read_label_vector(tmp_path / "p.gpkg", "code")["code"].nunique() == len(g)  # whole floats are fine
    many = gpd.GeoDataFrame({"v": np.arange(MAX_CLASSES + 1)},
                            geometry=[box(i, 0, i + 1, 1) for i in range(MAX_CLASSES + 1)], crs="EPSG:32119")
    many.to_file(tmp_path / "many.gpkg", driver="GPKG")
    with pytest.raises(ValueError, match=f"{MAX_CLASSES + 1} distinct values"):
        read_label_vector(tmp_path / "many.gpkg", "v")


def test_no_crs_on_either_side(grid, polygons, tmp_path):
    g = polygons.copy().set_crs(None, allow_override=True)
    g.to_file(tmp_path / "nocrs.shp")
    with pytest.raises(ValueError, match="no coordinate reference system"):
        read_label_vector(tmp_path / "nocrs.shp", "label")
    with pytest.raises(ValueError, match="raster has no coordinate reference system"):
        rasterize_labels(polygons, "label", shape=grid["shape"], transform=grid["transform"], crs=None)


def test_polygons_outside_and_wrong_crs(grid, polygons):
    far = polygons.copy()
    far["geometry"] = far.geometry.translate(50_000, 0)
    with pytest.raises(ValueError, match="no polygon overlaps the raster after reprojection"):
        rasterize_labels(far, "label", **grid)
    same_crs = polygons.to_crs(grid["crs"])
    same_crs["geometry"] = same_crs.geometry.translate(0, -50_000)
    with pytest.raises(ValueError, match="no polygon overlaps the raster in EPSG:32119"):
        rasterize_labels(same_crs, "label", **grid)
    # metre coordinates declared as degrees: nothing lands on the raster after reprojection
    wrong = polygons.to_crs(grid["crs"]).set_crs("EPSG:4326", allow_override=True)
    with pytest.raises(ValueError, match=r"after reprojection from EPSG:4326.*CRS is declared correctly"):
        rasterize_labels(wrong, "label", **grid)


def test_single_class_and_tiny_class(grid, polygons):
    one = polygons[polygons["label"] == "forest"]
    with pytest.raises(ValueError, match="only one class.*'forest'"):
        check_label_pixels(rasterize_labels(one, "label", **grid))
    x0, y0 = grid["transform"] @ (200.5, 200.5)  # a polygon far smaller than one pixel, off its centre
    tiny = gpd.GeoDataFrame({"label": ["pond"]}, geometry=[box(x0 + 1, y0 - 3, x0 + 3, y0 - 1)], crs=grid["crs"])
    mixed = gpd.GeoDataFrame(np.concatenate([polygons[["label"]].to_numpy(), [["pond"]]]), columns=["label"],
                             geometry=list(polygons.to_crs(grid["crs"]).geometry) + list(tiny.geometry),
                             crs=grid["crs"])
    lab = rasterize_labels(mixed, "label", **grid)
    with pytest.raises(ValueError, match=rf"'pond' \(0 px\) cover fewer than {MIN_CLASS_PIXELS} valid"):
        check_label_pixels(lab)
    check_label_pixels(rasterize_labels(polygons, "label", **grid))  # the real polygons pass
