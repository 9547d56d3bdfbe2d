""""CARL train from polygons" on the shipped North Carolina Landsat 7 scene: model file,
classified raster loaded with the model's classes, a rendered map in outputs/qgis_render.png."""

from __future__ import annotations

import shutil

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import (  # noqa: E402
    CancelAfterFirstStep,
    LogFeedback,
    read_png_rgb,
    render_layer,
    save_output_copy,
    share_of_colors,
)

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def nc_scene() -> Any:
    sample_data = pytest.importorskip("carl_geo.sample_data")
    try:
        return sample_data.nc_landsat7()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def trained(carl_provider: Any, nc_scene: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the algorithm once (as the toolbox does, loading results into the project); the training
    polygons come from a memory layer (not a file) so the plugin's export path is exercised."""
    import processing
    from qgis.core import QgsFeatureRequest, QgsProject, QgsVectorLayer

    # a copy: OGR opens GeoPackages for update and would touch the shipped file
    copy = Path(shutil.copy(nc_scene.polygons, tmp_path_factory.mktemp("polygons")))
    polygons = QgsVectorLayer(str(copy), "training polygons", "ogr")
    assert polygons.isValid()
    memory = polygons.materialize(QgsFeatureRequest())
    assert memory.providerType() == "memory" and memory.featureCount() == polygons.featureCount()
    out_dir = tmp_path_factory.mktemp("train")
    params = {"INPUT": str(nc_scene.image), "POLYGONS": memory, "FIELD": nc_scene.label_field,
              "SENSOR": nc_scene.sensor, "MAX_STEPS": 16, "CHIP_SIZE": 32, "TRAIN_BATCH_SIZE": 8, "DEVICE": "cpu",
              "TILE_SIZE": 128, "OVERLAP": 16, "OUTPUT_MODEL": str(out_dir / "nc_model.pt"),
              "OUTPUT": str(out_dir / "nc_classes.tif")}
    feedback = LogFeedback.make()
    result = processing.runAndLoadResults("carl:trainfrompolygons", params, feedback=feedback)
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values()
              if Path(lyr.source()) == out_dir / "nc_classes.tif"]
    return {"result": result, "layers": layers, "out_dir": out_dir, "polygons": polygons, "log": feedback.lines}


def test_train_log_shows_the_candidates_and_the_kept_model(trained: dict[str, Any]) -> None:
    import carl_geo

    log = trained["log"]
    report = carl_geo.load_bundle(trained["result"]["OUTPUT_MODEL"]).meta["report"]
    header = next(i for i, line in enumerate(log) if line.split()[:3] == ["candidate", "features", "heads"])
    rows = {line.split()[0]: line for line in log[header + 1:header + 1 + len(report["candidates"])]}
    assert set(rows) == {"rf", "rf_context", "carl", "carl_forest", "carl_mlp", "carl_ensemble"}
    for cand in report["candidates"]:  # the same held-out scores as the model file's evidence table
        assert f"{cand['mean_iou']:6.3f}" in rows[cand["name"]]
    assert rows[report["kept"]].endswith("<- kept")
    assert any(line.startswith(f"kept: {report['kept']}") for line in log)
    assert any(line.startswith(f"Model saved to {trained['result']['OUTPUT_MODEL']}: {report['kept']}") for line in log)


def test_train_log_names_the_precision_the_map_ran_in(trained: dict[str, Any]) -> None:
    """The default precision "auto" is resolved in the worker (bf16 on a CPU with AMX, else fp32) and the log says
    which one made the map."""
    import carl_geo
    import torch
    from carl_geo.inference.runner import resolve_precision

    want = resolve_precision("auto", torch.device("cpu"), carl_geo.load_bundle(trained["result"]["OUTPUT_MODEL"]).model)
    out = trained["out_dir"] / "nc_classes.tif"
    lines = [line for line in trained["log"] if line.startswith(f"Wrote the class map {out} in ")]
    assert len(lines) == 1 and lines[0].endswith(f" s ({want} on cpu)"), trained["log"][-5:]


def test_train_writes_model_with_polygon_classes(trained: dict[str, Any], nc_scene: Any) -> None:
    import carl_geo

    model_path = Path(trained["result"]["OUTPUT_MODEL"])
    assert model_path == trained["out_dir"] / "nc_model.pt" and model_path.is_file()
    bundle = carl_geo.load_bundle(model_path)
    assert bundle.task == "segmentation"
    labels = {f[nc_scene.label_field] for f in trained["polygons"].getFeatures()}
    assert set(bundle.class_names) == labels
    assert bundle.wavelengths == pytest.approx(list(nc_scene.wavelengths))
    assert 0.0 <= trained["result"]["OVERALL_ACCURACY"] <= 1.0
    assert 0.0 <= trained["result"]["MEAN_IOU"] <= 1.0


