"""The heavy work never enters QGIS's process (issue #30): after "CARL train from polygons" and "CARL segment
raster" ran in a fresh QGIS (its own Python process, as the desktop's), neither torch nor the shapely, pyproj
or rasterio wheels (with their own GEOS / PROJ / GDAL) are loaded there: the worker process did the work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

pytestmark = pytest.mark.qgis

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
from pathlib import Path
from qgis.core import QgsApplication
app = QgsApplication([], False)
QgsApplication.setPrefixPath("/usr", True)
app.initQgis()
python_dir = Path(QgsApplication.pkgDataPath()) / "python"
sys.path += [str(python_dir), str(python_dir / "plugins"), PLUGIN_SOURCE]
from processing.core.Processing import Processing
Processing.initialize()
import processing
from carl_qgis.provider import CarlProvider
provider = CarlProvider()  # kept referenced: a provider Python no longer holds is collected with its algorithms
QgsApplication.processingRegistry().addProvider(provider)
args = json.loads(sys.argv[1])
trained = processing.run("carl:trainfrompolygons", args["train"])
processing.run("carl:segmentraster", {**args["segment"], "MODEL": trained["OUTPUT_MODEL"]})
heavy = sorted(m for m in ("torch", "shapely", "pyproj", "rasterio", "geopandas", "sklearn") if m in sys.modules)
print("LOADED " + json.dumps(heavy))
"""


def test_train_and_segment_leave_qgis_without_torch_shapely_pyproj_rasterio(tmp_path: Path) -> None:
    from carl_geo.sample_data import nc_landsat7

    scene = nc_landsat7()
    polygons = Path(shutil.copy(scene.polygons, tmp_path / "polygons.gpkg"))
    args = {"train": {"INPUT": str(scene.image), "POLYGONS": str(polygons), "FIELD": scene.label_field,
                      "MAX_STEPS": 6, "CHIP_SIZE": 32, "TRAIN_BATCH_SIZE": 4, "DEVICE": "cpu",
                      "OUTPUT_MODEL": str(tmp_path / "m.pt"), "OUTPUT": str(tmp_path / "classes.tif")},
            "segment": {"INPUT": str(scene.image), "DEVICE": "cpu", "OUTPUT": str(tmp_path / "again.tif")}}
    env = {**os.environ, "CARL_QGIS_PYTHON": sys.executable, "CARL_QGIS_ENV_DIR": str(tmp_path / "env"),
           "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    env.pop("CARL_QGIS_IN_PROCESS", None)
    code = SCRIPT.replace("PLUGIN_SOURCE", repr(str(ROOT / "qgis_plugin")))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("LOADED "))[7:])
    assert loaded == [], f"loaded into QGIS's process: {loaded}"
    assert (tmp_path / "m.pt").is_file() and (tmp_path / "again.tif").is_file()
