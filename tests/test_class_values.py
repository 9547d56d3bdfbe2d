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
from carl_geo.inference import predict_raster
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