def test_train_classified_layer(trained: dict[str, Any], nc_scene: Any) -> None:
    import carl_geo
    import rasterio
    from qgis.core import QgsProject, QgsRasterLayer

    out = trained["out_dir"] / "nc_classes.tif"
    bundle = carl_geo.load_bundle(trained["result"]["OUTPUT_MODEL"])
    k = len(bundle.class_names)
    assert len(trained["layers"]) == 1
    layer = trained["layers"][0]
    image = QgsRasterLayer(str(nc_scene.image), "image")
    assert layer.crs() == image.crs() and layer.extent() == image.extent()
    assert (layer.width(), layer.height()) == (image.width(), image.height())
    renderer = layer.renderer()
    assert renderer.type() == "paletted"
    assert [c.label for c in renderer.classes()] == bundle.class_names
    assert [c.color.getRgb()[:3] for c in renderer.classes()] == [tuple(c) for c in bundle.colors]

    with rasterio.open(out) as ds, rasterio.open(nc_scene.image) as src:
        classes = ds.read(1)
        nodata_in = (src.read() == src.nodata).all(0) if src.nodata is not None else np.zeros_like(classes, bool)
        out_nodata = ds.nodata
    valid = classes[~nodata_in]
    assert set(np.unique(valid)) <= set(range(k))
    assert len(np.unique(valid)) >= 2  # a map, not one class everywhere (2 epochs: a rough one)
    if nodata_in.any():
        assert out_nodata is not None and (classes[nodata_in] == out_nodata).all()

    png = render_layer(layer, trained["out_dir"] / "nc_render.png", width=600)
    copy = save_output_copy(png, "qgis_render.png")
    rgb = read_png_rgb(copy)
    assert share_of_colors(rgb, [tuple(c) for c in bundle.colors]) > 0.9
    QgsProject.instance().removeMapLayer(layer.id())


def test_train_one_class_is_clear(carl_provider: Any, nc_scene: Any, tmp_path: Path) -> None:
    """A layer filter leaving only 'water' polygons: a clear error before training, nothing written."""
    import processing
    from qgis.core import QgsProcessingException, QgsVectorLayer

    polygons = QgsVectorLayer(str(shutil.copy(nc_scene.polygons, tmp_path / "polygons.gpkg")), "water only", "ogr")
    assert polygons.setSubsetString("\"label\" = 'water'") and polygons.featureCount() == 4
    params = {"INPUT": str(nc_scene.image), "POLYGONS": polygons, "FIELD": nc_scene.label_field,
              "SENSOR": nc_scene.sensor, "MAX_STEPS": 4, "DEVICE": "cpu", "OUTPUT_MODEL": str(tmp_path / "m.pt"),
              "OUTPUT": str(tmp_path / "c.tif")}
    with pytest.raises(QgsProcessingException, match="(?i)one class|single class|only .*class"):
        processing.run("carl:trainfrompolygons", params)
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "c.tif").exists()


def test_train_cancel_writes_nothing(carl_provider: Any, nc_scene: Any, tmp_path: Path) -> None:
    import processing
    from qgis.core import QgsProcessingException

    params = {"INPUT": str(nc_scene.image), "POLYGONS": str(nc_scene.polygons), "FIELD": nc_scene.label_field,
              "SENSOR": nc_scene.sensor, "MAX_STEPS": 40, "CHIP_SIZE": 32, "DEVICE": "cpu",
              "OUTPUT_MODEL": str(tmp_path / "m.pt"), "OUTPUT": str(tmp_path / "c.tif")}
    feedback = CancelAfterFirstStep.make()
    with pytest.raises(QgsProcessingException, match="cancelled; no model was written"):
        processing.run("carl:trainfrompolygons", params, feedback=feedback)
    assert feedback.reports and feedback.reports[0] < 85
    assert not list(tmp_path.iterdir())


def test_train_mode_and_time_budget_reach_the_recipe(carl_provider: Any, nc_scene: Any, tmp_path: Path) -> None:
    """The advanced "Training mode" and "Training time at most" parameters reach the library: the model file
    records a pixels-mode recipe (patch 1, pixelwise head) with the time budget, and the map is written."""
    import processing
    import rasterio

    from carl_geo.models.bundle import load_bundle

    params = {"INPUT": str(nc_scene.image), "POLYGONS": str(nc_scene.polygons), "FIELD": nc_scene.label_field,
              "SENSOR": nc_scene.sensor, "MAX_STEPS": 3, "MODE": "pixels", "MAX_MINUTES": 0.5, "DEVICE": "cpu",
              "OUTPUT_MODEL": str(tmp_path / "m.pt"), "OUTPUT": str(tmp_path / "c.tif")}
    processing.run("carl:trainfrompolygons", params)
    recipe = load_bundle(tmp_path / "m.pt").meta["training"]["recipe"]
    assert recipe["mode"] == "pixels" and recipe["patch_size"] == 1 and recipe["max_minutes"] == 0.5
    with rasterio.open(tmp_path / "c.tif") as src, rasterio.open(nc_scene.image) as ref:
        assert src.crs == ref.crs and src.shape == ref.shape
