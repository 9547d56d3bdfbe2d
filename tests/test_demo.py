"""``carl-geo demo`` in its quick mode on the shipped NC Landsat 7 scene (~30-60 s on 2 cores)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from carl_geo.cli import build_parser
from carl_geo.demo import run_demo
from carl_geo.sample_data import nc_landsat7

SCENE = nc_landsat7()


def test_sample_scene_is_shipped_with_attribution():
    assert SCENE.image.is_file() and SCENE.strata.is_file() and SCENE.polygons.is_file()
    notice = SCENE.notice.read_text()
    assert "CC BY-SA 3.0" in notice and "GRASS GIS" in notice and "Landsat 7" in notice
    total = sum(p.stat().st_size for p in SCENE.image.parent.iterdir())
    assert total < 3 * 1024 ** 2
    with rasterio.open(SCENE.image) as src, rasterio.open(SCENE.strata) as ref:
        assert src.count == 6 and src.dtypes[0] == "uint8" and src.nodata == 0
        assert src.descriptions == ("B1", "B2", "B3", "B4", "B5", "B7")
        assert [float(src.tags(b, ns="IMAGERY")["CENTRAL_WAVELENGTH_UM"]) for b in src.indexes] == \
            list(SCENE.wavelengths)
        assert src.profile["compress"] == "deflate"
        assert ref.shape == src.shape and ref.transform == src.transform
        assert src.crs.to_epsg() == 32119 and ref.crs.to_epsg() == 3358
        valid = src.dataset_mask() > 0
        strata = ref.read(1)
    assert 0.9 < valid.mean() < 1.0  # nodata corners of the Landsat footprint are kept as nodata
    assert set(np.unique(strata[valid])) <= set(range(1, 8))


@pytest.mark.slow
def test_quick_demo_writes_maps_figure_and_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    res = run_demo(out, quick=True)
    paths = res["paths"]
    for key in ("model", "geotiff", "baseline_geotiff", "forest_geotiff", "png", "scores_json"):
        assert (out / paths[key].split("/")[-1]).is_file(), key
    assert res["kept"] == res["training_report"]["kept"] and res["baseline_name"].startswith("forest + context")
    assert {c["name"] for c in res["training_report"]["candidates"]} >= {"rf", "rf_context", "carl_ensemble"}
    for who in ("carl", "baseline", "forest_on_bands"):
        s = res[who]
        assert 0 <= s["overall_accuracy"] <= 1 and 0 <= s["mean_iou"] <= 1, s
        assert s["overall_accuracy"] > 0.2  # far above chance for 7 classes even after 3 epochs
        assert np.asarray(s["confusion_matrix"]).sum() == res["n_eval_pixels"]
    assert res["n_eval_pixels"] > 100_000 and res["winner"] in ("CARL", "RandomForest", "mixed")
    assert res["classes_without_polygons"] == ["agriculture"]
    with rasterio.open(SCENE.image) as src, rasterio.open(paths["geotiff"]) as cls:
        assert cls.crs == src.crs and cls.transform == src.transform and cls.shape == src.shape
        names = json.loads(cls.tags()["CLASS_NAMES"])
        assert names == res["classes_trained"]
        colors = dict(zip(SCENE.class_names, SCENE.colors))
        assert cls.colormap(1)[names.index("water")][:3] == colors["water"]
        pred = cls.read(1)
        valid = src.dataset_mask() > 0
    assert (pred[~valid] == cls.nodata).all() and (pred[valid] < len(names)).all()
    assert json.loads((out / "scores.json").read_text())["carl"]["overall_accuracy"] == res["carl"]["overall_accuracy"]
    assert res["seconds"]["total"] > 0


def test_demo_command_is_registered():
    args = build_parser().parse_args(["demo", "--quick", "--out", "x", "--epochs", "2"])
    assert args.quick and args.out == "x" and args.epochs == 2 and callable(args.func)
    default = build_parser().parse_args(["demo"])
    assert default.out == "carl_demo_output" and not default.quick
