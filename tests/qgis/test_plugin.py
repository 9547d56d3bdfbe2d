"""The CARL QGIS plugin in a real headless QGIS: installation from the ZIP, "CARL segment raster"
(values, georeferencing, renderer, rendering to PNG, cancel, analyst-readable errors) and
"CARL extract features"."""

from __future__ import annotations

import configparser
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import (  # noqa: E402
    CLASS_COLORS,
    CLASS_NAMES,
    RGBN,
    CancelAfterFirstStep,
    LogFeedback,
    read_png_rgb,
    render_layer,
    save_output_copy,
    share_of_colors,
    synthetic_scene,
    write_raster,
)

pytestmark = pytest.mark.qgis

ALGORITHM_IDS = {"carl:segmentraster", "carl:extractfeatures", "carl:trainfrompolygons", "carl:installdependencies",
                 "carl:downloadweights"}


def run(alg_id: str, params: dict[str, Any], feedback: Any = None) -> dict[str, Any]:
    import processing

    return processing.run(alg_id, params, feedback=feedback)


def seg_params(scene: Path, model: Path, out: Path, **extra: Any) -> dict[str, Any]:
    params = {"INPUT": str(scene), "MODEL": str(model), "SENSOR": "auto", "TILE_SIZE": 64, "OVERLAP": 16,
              "BATCH_SIZE": 2, "DEVICE": "cpu", "OUTPUT_TYPE": "classes", "OUTPUT": str(out)}
    params.update(extra)
    return params


# -- installation -----------------------------------------------------------------------------


