"""Every CARL Processing algorithm refuses to write over a file it reads (issue #20, item 3): the
input raster (also through a symlink, or a file a VRT input reads), the model / weights file, the
polygon layer's file; and a class map keeps the model's own class codes in its renderer (item 9)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import CLASS_COLORS, CLASS_NAMES, RGBN  # noqa: E402

pytestmark = pytest.mark.qgis


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def inputs(scene_tif: Path, seg_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import rasterio.shutil

    from carl_geo.sample_data import nc_landsat7, write_crop

    folder = tmp_path_factory.mktemp("protect")
    scene = Path(shutil.copy(scene_tif, folder / "scene.tif"))
    link = folder / "link.tif"
    link.symlink_to(scene)
    vrt = folder / "scene.vrt"
    rasterio.shutil.copy(scene, vrt, driver="VRT")
    crop = write_crop(nc_landsat7(), folder / "nc", 112, 128, 64)
    return {"scene": scene, "link": link, "vrt": vrt, "model": Path(shutil.copy(seg_model_path, folder / "m.pt")),
            "raster": crop.image, "polygons": crop.polygons, "gpkg": _gpkg_raster(scene, folder / "scene.gpkg")}


def _gpkg_raster(src_path: Path, dst: Path) -> Path:
    """The scene as a GeoPackage raster (4 bands of bytes, what GDAL's GPKG driver stores): a vector sink named
    like it would replace the whole file (QGIS writes a new GeoPackage), the worst clash of class polygons."""
    import numpy as np
    import rasterio

    with rasterio.open(src_path) as src:
        data, profile = src.read().astype(np.float64), src.profile
    lo, hi = data.min(axis=(1, 2), keepdims=True), data.max(axis=(1, 2), keepdims=True)
    scaled = np.round(255 * (data - lo) / np.maximum(hi - lo, 1e-9)).astype(np.uint8)
    with rasterio.open(dst, "w", driver="GPKG", width=profile["width"], height=profile["height"], count=len(scaled),
                       dtype="uint8", crs=profile["crs"], transform=profile["transform"]) as out:
        out.write(scaled)
    with rasterio.open(dst) as check:
        assert check.count == 4 and check.driver == "GPKG"
    return dst


def _common(f: dict[str, Path], **extra: Any) -> dict[str, Any]:
    return {"SENSOR": RGBN, "TILE_SIZE": 64, "OVERLAP": 16, "BATCH_SIZE": 2, "DEVICE": "cpu", **extra}


#: algorithm id -> (parameters of a run that would destroy one of its inputs, that input)
CASES: dict[str, Callable[[dict[str, Path]], list[tuple[dict[str, Any], Path]]]] = {
    "carl:segmentraster": lambda f: [
        (_common(f, INPUT=str(f["link"]), MODEL=str(f["model"]), OUTPUT=str(f["scene"])), f["scene"]),
        (_common(f, INPUT=str(f["scene"]), MODEL=str(f["model"]), OUTPUT=str(f["link"])), f["scene"]),
        (_common(f, INPUT=str(f["scene"]), MODEL=str(f["model"]), OUTPUT=str(f["model"])), f["model"]),
        # the class polygons are written after the class map: refused before it, so no class map appears either
        (_common(f, INPUT=str(f["scene"]), MODEL=str(f["model"]), OUTPUT=str(f["scene"].with_name("seg.tif")),
                 OUTPUT_POLYGONS=str(f["scene"])), f["scene"]),
        (_common(f, INPUT=str(f["gpkg"]), MODEL=str(f["model"]), OUTPUT=str(f["scene"].with_name("seg2.tif")),
                 OUTPUT_POLYGONS=str(f["gpkg"])), f["gpkg"]),
    ],
    "carl:extractfeatures": lambda f: [
        (_common(f, INPUT=str(f["vrt"]), MODEL=str(f["model"]), OUTPUT=str(f["scene"])), f["scene"]),
    ],
    "carl:trainfrompolygons": lambda f: [
        ({"INPUT": str(f["raster"]), "POLYGONS": str(f["polygons"]), "FIELD": "label", "SENSOR": "landsat7_etm",
          "MAX_STEPS": 4, "DEVICE": "cpu", "OUTPUT_MODEL": str(f["raster"]), "OUTPUT": str(f["raster"].with_name("c.tif"))},
         f["raster"]),
        ({"INPUT": str(f["raster"]), "POLYGONS": str(f["polygons"]), "FIELD": "label", "SENSOR": "landsat7_etm",
          "MAX_STEPS": 4, "DEVICE": "cpu", "OUTPUT_MODEL": str(f["polygons"]),
          "OUTPUT": str(f["raster"].with_name("c.tif"))}, f["polygons"]),
        ({"INPUT": str(f["raster"]), "POLYGONS": str(f["polygons"]), "FIELD": "label", "SENSOR": "landsat7_etm",
          "MAX_STEPS": 4, "DEVICE": "cpu", "WEIGHTS": str(f["model"]), "OUTPUT_MODEL": str(f["model"]),
          "OUTPUT": str(f["raster"].with_name("c.tif"))}, f["model"]),
        # the class map is written after training: refused before it, so no model file appears either
        ({"INPUT": str(f["raster"]), "POLYGONS": str(f["polygons"]), "FIELD": "label", "SENSOR": "landsat7_etm",
          "MAX_STEPS": 4, "DEVICE": "cpu", "OUTPUT_MODEL": str(f["raster"].with_name("new_model.pt")),
          "OUTPUT": str(f["polygons"])}, f["polygons"]),
    ],
}


#: Algorithms that write no file a user chose: the installer writes into the plugin's private folder, the
#: weights download into carl_geo's cache (a user file named by CARL_GEO_WEIGHTS is never replaced: tests/test_entry_points_protect_inputs.py).
NO_USER_OUTPUT = {"carl:installdependencies", "carl:downloadweights"}


def test_every_algorithm_has_a_case(carl_provider: Any) -> None:
    """A new algorithm that writes files must get a case here (or a reason in NO_USER_OUTPUT)."""
    algs = {f"carl:{a.name()}": a for a in carl_provider.algorithms()}
    assert set(algs) == set(CASES) | NO_USER_OUTPUT
    from qgis.core import QgsProcessingParameterFileDestination, QgsProcessingParameterRasterDestination

    for alg_id in NO_USER_OUTPUT:
        dests = [p.name() for p in algs[alg_id].parameterDefinitions()
                 if isinstance(p, (QgsProcessingParameterFileDestination, QgsProcessingParameterRasterDestination))]
        assert dests == [], (alg_id, dests)


@pytest.mark.parametrize("alg_id", sorted(CASES))
def test_algorithm_refuses_to_write_over_its_inputs(alg_id: str, carl_provider: Any, inputs: dict[str, Path]) -> None:
    import processing
    from qgis.core import QgsProcessingException

    for params, protected in CASES[alg_id](inputs):
        before = md5(protected)
        with pytest.raises(QgsProcessingException, match="would destroy it"):
            processing.run(alg_id, params)
        assert md5(protected) == before, params
        assert Path(protected).exists()
        written = [params[k] for k in ("OUTPUT", "OUTPUT_MODEL", "OUTPUT_POLYGONS")
                   if k in params and Path(params[k]).resolve() != Path(protected).resolve()]
        assert not [p for p in written if Path(p).exists()], (params, "nothing is written on a refused run")


def test_class_map_keeps_the_model_codes(carl_provider: Any, scene_tif: Path, tmp_path: Path) -> None:
    import processing
    import torch
    from qgis.core import QgsProject

    import carl_geo

    torch.manual_seed(0)
    model = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), len(CLASS_NAMES)).eval()
    sensor = carl_geo.get_sensor(RGBN)
    path = carl_geo.save_bundle(carl_geo.make_bundle(model, class_names=CLASS_NAMES, colors=CLASS_COLORS,
                                                     class_values=[2, 5, 9], wavelengths=sensor.wavelengths,
                                                     band_names=sensor.band_names, sensor=RGBN), tmp_path / "codes.pt")
    out = tmp_path / "codes.tif"
    processing.runAndLoadResults("carl:segmentraster", {"INPUT": str(scene_tif), "MODEL": str(path), "SENSOR": "auto",
                                                         "TILE_SIZE": 64, "OVERLAP": 16, "DEVICE": "cpu",
                                                         "OUTPUT": str(out)})
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if Path(lyr.source()) == out]
    assert len(layers) == 1
    classes = layers[0].renderer().classes()
    assert [c.value for c in classes] == [2, 5, 9] and [c.label for c in classes] == CLASS_NAMES
    import numpy as np
    import rasterio

    with rasterio.open(out) as ds:
        assert set(np.unique(ds.read(1))) <= {2, 5, 9}
    QgsProject.instance().removeMapLayer(layers[0].id())
