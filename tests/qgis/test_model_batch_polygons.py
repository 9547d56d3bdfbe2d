""""CARL segment raster" in a Processing model (built as the Model Designer builds one, saved to a
.model3 file and read back, run headless) and in batch mode (the steps of QGIS's batch dialog), and
its optional vector output: one dissolved polygon per class with its area, styled on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import CLASS_COLORS, CLASS_NAMES, RGBN, synthetic_scene, write_raster  # noqa: E402

pytestmark = pytest.mark.qgis


def reference_classes(scene: Path, model: Path, tmp_path: Path) -> np.ndarray:
    import rasterio
    from carl_geo import load_bundle
    from carl_geo.inference import predict_raster

    ref = tmp_path / "reference.tif"
    predict_raster(load_bundle(model), scene, ref, sensor=RGBN, tile_size=64, overlap=16, device="cpu")
    with rasterio.open(ref) as ds:
        return ds.read(1)


def one_step_model() -> Any:
    """A model with one child, "CARL segment raster": inputs scene + model file, outputs classes and polygons."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("CARL one step", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    model.addModelParameter(QgsProcessingParameterFile("model_file", "Model file"),
                            QgsProcessingModelParameter("model_file"))
    child = QgsProcessingModelChildAlgorithm("carl:segmentraster")
    child.setChildId("segment")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scene")])
    child.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromModelParameter("model_file")])
    for name, value in (("SENSOR", RGBN), ("TILE_SIZE", 64), ("OVERLAP", 16), ("BATCH_SIZE", 2), ("DEVICE", "cpu"),
                        ("OUTPUT_TYPE", "classes")):
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    # the Model Designer's child dialog fills every other parameter with its default value
    from qgis.core import QgsApplication, QgsProcessingDestinationParameter

    alg = QgsApplication.processingRegistry().algorithmById("carl:segmentraster")
    for param in alg.parameterDefinitions():
        if param.name() not in child.parameterSources() and not isinstance(param, QgsProcessingDestinationParameter):
            child.addParameterSources(param.name(),
                                      [QgsProcessingModelChildParameterSource.fromStaticValue(param.defaultValue())])
    outputs = {}
    for name, child_output in (("classes", "OUTPUT"), ("polygons", "OUTPUT_POLYGONS")):
        out = QgsProcessingModelOutput(name, name)
        out.setChildId("segment")
        out.setChildOutputName(child_output)
        outputs[name] = out
    child.setModelOutputs(outputs)
    model.addChildAlgorithm(child)
    model.updateDestinationParameters()
    return model


def test_model_designer_one_step_model_runs_headless(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                                     tmp_path: Path) -> None:
    import processing
    import rasterio
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProcessingModelAlgorithm, QgsVectorLayer

    built = one_step_model()
    path = tmp_path / "carl_one_step.model3"
    assert built.toFile(str(path))
    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path))  # what the Model Designer saves is what runs
    ok, errors = model.validate()
    assert ok, errors
    assert model.childAlgorithm("segment").algorithm().id() == "carl:segmentraster"
    assert {"segment:classes", "segment:polygons"} <= {p.name() for p in model.destinationParameterDefinitions()}

    out, polygons = tmp_path / "model_classes.tif", tmp_path / "model_polygons.gpkg"
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    result = processing.run(model, {"scene": str(scene_tif), "model_file": str(seg_model_path),
                                    "segment:classes": str(out), "segment:polygons": str(polygons)},
                            context=context, feedback=feedback)
    assert Path(result["segment:classes"]) == out
    with rasterio.open(out) as ds:
        classes = ds.read(1)
        assert ds.crs.to_epsg() == 32633
    np.testing.assert_array_equal(classes, reference_classes(scene_tif, seg_model_path, tmp_path))
    layer = QgsVectorLayer(str(polygons), "polygons", "ogr")
    assert layer.isValid() and layer.featureCount() == len(np.unique(classes))


