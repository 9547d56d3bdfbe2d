"""``python -m carl_geo.worker`` (issue #30): the jobs the QGIS plugin runs in a child process, their JSON-line
events, one-line errors, cancel by SIGTERM without a half-written file, and the plugin's runner
(``qgis_plugin/carl_qgis/child.py``, QGIS-free) relaying them and surviving a crashed child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio

from carl_geo.models import CARL, CARLSegmenter, make_bundle, save_bundle, tiny_config
from helpers import ROOT, write_raster

sys.path.insert(0, str(ROOT / "qgis_plugin"))
from carl_qgis import child  # noqa: E402  (QGIS-free module of the plugin)

WL4 = [0.49, 0.56, 0.665, 0.842]


def _run(job: dict, timeout: float = 120) -> tuple[list[dict], subprocess.CompletedProcess]:
    proc = subprocess.run([sys.executable, "-m", "carl_geo.worker"], input=json.dumps(job) + "\n",
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "MPLBACKEND": "Agg"})
    return [json.loads(line) for line in proc.stdout.splitlines()], proc


@pytest.fixture(scope="module")
def model_and_raster(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("worker")
    torch.manual_seed(0)
    model = CARLSegmenter(CARL(tiny_config()), 3).eval()
    path = save_bundle(make_bundle(model, class_names=["a", "b", "c"], wavelengths=WL4), folder / "m.pt")
    raster = write_raster(folder / "in.tif", np.random.default_rng(0).integers(100, 4000, (4, 40, 56)).astype("uint16"))
    return path, raster


def test_predict_job_streams_progress_and_returns_the_models_facts(model_and_raster, tmp_path):
    model, raster = model_and_raster
    events, proc = _run({"job": "predict", "args": {"model": str(model), "src": str(raster),
                                                    "dst": str(tmp_path / "out.tif"), "wavelengths": WL4,
                                                    "tile_size": 32, "overlap": 8}})
    assert proc.returncode == 0, proc.stderr[-2000:]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and "progress" in kinds and set(kinds) <= {"progress", "log", "warning", "result"}
    result = events[-1]
    assert result["class_names"] == ["a", "b", "c"] and result["count"] == 1 and result["task"] == "segmentation"
    with rasterio.open(tmp_path / "out.tif") as out, rasterio.open(raster) as src:
        assert out.crs == src.crs and out.transform == src.transform


def test_errors_are_one_event_line_and_protected_files_are_refused(model_and_raster, tmp_path):
    model, raster = model_and_raster
    events, proc = _run({"job": "predict", "args": {"model": str(tmp_path / "none.pt"), "src": str(raster),
                                                    "dst": str(tmp_path / "o.tif")}})
    assert proc.returncode == 2 and events[-1]["event"] == "error" and "none.pt" in events[-1]["text"]
    assert "\n" not in events[-1]["text"] and "Traceback" not in proc.stderr
    labels = tmp_path / "labels.gpkg"
    labels.write_bytes(b"not really")
    before = labels.read_bytes()
    events, proc = _run({"job": "predict", "args": {"model": str(model), "src": str(raster), "dst": str(labels),
                                                    "wavelengths": WL4, "protect": [["polygon layer file", str(labels)]]}})
    assert proc.returncode == 2 and "polygon layer file" in events[-1]["text"] and labels.read_bytes() == before
    events, _ = _run({"job": "dance", "args": {}})
    assert events == [{"event": "error", "text": "unknown job 'dance'; jobs: train, predict, polygons, weights, check",
                       "status": 2}]


def test_a_gui_caller_gets_its_parameter_labels_and_the_error_kind(model_and_raster, tmp_path):
    """The plugin sends its dialog's labels: errors name them, not Python keywords (issue #29); the error's class
    travels as ``kind`` so the plugin never matches message words."""
    from carl_geo.errors import interface
    from carl_geo.models import CARL, make_bundle, save_bundle, tiny_config

    _, raster = model_and_raster
    labels = {"bands": "Bands to use", "output": "Output"}
    job = {"job": "predict", "interface": {"name": "gui", "labels": labels},
           "args": {"model": str(model_and_raster[0]), "src": str(raster), "dst": str(tmp_path / "o.tif"),
                    "bands": []}}
    events, proc = _run(job)
    assert proc.returncode == 2 and events[-1]["kind"].endswith("Error")
    assert "'Bands to use': 1,2,3" in events[-1]["text"] and "bands=" not in events[-1]["text"], events[-1]
    features = save_bundle(make_bundle(CARL(tiny_config())), tmp_path / "features.pt")
    with pytest.raises(child.WorkerError) as caught:
        child.run_job("predict", {"model": str(features), "src": str(raster), "dst": str(tmp_path / "c.tif"),
                                  "wavelengths": WL4, "output": "classes"}, interface=job["interface"],
                      log_path=tmp_path / "w.log")
    assert caught.value.kind == "ModelTaskError" and "'Output': embeddings" in caught.value.text
    assert interface() == "python"  # this process was not touched
    with pytest.raises(child.WorkerError) as caught:  # in-process runs restore the interface afterwards
        os.environ[child.IN_PROCESS_VARIABLE] = "1"
        try:
            child.run_job("predict", {"model": str(features), "src": str(raster), "dst": str(tmp_path / "d.tif"),
                                      "wavelengths": WL4, "output": "classes"}, interface=job["interface"])
        finally:
            del os.environ[child.IN_PROCESS_VARIABLE]
    assert caught.value.kind == "ModelTaskError" and "'Output': embeddings" in caught.value.text
    assert interface() == "python"


def test_polygons_job_writes_one_multipolygon_per_class(tmp_path):
    import geopandas as gpd

    classes = np.zeros((30, 40), np.uint8)
    classes[:, 20:] = 1
    classes[5:10, 5:10] = 1
    classes[0, 0] = 255
    raster = write_raster(tmp_path / "classes.tif", classes[None], nodata=255)
    events, proc = _run({"job": "polygons", "args": {"class_raster": str(raster), "out": str(tmp_path / "p.gpkg")}})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert events[-1]["classes"] == [[0, 30 * 20 - 25 - 1], [1, 30 * 20 + 25]]
    frame = gpd.read_file(tmp_path / "p.gpkg", layer="classes")
    assert list(frame["class_id"]) == [0, 1] and all(g.geom_type == "MultiPolygon" for g in frame.geometry)
    assert len(frame.geometry[1].geoms) == 2


def test_polygons_of_a_class_map_placed_by_control_points_are_in_map_coordinates(tmp_path):
    """A class map of a raw product (ground control points, no map grid): the polygons are placed through the points,
    in their CRS, as QGIS draws the map; before, they were in pixel units with no CRS (and QGIS's hectares wrong)."""
    import warnings

    import geopandas as gpd
    from rasterio.control import GroundControlPoint
    from rasterio.errors import NotGeoreferencedWarning

    classes = np.zeros((30, 40), np.uint8)
    classes[:, 20:] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "classes.tif", "w", driver="GTiff", width=40, height=30, count=1,
                           dtype="uint8") as dst:
            dst.write(classes, 1)
            dst.gcps = ([GroundControlPoint(r, c, 500000 + 10 * c, 5800000 - 10 * r) for r, c in
                         ((0, 0), (0, 40), (30, 0), (30, 40))], rasterio.crs.CRS.from_epsg(32633))
    events, proc = _run({"job": "polygons", "args": {"class_raster": str(tmp_path / "classes.tif"),
                                                     "out": str(tmp_path / "p.gpkg")}})
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = gpd.read_file(tmp_path / "p.gpkg", layer="classes")
    assert frame.crs.to_epsg() == 32633
    np.testing.assert_allclose(frame.geometry[0].bounds, (500000, 5799700, 500200, 5800000), atol=1e-6)
    np.testing.assert_allclose(frame.geometry[1].bounds, (500200, 5799700, 500400, 5800000), atol=1e-6)
    assert frame.geometry[0].area == pytest.approx(20 * 30 * 100)


