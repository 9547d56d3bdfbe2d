"""The plugin in another QGIS release, run the way its users run it (``scripts/qgis_lane.sh trixie|sid``): the
plugin ZIP installed into a fresh profile of a Debian root's QGIS, its algorithms through that root's own
``qgis_process`` (QGIS's GEOS / PROJ / GDAL load first, as in the desktop), the heavy work in the plugin's worker
process. Skipped unless the lane script set ``CARL_QGIS_LANE_ROOT``. Writes benchmarks/results/qgis_lanes/<suite>.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

LANE = os.environ.get("CARL_QGIS_LANE_ROOT")
pytestmark = pytest.mark.skipif(not LANE, reason="run through scripts/qgis_lane.sh (a Debian root with its QGIS)")

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "qgis_lanes"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A work folder inside the checkout (bind-mounted into the root at the same path), the plugin unzipped into
    a fresh profile, and the environment of a new user's qgis_process."""
    work = ROOT / ".lane_work" / os.environ.get("CARL_QGIS_LANE_SUITE", "lane")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sys.path.insert(0, str(ROOT / "qgis_plugin"))
    import build_zip

    plugin_zip = build_zip.build_zip(work / "dist")
    plugins = work / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    home = work / "home"
    ini = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ncarl_qgis=true\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "QT_QPA_PLATFORM": "offscreen", "QGIS_PLUGINPATH": str(plugins),
           "CARL_QGIS_PYTHON": str(ROOT / ".venv" / "bin" / "python"), "CARL_QGIS_ENV_DIR": str(work / "env"),
           "LANG": "C.UTF-8"}
    yield {"work": work, "env": env}


def qgis_process(lane: dict, args: list[str], name: str) -> subprocess.CompletedProcess:
    exe = "qgis_process.bin" if Path(LANE, "usr/bin/qgis_process.bin").exists() else "qgis_process"
    cmd = ["chroot", LANE, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in lane["env"].items()), exe, *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    TIMINGS[name] = round(time.perf_counter() - t, 1)
    return proc


def test_lane_lists_trains_segments_and_exits_cleanly(lane: dict) -> None:
    import rasterio

    from carl_geo.sample_data import nc_landsat7

    listed = qgis_process(lane, ["list"], "list")
    assert listed.returncode == 0, listed.stderr[-3000:]
    for alg in ("carl:segmentraster", "carl:trainfrompolygons", "carl:extractfeatures"):
        assert alg in listed.stdout
    scene = nc_landsat7()
    work = lane["work"]
    polygons = Path(shutil.copy(scene.polygons, work / "polygons.gpkg"))
    image = Path(shutil.copy(scene.image, work / "scene.tif"))
    model, classes, again = work / "model.pt", work / "classes.tif", work / "again.tif"
    trained = qgis_process(lane, ["run", "carl:trainfrompolygons", "--json", "--", f"INPUT={image}",
                                  f"POLYGONS={polygons}", f"FIELD={scene.label_field}", "MAX_STEPS=8", "CHIP_SIZE=32",
                                  "TRAIN_BATCH_SIZE=8", "DEVICE=cpu", f"OUTPUT_MODEL={model}", f"OUTPUT={classes}"],
                           "train from polygons")
    assert trained.returncode == 0, f"rc {trained.returncode}: {trained.stderr[-3000:]}"
    results = json.loads(trained.stdout)["results"]
    assert model.is_file() and 0 <= results["MEAN_IOU"] <= 1
    segmented = qgis_process(lane, ["run", "carl:segmentraster", "--", f"INPUT={image}", f"MODEL={model}",
                                    "DEVICE=cpu", f"OUTPUT={again}"], "segment raster")
    assert segmented.returncode == 0, f"rc {segmented.returncode}: {segmented.stderr[-3000:]}"
    with rasterio.open(classes) as a, rasterio.open(again) as b, rasterio.open(image) as src:
        assert a.crs == src.crs and a.transform == src.transform
        np.testing.assert_array_equal(a.read(1), b.read(1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    suite = os.environ.get("CARL_QGIS_LANE_SUITE", "lane")
    lines = [f"# QGIS lane {suite}: QGIS {os.environ.get('CARL_QGIS_LANE_VERSION', '?')} ({time.strftime('%Y-%m-%d')})",
             "", "`bash scripts/qgis_lane.sh " + suite + "`: the plugin ZIP in a fresh profile of the Debian root's QGIS, "
             "algorithms through its own `qgis_process`, the work in the plugin's worker process. Every command "
             "below exited with 0.", "", "| step | wall s |", "|---|---|"]
    lines += [f"| {name} | {seconds} |" for name, seconds in TIMINGS.items()]
    (RESULTS / f"{suite}.md").write_text("\n".join(lines) + "\n")
