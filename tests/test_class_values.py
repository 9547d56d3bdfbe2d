"""The user's numeric class codes survive training and prediction (issue #20, item 9)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch

import carl_geo
from carl_geo.datasets.vector_labels import class_codes
from carl_geo.errors import CarlGeoError
from carl_geo.inference import predict_raster
from carl_geo.inference.writer import read_class_map
from user_files import run_cli, save_model, write_scene

FAST = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]


def test_class_codes_of_label_names() -> None:
    assert class_codes(["1", "3", "4", "5", "6", "7"]) == [1, 3, 4, 5, 6, 7]
    assert class_codes(["forest", "water"]) is None
    assert class_codes(["01", "1"]) is None and class_codes(["-1", "2"]) is None and class_codes(["70000"]) is None


def test_bundle_round_trip_and_old_files(tmp_path: Path) -> None:
    path = save_model(tmp_path / "codes.pt", class_names=["crops", "urban", "water"], class_values=[1, 3, 40])
    assert carl_geo.load_bundle(path).class_values == [1, 3, 40]
    obj = torch.load(path, weights_only=True)
    obj.pop("class_values")  # a file written before class values were stored
    torch.save(obj, tmp_path / "old.pt")
    assert carl_geo.load_bundle(tmp_path / "old.pt").class_values is None
    with pytest.raises(ValueError, match="distinct integers"):
        save_model(tmp_path / "bad.pt", class_names=["a", "b"], class_values=[3, 3])


def test_predicted_raster_keeps_the_codes(tmp_path: Path, capsys) -> None:
    scene = write_scene(tmp_path / "scene.tif")
    model = save_model(tmp_path / "codes.pt", class_names=["crops", "urban", "water"], class_values=[1, 3, 40])
    plain = save_model(tmp_path / "plain.pt", class_names=["crops", "urban", "water"])  # same weights, no codes
    code, _, out = run_cli(["predict", scene, tmp_path / "codes.tif", "-m", model, *FAST,
                            "--quicklook", tmp_path / "codes.png"], capsys)
    assert code == 0 and "class values: 1 = crops, 3 = urban, 40 = water" in out
    from carl_geo.inference.runner import resolve_precision

    chosen = resolve_precision("auto", torch.device("cpu"), carl_geo.load_bundle(model).model)
    assert f" on cpu ({chosen})" in out  # the precision "auto" chose (bf16 for this CARL model on a CPU with AMX)
    predict_raster(carl_geo.load_bundle(plain), scene, tmp_path / "plain.tif", device="cpu", tile_size=32, overlap=8)
    with rasterio.open(tmp_path / "codes.tif") as a, rasterio.open(tmp_path / "plain.tif") as b:
        codes, index = a.read(1), b.read(1)
        tags, cmap = a.tags(), a.colormap(1)
    lut = np.array([1, 3, 40])
    np.testing.assert_array_equal(codes, lut[index])  # the same map, in the user's codes
    assert json.loads(tags["CLASS_VALUES"]) == [1, 3, 40] and tags["CLASS_40"] == "water" and "CLASS_2" not in tags
    bundle = carl_geo.load_bundle(model)
    assert cmap[40][:3] == tuple(bundle.colors[2]) and cmap[255] == (0, 0, 0, 0)
    assert (tmp_path / "codes.png").stat().st_size > 10_000
    # read back: the class positions, whatever values the file holds
    classes, names = read_class_map(tmp_path / "codes.tif")
    assert names == ["crops", "urban", "water"] and classes.dtype == np.int64
    np.testing.assert_array_equal(classes, read_class_map(tmp_path / "plain.tif")[0])
    np.testing.assert_array_equal(classes, np.where(index == 255, -1, index.astype(np.int64)))
    with pytest.raises(CarlGeoError, match="no CLASS_NAMES tag"):
        read_class_map(scene)
    # codes above 254 need uint16 (65535 stays nodata)
    big = save_model(tmp_path / "big.pt", class_names=["a", "b"], class_values=[100, 1000])
    predict_raster(carl_geo.load_bundle(big), scene, tmp_path / "big.tif", device="cpu", tile_size=32, overlap=8)
    with rasterio.open(tmp_path / "big.tif") as src:
        assert src.dtypes[0] == "uint16" and src.nodata == 65535 and set(np.unique(src.read(1))) <= {100, 1000}


@pytest.mark.slow  # > 4 s on the 2-core machine
def test_training_on_numeric_labels_keeps_them(tmp_path: Path) -> None:
    from carl_geo.sample_data import nc_landsat7, write_crop
    from carl_geo.polygon_training import train_from_polygons

    crop = write_crop(nc_landsat7(), tmp_path / "crop", 112, 128, 160)
    ids = sorted(gpd.read_file(crop.polygons)["id"].unique().tolist())
    assert ids == [3, 4, 5, 6, 7]  # were written as 0-4 before
    result = train_from_polygons(crop.image, crop.polygons, "id", tmp_path / "ids.pt", epochs=1, chip_size=32,
                                 val_fraction=0.0, device="cpu")
    assert result.bundle.class_values == ids and carl_geo.load_bundle(tmp_path / "ids.pt").class_values == ids
    res = predict_raster(carl_geo.load_bundle(tmp_path / "ids.pt"), crop.image, tmp_path / "ids.tif", device="cpu")
    with rasterio.open(res.path) as src:
        assert set(np.unique(src.read(1))) - {255} <= set(ids)


def test_class_colours_follow_land_cover_names():
    """Polygon-trained models know only class names: names that say what they are get the colours map readers
    expect (each colour once), the others distinct matplotlib colours; names without keywords keep tab10."""
    from carl_geo.class_colors import class_colors, default_colors, land_cover_color

    nc = class_colors(["developed", "forest", "herbaceous", "sediment", "shrubland", "water"])
    assert nc[5] == (40, 90, 210) and nc[1] == (20, 100, 35) and nc[0] == (200, 40, 40)  # water blue, forest green
    assert class_colors(["a", "b", "c"]) == default_colors(3)
    crops = class_colors([f"crop_{i:02d}" for i in range(1, 17)])
    assert crops[0] == (235, 215, 60) and len(set(crops)) == 16  # one yellow, the others distinct
    mixed = class_colors(["Water body", "Sea", "Urban", "class 4"])
    assert mixed[0] == (40, 90, 210) and mixed[2] == (200, 40, 40) and len(set(mixed)) == 4
    for rgb in mixed[1], mixed[3]:  # the fallbacks stay clear of the colours already used
        assert min(sum((a - b) ** 2 for a, b in zip(rgb, u)) ** 0.5 for u in mixed if u != rgb) >= 60
    assert land_cover_color("seasonal crops") == (235, 215, 60) and land_cover_color("iceberg") is None
    assert land_cover_color("Mixed_forest") == land_cover_color("Treecover") == (20, 100, 35)
    assert land_cover_color("herbaceous wetland") == (100, 180, 190)  # first match wins
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 2)
    assert carl_geo.make_bundle(seg, class_names=["forest", "lake"]).colors == [(20, 100, 35), (40, 90, 210)]


def test_read_class_map_maps_codes_nodata_and_strays_to_positions(tmp_path: Path) -> None:
    from carl_geo.inference.writer import class_tags

    values = np.array([[1, 3, 40], [255, 7, 1]], dtype=np.uint8)  # 255 nodata, 7 names no class
    with rasterio.open(tmp_path / "m.tif", "w", driver="GTiff", width=3, height=2, count=1, dtype="uint8",
                       nodata=255) as dst:
        dst.write(values, 1)
        dst.update_tags(**class_tags(["crops", "urban", "water"], [1, 3, 40]))
    classes, names = read_class_map(tmp_path / "m.tif")
    assert names == ["crops", "urban", "water"]
    np.testing.assert_array_equal(classes, [[0, 1, 2], [-1, -1, 0]])