def test_zip_layout(plugin_zip: Path) -> None:
    assert plugin_zip.name == "carl_qgis-0.1.0.zip"
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert all(n.startswith("carl_qgis/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    for required in ("__init__.py", "metadata.txt", "icon.svg", "provider.py", "deps.py",
                     "algorithms/segment_raster.py", "algorithms/extract_features.py",
                     "algorithms/train_from_polygons.py"):
        assert f"carl_qgis/{required}" in names
    meta = configparser.ConfigParser()
    meta.read_string(zipfile.ZipFile(plugin_zip).read("carl_qgis/metadata.txt").decode())
    general = meta["general"]
    assert general["name"] == "CARL" and general["version"] == "0.1.0"
    assert general["qgisMinimumVersion"] == "3.22" and general["experimental"] == "True"
    assert general["hasProcessingProvider"] == "yes" and general["supportsQt6"] == "True"
    # the plugin carries carl_geo itself (nothing depends on a PyPI name): a wheel built from this repository
    wheels = [n for n in names if n.startswith("carl_qgis/wheels/")]
    assert wheels == ["carl_qgis/wheels/carl_geo-0.1.0-py3-none-any.whl"]
    import io

    wheel = zipfile.ZipFile(io.BytesIO(zipfile.ZipFile(plugin_zip).read(wheels[0])))
    inside = set(wheel.namelist())
    for required in ("carl_geo/__init__.py", "carl_geo/weights/published_keys.json", "carl_geo/weights/store.py",
                     "carl_geo/sample_data/nc_landsat7/landsat7_2000.tif", "carl_geo-0.1.0.dist-info/METADATA"):
        assert required in inside
    assert not [n for n in inside if "__pycache__" in n or n.startswith(("tests/", "qgis_plugin/"))]
    metadata = wheel.read("carl_geo-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: torch>=2.4" in metadata and "Requires-Python: >=3.11" in metadata


def test_installed_plugin_registers_provider(installed_plugin: Any, qgis_profile: Path) -> None:
    import sys

    import qgis.utils
    from qgis.core import QgsApplication

    module = sys.modules["carl_qgis"]
    assert Path(module.__file__).resolve().is_relative_to(
        (qgis_profile / "python" / "plugins" / "carl_qgis").resolve())
    assert "carl_qgis" in qgis.utils.available_plugins and "carl_qgis" in qgis.utils.active_plugins
    assert qgis.utils.pluginMetadata("carl_qgis", "name") == "CARL"
    provider = QgsApplication.processingRegistry().providerById("carl")
    assert provider is not None and provider.name() == "CARL"
    assert {a.id() for a in provider.algorithms()} == ALGORITHM_IDS
    names = {a.id(): a.displayName() for a in provider.algorithms()}
    assert names["carl:segmentraster"] == "CARL segment raster"
    assert names["carl:extractfeatures"] == "CARL extract features"
    assert names["carl:trainfrompolygons"] == "CARL train from polygons"
    assert not provider.icon().isNull()
    ok, message = QgsApplication.processingRegistry().algorithmById("carl:segmentraster").canExecute()
    assert ok and message == ""


def test_sensor_parameter_lists_carl_geo_presets(carl_provider: Any) -> None:
    import carl_geo
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().createAlgorithmById("carl:segmentraster")
    options = alg.parameterDefinition("SENSOR").options()
    assert options[0] == "auto" and set(options[1:]) == set(carl_geo.SENSORS)
    from qgis.core import QgsProcessingParameterDefinition

    assert alg.parameterDefinition("WAVELENGTHS").flags() & QgsProcessingParameterDefinition.Flag.FlagAdvanced
    assert alg.parameterDefinition("DEVICE").options() == ["auto", "cpu", "cuda"]
    assert alg.parameterDefinition("OUTPUT_TYPE").options() == ["classes", "probabilities"]


# -- CARL segment raster ----------------------------------------------------------------------


def test_segment_raster_matches_library(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                        tmp_path: Path) -> None:
    """Output grid = input grid; pixel values = carl_geo.inference.predict_raster with the same settings."""
    import rasterio
    from carl_geo import load_bundle
    from carl_geo.inference import predict_raster
    from qgis.core import QgsRasterLayer

    out = tmp_path / "classes.tif"
    result = run("carl:segmentraster", seg_params(scene_tif, seg_model_path, out))
    assert Path(result["OUTPUT"]) == out and out.is_file()

    layer = QgsRasterLayer(str(out), "classes")
    src = QgsRasterLayer(str(scene_tif), "scene")
    assert layer.isValid() and layer.bandCount() == 1
    assert layer.crs().authid() == "EPSG:32633" == src.crs().authid()
    assert (layer.width(), layer.height()) == (96, 80)
    assert layer.extent() == src.extent()
    assert layer.extent().xMinimum() == pytest.approx(500000) and layer.extent().yMaximum() == pytest.approx(4100000)

    ref = tmp_path / "reference.tif"
    predict_raster(load_bundle(seg_model_path), scene_tif, ref, output="classes", tile_size=64, overlap=16,
                   batch_size=2, device="cpu")
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        got, want = a.read(1), b.read(1)
        assert a.crs == b.crs and a.transform == b.transform
    assert set(np.unique(got)) <= {0, 1, 2}
    np.testing.assert_array_equal(got, want)


def test_segment_raster_probabilities(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                      tmp_path: Path) -> None:
    import rasterio

    out = tmp_path / "probs.tif"
    run("carl:segmentraster", seg_params(scene_tif, seg_model_path, out, OUTPUT_TYPE="probabilities",
                                         SENSOR=RGBN))
    with rasterio.open(out) as ds:
        assert ds.count == len(CLASS_NAMES) and ds.dtypes[0] == "float32"
        probs = ds.read()
    assert np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)


def test_segment_raster_loads_with_paletted_renderer_and_renders(carl_provider: Any, scene_tif: Path,
                                                                 seg_model_path: Path, tmp_path: Path) -> None:
    """processing.runAndLoadResults (what the toolbox does) loads the class map with the model's
    class names and colours; the rendered map shows only those colours."""
    import processing
    from qgis.core import QgsProject

    out = tmp_path / "classes_loaded.tif"
    processing.runAndLoadResults("carl:segmentraster", seg_params(scene_tif, seg_model_path, out))
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if Path(lyr.source()) == out]
    assert len(layers) == 1
    layer = layers[0]
    renderer = layer.renderer()
    assert renderer.type() == "paletted"
    classes = renderer.classes()
    assert [c.value for c in classes] == [0, 1, 2]
    assert [c.label for c in classes] == CLASS_NAMES
    assert [c.color.getRgb()[:3] for c in classes] == CLASS_COLORS

    png = render_layer(layer, tmp_path / "segment_render.png")
    save_output_copy(png, "qgis_render_segment.png")
    rgb = read_png_rgb(png)
    import rasterio

    with rasterio.open(out) as ds:
        values = ds.read(1)
    palette_share = share_of_colors(rgb, CLASS_COLORS)
    assert palette_share > 0.98
    # every class present in the raster is visible in the picture, and no others
    for value, color in enumerate(CLASS_COLORS):
        present = bool((values == value).any())
        assert share_of_colors(rgb, [color]) > 0 if present else share_of_colors(rgb, [color]) == 0
    QgsProject.instance().removeMapLayer(layer.id())