def test_cancel_by_sigterm_leaves_no_model_file(tmp_path):
    from carl_geo.sample_data import nc_landsat7, write_crop

    crop = write_crop(nc_landsat7(), tmp_path, 112, 128, 160)
    out = tmp_path / "m.pt"
    job = {"job": "train", "args": {"raster": str(crop.image), "labels": str(crop.polygons), "label_field": "label",
                                    "out": str(out), "max_steps": 100_000, "chip_size": 32, "device": "cpu"}}
    proc = subprocess.Popen([sys.executable, "-m", "carl_geo.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.close()
    for line in proc.stdout:  # wait for the training loop to report progress
        if json.loads(line)["event"] == "progress":
            break
    proc.send_signal(signal.SIGTERM)
    rest = [json.loads(line) for line in proc.stdout]
    assert proc.wait(60) == 143 and rest[-1]["event"] == "error" and rest[-1]["cancelled"]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith("m") and p.suffix != ".tif"]


def test_train_job_refuses_a_later_output_that_clashes_before_training(tmp_path):
    """The plugin's class map is written after training: a class map named like the input raster, the polygon
    file or the model file is refused before the first step (it was refused only after the whole training)."""
    from carl_geo.sample_data import nc_landsat7, write_crop

    crop = write_crop(nc_landsat7(), tmp_path, 112, 128, 64)  # one class only: no training starts in this test
    out = tmp_path / "m.pt"
    base = {"raster": str(crop.image), "labels": str(crop.polygons), "label_field": "label", "out": str(out),
            "max_steps": 2, "chip_size": 32, "device": "cpu"}
    before = {p: p.read_bytes() for p in (crop.image, crop.polygons)}
    for clash, expected in ((crop.image, "input raster"), (crop.polygons, "label file"), (out, "same file")):
        events, proc = _run({"job": "train", "args": {**base, "later_outputs": [["classification", str(clash)]]}})
        assert proc.returncode == 2 and events[-1]["event"] == "error", proc.stderr[-2000:]
        assert "classification" in events[-1]["text"] and expected in events[-1]["text"], events[-1]["text"]
        assert "progress" not in [e["event"] for e in events]  # refused before training began
        assert not out.exists() and {p: p.read_bytes() for p in before} == before
    # a class map elsewhere passes the check: the job goes on to read the labels (this window holds one class only)
    events, proc = _run({"job": "train", "args": {**base, "later_outputs": [["classification", str(tmp_path / "c.tif")]]}})
    assert proc.returncode == 2 and "at least two classes" in events[-1]["text"], events[-1]["text"]


def test_predict_job_refuses_class_polygons_that_clash_before_predicting(model_and_raster, tmp_path):
    """The plugin writes class polygons after the class map: polygons named like the input raster, the model file
    or the class map itself are refused before the prediction, and no class map is written."""
    model, raster = model_and_raster
    dst = tmp_path / "classes.tif"
    base = {"model": str(model), "src": str(raster), "dst": str(dst), "wavelengths": WL4, "tile_size": 32,
            "overlap": 8}
    before = {p: p.read_bytes() for p in (model, raster)}
    for clash, expected in ((raster, "input raster"), (model, "model file"), (dst, "same file")):
        events, proc = _run({"job": "predict", "args": {**base, "later_outputs": [["class polygons", str(clash)]]}})
        assert proc.returncode == 2 and "class polygons" in events[-1]["text"], proc.stderr[-2000:]
        assert expected in events[-1]["text"] and "progress" not in [e["event"] for e in events], events[-1]["text"]
        assert not dst.exists() and {p: p.read_bytes() for p in before} == before
    events, proc = _run({"job": "predict", "args": {**base, "later_outputs": [["class polygons", str(tmp_path / "p.gpkg")]]}})
    assert proc.returncode == 0 and events[-1]["event"] == "result" and dst.exists(), proc.stderr[-2000:]


def test_runner_relays_events_and_reports_a_crashed_child(model_and_raster, tmp_path):
    import torch

    _, raster = model_and_raster
    torch.manual_seed(0)  # a model that stored the statistics of data on a 0-1 scale; the raster is 100-4000
    model = save_bundle(make_bundle(CARLSegmenter(CARL(tiny_config()), 3).eval(), class_names=["a", "b", "c"],
                                    wavelengths=WL4, normalization={"mode": "fixed", "mean": 0.3, "std": 0.1}),
                    tmp_path / "m01.pt")
    seen: dict[str, list] = {"progress": [], "log": [], "warning": []}
    result = child.run_job("predict", {"model": str(model), "src": str(raster), "dst": str(tmp_path / "o.tif"),
                                       "wavelengths": WL4},
                           on_progress=lambda d, t: seen["progress"].append((d, t)), on_log=seen["log"].append,
                           on_warning=seen["warning"].append, python=sys.executable, log_path=tmp_path / "w.log")
    assert result["path"] == str(tmp_path / "o.tif") and seen["progress"][-1][0] == seen["progress"][-1][1]
    assert any("scale" in w for w in seen["warning"])  # CarlGeoWarning: the input is far from the model's scale
    with pytest.raises(child.WorkerError, match="does not exist|not found") as info:
        child.run_job("predict", {"model": str(tmp_path / "none.pt"), "src": str(raster), "dst": str(tmp_path / "x.tif")},
                      python=sys.executable, log_path=tmp_path / "w2.log")
    assert not info.value.crashed and not info.value.cancelled
    # a child that dies (here: killed by a signal, as a segfault would) is one line naming its log; we go on
    crasher = tmp_path / "crash.py"
    crasher.write_text("import os, signal, sys\nsys.stdin.readline()\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {crasher}\n")
    wrapper.chmod(0o755)
    with pytest.raises(child.WorkerError) as info:
        child.run_job("predict", {}, python=str(wrapper), log_path=tmp_path / "crash.log")
    assert info.value.crashed and "signal SIGSEGV" in info.value.text and str(tmp_path / "crash.log") in info.value.text


def test_runner_cancel_ends_the_child(tmp_path):
    from carl_geo.sample_data import nc_landsat7, write_crop

    crop = write_crop(nc_landsat7(), tmp_path, 112, 128, 160)
    progress: list[int] = []
    start = time.time()
    with pytest.raises(child.WorkerError) as info:
        child.run_job("train", {"raster": str(crop.image), "labels": str(crop.polygons), "label_field": "label",
                                "out": str(tmp_path / "m.pt"), "max_steps": 100_000, "chip_size": 32, "device": "cpu"},
                      on_progress=lambda d, t: progress.append(d), is_cancelled=lambda: len(progress) >= 2,
                      python=sys.executable, log_path=tmp_path / "t.log")
    assert info.value.cancelled and time.time() - start < 120 and not (tmp_path / "m.pt").exists()
