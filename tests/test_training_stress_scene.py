"""Polygon training's default recipe on a generated many-band scene (issue #15, item 4).

The scene (:func:`carl_geo.sample_data.synthetic.hyperspectral_fields`): 160 bands, 72 x 72 px, 6 crop
classes in fields of 5-18 px, training polygons and test pixels in disjoint blocks. The per-pixel
random forest's score on it is computed here, so the comparison holds on any machine.

Measured (seed 0, 2 cores): forest OA 0.817 / mIoU 0.491. The default recipe picks pixels mode here (160 bands,
small fields): 800 steps, equal bins, OA 0.768 / mIoU 0.504 (1.03 x the forest) in about 2.5 min. With random
binning in half the steps 0.33; chip models stayed at 0.09-0.17 (150 steps; 0.46 OA). Today's kept model (pixel
heads with CARL) reaches mIoU 0.711 in 200 steps (94 s), the step count the test runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from carl_geo.datasets.vector_labels import IGNORE_INDEX, rasterize_labels, read_label_vector
from carl_geo.inference import predict_raster
from carl_geo.polygon_training import train_from_polygons
from carl_geo.polygon_training.metrics import confusion_matrix, mean_iou, overall_accuracy
from carl_geo.sample_data.synthetic import hyperspectral_fields

SCENE = {"size": 72, "n_bands": 160, "n_classes": 6, "block": 24, "seed": 3}
#: A bounded step count (no time budget: the same on every machine). 800 steps took 485 s of the suite's 15-minute
#: budget in CI; 200 steps (94 s) kept the map at mIoU 0.711 against the 0.442 the test asks for (0.9 x the forest).
STEPS = 200


def _scores(pred: np.ndarray, ref: np.ndarray, k: int) -> tuple[float, float]:
    ok = ref >= 0
    cm = confusion_matrix(ref[ok], pred[ok], k)
    return overall_accuracy(cm), float(np.nan_to_num(mean_iou(cm)))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    sc = hyperspectral_fields(tmp_path_factory.mktemp("hsi"), **SCENE)
    with rasterio.open(sc.image) as src:
        img = src.read().astype(np.float32)
        shape, transform, crs = src.shape, src.transform, src.crs
    with rasterio.open(sc.test_reference) as src:
        ref = src.read(1).astype(np.int64) - 1
    train = rasterize_labels(read_label_vector(sc.polygons, sc.label_field), sc.label_field, shape=shape,
                             transform=transform, crs=crs, class_names=list(sc.class_names)).mask
    return sc, img, ref, train


@pytest.fixture(scope="module")
def forest(scene):
    from sklearn.ensemble import RandomForestClassifier

    sc, img, ref, train = scene
    x = img.reshape(img.shape[0], -1).T
    t = train.ravel() != IGNORE_INDEX
    rf = RandomForestClassifier(100, n_jobs=2, random_state=0).fit(x[t], train.ravel()[t])
    return _scores(rf.predict(x).reshape(ref.shape), ref, len(sc.class_names))


@pytest.fixture(scope="module")
def carl(scene, tmp_path_factory):
    sc, _, ref, _ = scene
    out = tmp_path_factory.mktemp("carl")
    lines: list[str] = []
    res = train_from_polygons(sc.image, sc.polygons, sc.label_field, out / "m.pt", max_steps=STEPS, device="cpu",
                              log=lines.append)
    predict_raster(res.bundle, sc.image, out / "map.tif", device="cpu")
    return res, lines, out / "map.tif"


@pytest.mark.slow  # about 1.5 minutes on the 2-core machine
def test_default_recipe_runs_a_many_band_scene(scene, carl):
    sc, _, ref, _ = scene
    res, lines, map_path = carl
    assert any("160 bands: neighbouring bands are averaged into 12-24 broader bands" in s for s in lines)
    carl = res.bundle.model.carl  # the CARL part of the kept pixel classifier
    assert carl.pixelwise and res.bundle.meta["training"]["recipe"]["mode"] == "pixels"
    assert carl.max_bands == 24 and res.report["steps"] <= STEPS
    assert res.report["kept"] in {c["name"] for c in res.report["candidates"]}
    assert res.report["averaged_steps"] and res.report["averaged_steps"][-1] == res.report["steps"]
    with rasterio.open(sc.image) as src, rasterio.open(map_path) as out:
        assert out.crs == src.crs and out.transform == src.transform and out.shape == src.shape
        pred = out.read(1).astype(np.int64)
    oa, _ = _scores(pred, ref, len(sc.class_names))
    assert oa > 1 / len(sc.class_names) + 0.15, oa  # well above chance (6 classes)


@pytest.mark.slow
def test_default_recipe_reaches_the_forest_on_a_many_band_scene(scene, forest, carl):
    sc, _, ref, _ = scene
    with rasterio.open(carl[2]) as out:
        pred = out.read(1).astype(np.int64)
    _, miou = _scores(pred, ref, len(sc.class_names))
    assert miou >= 0.9 * forest[1], (miou, forest[1])
