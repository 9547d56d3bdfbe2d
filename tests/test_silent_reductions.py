"""Nothing is dropped or emptied without a word (issue #20, item 10): all-nodata input, features
without a class, lines and points given as training polygons."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from carl_geo.datasets.vector_labels import read_label_vector
from carl_geo.errors import CarlGeoWarning, InputError
from user_files import fingerprint, partial_files, run_cli, save_model, write_scene

FAST = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]


@pytest.mark.parametrize("fill", ["nodata", "nan", "one band"])
def test_all_nodata_input_writes_nothing(fill: str, tmp_path: Path, capsys) -> None:
    if fill == "nodata":
        scene = write_scene(tmp_path / "empty.tif", np.zeros((4, 40, 56)), nodata=0)
    elif fill == "nan":
        scene = write_scene(tmp_path / "empty.tif", np.full((4, 40, 56), np.nan), dtype="float32", nodata=None)
    else:  # one band without a value empties every pixel: the error names it and the --bands that leave it out
        data = np.random.default_rng(0).uniform(500, 3000, (4, 40, 56))
        data[1] = np.nan
        scene = write_scene(tmp_path / "empty.tif", data, dtype="float32", nodata=None)
    model = save_model(tmp_path / "model.pt", normalization={"mode": "fixed", "mean": 2000.0, "std": 900.0})
    out = tmp_path / "map.tif"
    out.write_bytes(b"yesterday's map")
    code, err, _ = run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite"], capsys)
    assert code == 2 and len(err) == 1 and "the map would be empty, so nothing was written" in err[0], err
    if fill == "one band":
        assert "band 2 (" in err[0] and "nodata or NaN everywhere in the input" in err[0], err
        assert err[0].rstrip().endswith("--bands 1,3,4"), err
    else:
        assert "every pixel in the input is nodata" in err[0] and "--nodata" in err[0], err
    assert out.read_bytes() == b"yesterday's map" and partial_files(tmp_path) == []
    if fill == "one band":  # measuring the scene first says the same before any tile runs
        code, err, _ = run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite", "--normalization", "scene"],
                               capsys)
        assert code == 2 and "no valid pixel found in the sampled windows: band 2 (" in err[0], err
        assert err[0].rstrip().endswith("--bands 1,3,4") and out.read_bytes() == b"yesterday's map", err
        # the advice works: the same input with the bands it names maps
        code, err, _ = run_cli(["predict", scene, out, "-m", model, *FAST, "--overwrite", "--bands", "1,3,4"], capsys)
        assert code == 0, err
        with rasterio.open(out) as ds:
            assert ds.read(1, masked=True).count() == 40 * 56


@pytest.fixture(scope="module")
def polygons(tmp_path_factory: pytest.TempPathFactory) -> gpd.GeoDataFrame:
    from carl_geo.sample_data import nc_landsat7

    return gpd.read_file(nc_landsat7().polygons).head(10)


def test_features_without_a_class_are_counted(polygons: gpd.GeoDataFrame, tmp_path: Path) -> None:
    g = polygons.copy()
    g.loc[g.index[:3], "label"] = None
    g.to_file(tmp_path / "nulls.gpkg")
    with pytest.warns(CarlGeoWarning, match="3 of the 10 polygons in nulls.gpkg have no value in field 'label'"):
        assert len(read_label_vector(tmp_path / "nulls.gpkg", "label")) == 7


def test_lines_and_points_are_not_polygons(polygons: gpd.GeoDataFrame, tmp_path: Path, capsys) -> None:
    lines, points = polygons.copy(), polygons.copy()
    lines["geometry"] = lines.geometry.boundary
    points["geometry"] = points.geometry.centroid
    lines.to_file(tmp_path / "lines.gpkg")
    points.to_file(tmp_path / "points.gpkg")
    with pytest.raises(InputError, match="holds 10 lines, no polygons"):
        read_label_vector(tmp_path / "lines.gpkg", "label")
    with pytest.raises(InputError, match="holds 10 points, no polygons.*Buffer"):
        read_label_vector(tmp_path / "points.gpkg", "label")
    mixed = gpd.GeoDataFrame(pd_concat([polygons, lines.head(2), points.head(1)]), crs=polygons.crs)
    mixed.to_file(tmp_path / "mixed.gpkg")
    with pytest.warns(CarlGeoWarning, match="2 lines and 1 point in mixed.gpkg were left out"):
        kept = read_label_vector(tmp_path / "mixed.gpkg", "label")
    assert len(kept) == 10 and set(kept.geom_type) <= {"Polygon", "MultiPolygon"}
    # on the command line: one line, before any training; the raster is untouched
    from carl_geo.sample_data import nc_landsat7

    raster = nc_landsat7().image
    before = fingerprint(raster)
    code, err, _ = run_cli(["train", "--raster", raster, "--labels", tmp_path / "points.gpkg", "--label-field",
                            "label", "--out", tmp_path / "m.pt"], capsys)
    assert code == 2 and len(err) == 1 and "holds 10 points, no polygons" in err[0]
    assert fingerprint(raster) == before and not (tmp_path / "m.pt").exists()


def pd_concat(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.concat(frames, ignore_index=True)
