"""The plugin inside the real QGIS executable ``qgis_process`` (how QGIS runs Processing headless):
the provider loads from an installed plugin folder, "CARL segment raster" runs, and the process
exits cleanly (a pyproj wheel with its own PROJ made it abort at exit: see setup_qgis_env.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

pytestmark = pytest.mark.qgis

ROOT = Path(__file__).resolve().parents[2]
# Debian's /usr/bin/qgis_process wrapper passes --noversioncheck, which qgis_process 3.22 rejects.
QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")


@pytest.fixture(scope="module")
def qgis_process_env(plugin_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh HOME whose default QGIS profile enables the plugin unzipped into QGIS_PLUGINPATH."""
    if QGIS_PROCESS is None:
        pytest.skip("qgis_process is not installed")
    root = tmp_path_factory.mktemp("qgis_process")
    ini = root / "home" / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ncarl_qgis=true\n")
    plugins = root / "plugins"
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "home"), "QT_QPA_PLATFORM": "offscreen",
            "QGIS_PLUGINPATH": str(plugins), "MPLBACKEND": "Agg",
            # QGIS embeds the system Python: point it at this venv's packages and the carl_geo source
            "PYTHONPATH": os.pathsep.join([sysconfig.get_paths()["purelib"], str(ROOT)])}


def qgis_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([QGIS_PROCESS, *args], capture_output=True, text=True, timeout=300, env=env)


def test_qgis_process_lists_and_runs_segment_raster(qgis_process_env: dict[str, str], scene_tif: Path,
                                                    seg_model_path: Path, tmp_path: Path) -> None:
    import rasterio
    from carl_geo import load_bundle
    from carl_geo.inference import predict_raster

    listed = qgis_process(["list"], qgis_process_env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    for alg in ("carl:segmentraster\tCARL segment raster", "carl:extractfeatures\tCARL extract features",
                "carl:trainfrompolygons\tCARL train from polygons"):
        assert alg in listed.stdout

    helped = qgis_process(["help", "carl:segmentraster"], qgis_process_env)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "sentinel2_l2a" in helped.stdout and "probabilities" in helped.stdout  # enum options listed

    out = tmp_path / "classes.tif"
    ran = qgis_process(["run", "carl:segmentraster", "--", f"INPUT={scene_tif}", f"MODEL={seg_model_path}",
                        "SENSOR=rgbn", "TILE_SIZE=64", "OVERLAP=16", "DEVICE=cpu", f"OUTPUT={out}"], qgis_process_env)
    assert ran.returncode == 0, f"rc {ran.returncode}: {ran.stderr[-2000:]}"
    assert f"OUTPUT:\t{out}" in ran.stdout

    ref = tmp_path / "reference.tif"
    predict_raster(load_bundle(seg_model_path), scene_tif, ref, sensor="rgbn", tile_size=64, overlap=16, device="cpu")
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        assert a.crs == b.crs and a.transform == b.transform
        np.testing.assert_array_equal(a.read(1), b.read(1))


def test_qgis_process_trains_and_segments_in_a_child_and_exits_cleanly(qgis_process_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    """Train from polygons, then segment with the trained model, in ``qgis_process`` (QGIS's own GEOS, PROJ and
    GDAL loaded first, as in the desktop): the work runs in the plugin's worker process, and QGIS exits with 0
    (it died on signal 11 in shapely, and aborted at exit after pyproj, when training ran inside it)."""
    import json

    import rasterio
    from carl_geo.sample_data import nc_landsat7

    scene = nc_landsat7()
    polygons = Path(shutil.copy(scene.polygons, tmp_path / "polygons.gpkg"))
    env = {**qgis_process_env, "CARL_QGIS_PYTHON": sys.executable, "CARL_QGIS_ENV_DIR": str(tmp_path / "env")}
    model, classes = tmp_path / "model.pt", tmp_path / "classes.tif"
    trained = qgis_process(["run", "carl:trainfrompolygons", "--json", "--", f"INPUT={scene.image}",
                            f"POLYGONS={polygons}", f"FIELD={scene.label_field}", "MAX_STEPS=8", "CHIP_SIZE=32",
                            "TRAIN_BATCH_SIZE=8", "DEVICE=cpu", f"OUTPUT_MODEL={model}", f"OUTPUT={classes}"], env)
    assert trained.returncode == 0, f"rc {trained.returncode}: {trained.stderr[-3000:]}"
    results = json.loads(trained.stdout)["results"]
    assert Path(results["OUTPUT_MODEL"]) == model and model.is_file() and 0 <= results["MEAN_IOU"] <= 1
    segmented = tmp_path / "segmented.tif"
    ran = qgis_process(["run", "carl:segmentraster", "--", f"INPUT={scene.image}", f"MODEL={model}", "DEVICE=cpu",
                        f"OUTPUT={segmented}"], env)
    assert ran.returncode == 0, f"rc {ran.returncode}: {ran.stderr[-3000:]}"
    with rasterio.open(classes) as a, rasterio.open(segmented) as b, rasterio.open(scene.image) as src:
        assert a.crs == src.crs and a.transform == src.transform
        np.testing.assert_array_equal(a.read(1), b.read(1))  # the same model, the same map
    logs = list((tmp_path / "env" / "logs").glob("worker-*.log"))
    assert len(logs) >= 2  # each job ran in a worker process with its own log