def test_segment_raster_cancel_leaves_no_output(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                                tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    out = tmp_path / "cancelled.tif"
    feedback = CancelAfterFirstStep.make()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run("carl:segmentraster", seg_params(scene_tif, seg_model_path, out, TILE_SIZE=32, OVERLAP=8), feedback)
    assert feedback.isCanceled()
    assert 1 <= len(feedback.reports) and feedback.reports[0] < 100
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_segment_raster_wrong_wavelength_count(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                               tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    out = tmp_path / "never.tif"
    with pytest.raises(QgsProcessingException, match="has 4 bands but 3 wavelengths were given"):
        run("carl:segmentraster", seg_params(scene_tif, seg_model_path, out, WAVELENGTHS="0.665, 0.56, 0.49"))
    with pytest.raises(QgsProcessingException, match="Band wavelengths: wavelengths must be numbers.*e.g. 0.49"):
        run("carl:segmentraster", seg_params(scene_tif, seg_model_path, out, WAVELENGTHS="0.665; 0,56; 0.49; x"))
    assert not out.exists()


def test_wavelengths_nowhere_to_be_found(carl_provider: Any, scene_tif: Path, features_model_path: Path,
                                         tmp_path: Path) -> None:
    """No preset, no list, no file metadata, a model without wavelengths: the library's message plus
    where to fix it in the dialog; nothing written."""
    from qgis.core import QgsProcessingException

    out = tmp_path / "features.tif"
    with pytest.raises(QgsProcessingException) as info:
        run("carl:extractfeatures", {"INPUT": str(scene_tif), "MODEL": str(features_model_path), "SENSOR": "auto",
                                     "DEVICE": "cpu", "OUTPUT": str(out)})
    text = str(info.value)
    assert "4 bands" in text and "no wavelengths" in text and "Advanced Parameters" in text
    assert not out.exists()


def test_segment_raster_explicit_wavelengths_used(carl_provider: Any, scene_tif: Path, seg_model_path: Path,
                                                  tmp_path: Path) -> None:
    """An explicit list reaches the model: the preset's own values give the 'auto' result, other
    wavelengths give a different map."""
    import carl_geo
    import rasterio

    wl = ", ".join(str(w) for w in carl_geo.get_sensor(RGBN).wavelengths)
    same, auto, other = tmp_path / "same.tif", tmp_path / "auto.tif", tmp_path / "other.tif"
    run("carl:segmentraster", seg_params(scene_tif, seg_model_path, same, WAVELENGTHS=wl))
    run("carl:segmentraster", seg_params(scene_tif, seg_model_path, auto))
    run("carl:segmentraster", seg_params(scene_tif, seg_model_path, other, WAVELENGTHS="1.6, 2.2, 0.45, 0.9"))
    read = lambda p: rasterio.open(p).read(1)  # noqa: E731
    np.testing.assert_array_equal(read(same), read(auto))
    assert (read(other) != read(auto)).any()


def test_segment_raster_takes_the_layers_no_data_value(carl_provider: Any, seg_model_path: Path,
                                                      tmp_path: Path) -> None:
    """Fill the file does not declare (0 in every band): the run names it in the dialog's words; the layer's additional
    no data value (Layer Properties > Transparency) is then the input's nodata; a file's own nodata is never dropped."""
    import rasterio
    from qgis.core import QgsProject, QgsRasterLayer, QgsRasterRange

    data = synthetic_scene()
    data[:, :20] = 0  # 25 % fill
    tif = write_raster(tmp_path / "fill.tif", data)
    feedback = LogFeedback.make()
    run("carl:segmentraster", seg_params(tif, seg_model_path, tmp_path / "a.tif"), feedback)
    assert [ln for ln in feedback.lines if "25 % of the sampled pixels are 0 in every band" in ln and
            "additional no data value (Layer Properties > Transparency)" in ln]

    def with_user_nodata(path: Path, out: Path) -> list[str]:
        layer = QgsRasterLayer(str(path), path.stem)
        for band in range(1, layer.bandCount() + 1):
            layer.dataProvider().setUserNoDataValue(band, [QgsRasterRange(0, 0)])
        QgsProject.instance().addMapLayer(layer)
        try:
            fb = LogFeedback.make()
            run("carl:segmentraster", {**seg_params(path, seg_model_path, out), "INPUT": layer.id()}, fb)
            return fb.lines
        finally:
            QgsProject.instance().removeMapLayer(layer.id())

    lines = with_user_nodata(tif, tmp_path / "b.tif")
    assert "Input nodata: 0 (the layer's additional no data value)" in lines
    assert not [ln for ln in lines if "0 in every band" in ln]
    with rasterio.open(tmp_path / "b.tif") as b:
        kept = b.read_masks(1) > 0
    assert not kept[:20].any() and kept[20:].all()
    own = write_raster(tmp_path / "own.tif", synthetic_scene(), nodata=-1.0)
    lines = with_user_nodata(own, tmp_path / "c.tif")
    assert "The layer's additional no data value is not used: the file declares its own nodata, which stays " \
           "(one value is taken)." in lines


def test_segment_raster_rejects_layers_that_are_not_files(carl_provider: Any, seg_model_path: Path,
                                                          tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException, QgsRasterLayer

    xyz = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0",
                         "basemap", "wms")
    assert xyz.isValid()
    with pytest.raises(QgsProcessingException, match="'wms' data provider, not from a file.*GeoTIFF"):
        run("carl:segmentraster", seg_params(xyz, seg_model_path, tmp_path / "x.tif") | {"INPUT": xyz})


def test_segment_raster_rejects_features_model(carl_provider: Any, scene_tif: Path, features_model_path: Path,
                                               tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="CARL extract features"):
        run("carl:segmentraster", seg_params(scene_tif, features_model_path, tmp_path / "x.tif"))


def test_segment_raster_bad_model_file(carl_provider: Any, scene_tif: Path, tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException

    bad = tmp_path / "notes.pt"
    bad.write_text("not a model")
    with pytest.raises(QgsProcessingException, match="notes.pt"):
        run("carl:segmentraster", seg_params(scene_tif, bad, tmp_path / "x.tif"))
    assert not (tmp_path / "x.tif").exists()


# -- CARL extract features --------------------------------------------------------------------


def test_extract_features_band_count_is_d(carl_provider: Any, features_model_path: Path, tmp_path: Path) -> None:
    import carl_geo
    import rasterio
    from qgis.core import QgsRasterLayer

    scene = write_raster(tmp_path / "small.tif", synthetic_scene(40, 48, seed=3))
    out = tmp_path / "features.tif"
    run("carl:extractfeatures", {"INPUT": str(scene), "MODEL": str(features_model_path), "SENSOR": RGBN,
                                 "TILE_SIZE": 64, "OVERLAP": 8, "DEVICE": "cpu", "OUTPUT": str(out)})
    d = carl_geo.load_bundle(features_model_path).num_outputs
    assert d == 128
    layer = QgsRasterLayer(str(out), "features")
    assert layer.isValid() and layer.bandCount() == d and (layer.width(), layer.height()) == (48, 40)
    assert layer.crs().authid() == "EPSG:32633"
    with rasterio.open(out) as ds:
        assert ds.count == d and ds.dtypes[0] == "float32"
        feats = ds.read()
    assert np.isfinite(feats).all() and feats.std() > 0
    # water (left) and forest (middle) pixels get different embeddings
    assert np.linalg.norm(feats[:, 20, 5] - feats[:, 20, 24]) > 1e-3


def test_extract_features_band_subset_matches_library(carl_provider: Any, scene_tif: Path,
                                                      features_model_path: Path, tmp_path: Path) -> None:
    """'Bands to use' + explicit wavelengths reach carl_geo: same result as the library call."""
    import rasterio
    from carl_geo import load_bundle
    from carl_geo.inference import predict_raster

    out, ref = tmp_path / "nir_red.tif", tmp_path / "reference.tif"
    run("carl:extractfeatures", {"INPUT": str(scene_tif), "MODEL": str(features_model_path), "BANDS": "4, 1",
                                 "WAVELENGTHS": "842, 665", "TILE_SIZE": 64, "OVERLAP": 16, "DEVICE": "cpu",
                                 "OUTPUT": str(out)})
    predict_raster(load_bundle(features_model_path), scene_tif, ref, output="embeddings", bands=[4, 1],
                   wavelengths=[0.842, 0.665], tile_size=64, overlap=16, device="cpu")
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        np.testing.assert_allclose(a.read(), b.read(), rtol=0, atol=1e-6)
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="2 bands were selected but 3 wavelengths were given"):
        run("carl:extractfeatures", {"INPUT": str(scene_tif), "MODEL": str(features_model_path), "BANDS": "4,1",
                                     "WAVELENGTHS": "0.8,0.6,0.5", "OUTPUT": str(tmp_path / "x.tif")})
