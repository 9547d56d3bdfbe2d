"""The published CARL-SSL weights inside QGIS: "Download CARL-SSL weights" (algorithm and dialog:
progress, cancel, resume, verification) and the "Use the published CARL-SSL backbone" choice of
"CARL extract features" and "CARL train from polygons".

Everything is served by a loopback HTTP server (no internet): a small checkpoint in the published
layout (tiny config, random weights) replaces the 1.33 GB file, with the tiny layout to verify
against; the code paths are the production ones.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import RGBN, CancelAfterFirstStep  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the loopback server
from weights_server import ServedFile, serve, tiny_ssl_checkpoint  # noqa: E402

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Any]:
    from carl_geo.weights import CheckpointLayout
    from carl_geo.weights.layout import load_state_dict

    path, _ = tiny_ssl_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_ssl.ckpt")
    return path.read_bytes(), CheckpointLayout.from_state_dict(load_state_dict(path), "tiny CARL-SSL layout")


@pytest.fixture
def published(tiny_ckpt: tuple[bytes, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """The CARL-SSL entry pointed at a loopback server; an empty cache; downloads allowed."""
    from carl_geo.weights import CARL_SSL, PUBLISHED

    data, layout = tiny_ckpt
    served = ServedFile(data, chunk=64 * 1024)
    monkeypatch.setenv("CARL_GEO_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CARL_GEO_WEIGHTS", raising=False)
    monkeypatch.delenv("CARL_GEO_OFFLINE", raising=False)
    # the published entry is patched in this process: the plugin runs its jobs here too (CARL_QGIS_IN_PROCESS)
    monkeypatch.setenv("CARL_QGIS_IN_PROCESS", "1")
    with serve(served) as url:
        monkeypatch.setitem(PUBLISHED, "carl_ssl", CARL_SSL.with_(url=url, layout=lambda: layout, config="tiny",
                                                                   size_hint="6 MB"))
        yield {"served": served, "url": url, "data": data, "path": tmp_path / "cache" / "ssl_checkpoint_carl.ckpt"}


def test_download_algorithm_fetches_verifies_and_reuses(carl_provider: Any, published: dict) -> None:
    import processing
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.values: list[float] = []

        def setProgress(self, progress: float) -> None:  # noqa: N802
            super().setProgress(progress)
            self.values.append(progress)

    feedback = Feedback()
    result = processing.run("carl:downloadweights", {}, feedback=feedback)
    assert Path(result["PATH"]) == published["path"] and published["path"].read_bytes() == published["data"]
    assert feedback.values[-1] == pytest.approx(100.0) and len(feedback.values) > 5
    processing.run("carl:downloadweights", {})  # present and verified: no second transfer
    assert published["served"].requests == [("GET", None)]


def test_download_algorithm_cancel_leaves_no_partial_file(carl_provider: Any, published: dict) -> None:
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="cancelled; no partial file was kept"):
        processing.run("carl:downloadweights", {}, feedback=CancelAfterFirstStep.make())
    cache = published["path"].parent
    assert not cache.exists() or list(cache.iterdir()) == []


def test_offline_refusal_names_url_and_path(carl_provider: Any, published: dict,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("CARL_GEO_OFFLINE", "1")
    with pytest.raises(QgsProcessingException) as info:
        processing.run("carl:downloadweights", {})
    assert published["url"] in str(info.value) and str(published["path"]) in str(info.value)
    assert published["served"].requests == []


def test_extract_features_with_the_published_backbone(carl_provider: Any, published: dict, scene_tif: Path,
                                                      tmp_path: Path) -> None:
    import processing
    import rasterio
    from carl_geo import load_bundle
    from carl_geo.inference import predict_raster
    from qgis.core import QgsProcessingException

    out, ref = tmp_path / "features.tif", tmp_path / "reference.tif"
    processing.run("carl:extractfeatures", {"INPUT": str(scene_tif), "PUBLISHED_BACKBONE": True, "SENSOR": RGBN,
                                            "TILE_SIZE": 64, "OVERLAP": 16, "DEVICE": "cpu", "OUTPUT": str(out)})
    assert published["path"].is_file()  # downloaded on first use
    predict_raster(load_bundle(published["path"]), scene_tif, ref, output="embeddings", sensor=RGBN,
                   tile_size=64, overlap=16, device="cpu")
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        assert a.count == 128
        np.testing.assert_allclose(a.read(), b.read(), rtol=0, atol=1e-6)
    with pytest.raises(QgsProcessingException, match="Choose a CARL model file, or tick"):
        processing.run("carl:extractfeatures", {"INPUT": str(scene_tif), "OUTPUT": str(tmp_path / "x.tif")})


@pytest.mark.slow
def test_train_with_the_published_backbone(carl_provider: Any, published: dict, tmp_path: Path) -> None:
    import carl_geo
    import processing
    import torch
    from carl_geo.sample_data import nc_landsat7

    scene = nc_landsat7()
    polygons = Path(shutil.copy(scene.polygons, tmp_path / "polygons.gpkg"))
    result = processing.run("carl:trainfrompolygons", {
        "INPUT": str(scene.image), "POLYGONS": str(polygons), "FIELD": scene.label_field, "SENSOR": scene.sensor,
        "PUBLISHED_BACKBONE": True, "MAX_STEPS": 4, "CHIP_SIZE": 32, "TRAIN_BATCH_SIZE": 8, "DEVICE": "cpu",
        "TILE_SIZE": 128, "OVERLAP": 16, "OUTPUT_MODEL": str(tmp_path / "model.pt"),
        "OUTPUT": str(tmp_path / "classes.tif")})
    model = carl_geo.load_bundle(result["OUTPUT_MODEL"])
    # the backbone is the downloaded one, unchanged (frozen: only the head was trained)
    student = carl_geo.load_bundle(published["path"]).model.backbone.state_dict()
    for key, value in student.items():
        torch.testing.assert_close(model.model.backbone.state_dict()[key], value, rtol=0, atol=0)
    assert Path(result["OUTPUT"]).is_file()


def test_weights_dialog_progress_cancel_then_download(installed_plugin: Any, published: dict) -> None:
    import carl_geo.weights as weights
    from carl_qgis.gui.weights_dialog import WeightsDialog
    from qgis.PyQt.QtCore import QCoreApplication

    published["served"].delay = 0.05  # ~1.3 MB/s: slow enough to watch
    dialog = WeightsDialog(weights=weights)
    assert dialog.url_label.text() == published["url"] and "not downloaded yet" in dialog.state_label.text()
    dialog.start()
    deadline = time.time() + 20
    while dialog.progress.value() < 100 and time.time() < deadline:  # 10 % of 1000
        QCoreApplication.processEvents()
        time.sleep(0.02)
    assert 100 <= dialog.progress.value() < 1000
    assert dialog.status.text().startswith("Downloading: ") and " of 5.8 MB" in dialog.status.text()
    dialog.cancel()
    assert dialog.job.wait(20)
    assert getattr(dialog.error, "cancelled", False)
    assert dialog.status.text() == "Cancelled; the partial file was deleted."
    cache = published["path"].parent
    assert not cache.exists() or list(cache.iterdir()) == []

    published["served"].delay = 0.0
    dialog.start()
    assert dialog.job.wait(60) and dialog.error is None
    assert dialog.progress.value() == 1000 and dialog.status.text().startswith("Ready and verified")
    assert published["path"].read_bytes() == published["data"] and "present" in dialog.state_label.text()
    dialog.close()


def test_weights_dialog_without_carl_geo_offers_the_installer(installed_plugin: Any) -> None:
    from carl_qgis.gui.weights_dialog import WeightsDialog
    from qgis.PyQt.QtWidgets import QPushButton

    opened = []
    dialog = WeightsDialog(missing="No module named 'torch'", open_installer=lambda: opened.append(True))
    assert not dialog.download_button.isEnabled() and "Install the CARL dependencies first" in dialog.info.text()
    button = [b for b in dialog.findChildren(QPushButton) if b.text() == "Install CARL dependencies…"][0]
    button.click()
    assert opened == [True]