def test_batch_mode_runs_rows_like_the_batch_dialog(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                                    tmp_path: Path) -> None:
    """QGIS's batch dialog: one algorithm instance, per row preprocessParameters, a fresh context and
    ``alg.run``, then the results handler. Two rows with different inputs give each row's own map."""
    import rasterio
    from processing.gui.BatchAlgorithmDialog import BatchFeedback
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    from qgis.core import QgsApplication, QgsProcessingFeedback

    second = write_raster(tmp_path / "second.tif", synthetic_scene(64, 72, seed=5)[:, :, ::-1].copy())
    alg = QgsApplication.processingRegistry().createAlgorithmById("carl:segmentraster")
    feedback = QgsProcessingFeedback()
    rows = [{"INPUT": str(scene), "MODEL": str(seg_model_path), "SENSOR": RGBN, "TILE_SIZE": 64, "OVERLAP": 16,
             "DEVICE": "cpu", "OUTPUT": str(tmp_path / f"batch_{i}.tif")}
            for i, scene in enumerate((scene_tif, second))]
    multi = BatchFeedback(len(rows), feedback)
    for step, params in enumerate(rows):
        multi.setCurrentStep(step)
        params = alg.preprocessParameters(params)
        context = dataobjects.createContext(feedback)
        results, ok = alg.run(params, context, multi)
        assert ok, multi.errors
        assert handleAlgorithmResults(alg, context, multi, False, params)
    for i, scene in enumerate((scene_tif, second)):
        with rasterio.open(tmp_path / f"batch_{i}.tif") as ds:
            np.testing.assert_array_equal(ds.read(1), reference_classes(scene, seg_model_path, tmp_path))


def test_class_polygons_dissolved_with_area(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                            tmp_path: Path) -> None:
    import processing
    import rasterio
    from qgis.core import QgsVectorLayer

    out, polygons = tmp_path / "classes.tif", tmp_path / "polygons.gpkg"
    result = processing.run("carl:segmentraster", {
        "INPUT": str(scene_tif), "MODEL": str(seg_model_path), "SENSOR": RGBN, "TILE_SIZE": 64, "OVERLAP": 16,
        "DEVICE": "cpu", "OUTPUT": str(out), "OUTPUT_POLYGONS": str(polygons)})
    assert Path(result["OUTPUT_POLYGONS"]) == polygons
    with rasterio.open(out) as ds:
        classes = ds.read(1)
        pixel_area = abs(ds.transform.a * ds.transform.e)
    values, counts = np.unique(classes, return_counts=True)
    layer = QgsVectorLayer(str(polygons), "polygons", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32633"
    assert layer.fields().names()[-4:] == ["class_id", "class_name", "area_m2", "pixels"]
    features = sorted(layer.getFeatures(), key=lambda f: f["class_id"])
    assert [f["class_id"] for f in features] == values.tolist()  # one feature per class (dissolved)
    for feature, count in zip(features, counts):
        assert feature["class_name"] == CLASS_NAMES[feature["class_id"]]
        assert feature["pixels"] == count
        assert feature["area_m2"] == pytest.approx(count * pixel_area, rel=1e-9)  # planar area in a projected CRS
        assert feature.geometry().area() == pytest.approx(count * pixel_area, rel=1e-9)
        assert feature.geometry().isGeosValid()


def test_class_polygons_load_with_the_class_colours(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                                    tmp_path: Path) -> None:
    import processing
    from qgis.core import QgsProcessingException, QgsProject, QgsVectorLayer

    result = processing.runAndLoadResults("carl:segmentraster", {
        "INPUT": str(scene_tif), "MODEL": str(seg_model_path), "SENSOR": RGBN, "TILE_SIZE": 64, "OVERLAP": 16,
        "DEVICE": "cpu", "OUTPUT": str(tmp_path / "loaded.tif"), "OUTPUT_POLYGONS": "TEMPORARY_OUTPUT"})
    layer = QgsProject.instance().mapLayer(result["OUTPUT_POLYGONS"])
    assert isinstance(layer, QgsVectorLayer) and layer.featureCount() >= 1
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_id"
    legend = {c.value(): (c.label(), c.symbol().color().getRgb()[:3]) for c in renderer.categories()}
    assert legend == {i: (name, tuple(color)) for i, (name, color) in enumerate(zip(CLASS_NAMES, CLASS_COLORS))}
    with pytest.raises(QgsProcessingException, match="Class polygons need the output 'classes'"):
        processing.run("carl:segmentraster", {"INPUT": str(scene_tif), "MODEL": str(seg_model_path),
                                              "OUTPUT_TYPE": "probabilities", "OUTPUT": str(tmp_path / "p.tif"),
                                              "OUTPUT_POLYGONS": str(tmp_path / "p.gpkg")})
    assert not (tmp_path / "p.tif").exists() and not (tmp_path / "p.gpkg").exists()
