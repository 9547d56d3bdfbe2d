"""The desktop journey's steps, run INSIDE the QGIS desktop (``qgis --code``; started by
scripts/qgis_desktop_journey.sh, which sets the environment below and checks the exit code).

As an analyst would: the plugin (installed from its ZIP into a fresh profile) opens its installer on the first
start, which installs the dependencies from a local folder of wheels; the plugin shows its algorithms in the
Processing toolbox; the NC Landsat 7 scene and its training polygons are loaded as layers; "CARL train from
polygons" runs on them and its map is added, styled with the class names; "CARL segment raster" maps the scene
again with the trained model; then QGIS quits through its own event loop. Each step's time, the training log
(with the candidate table) and a screenshot of the main window are written to ``$CARL_JOURNEY_OUT``; any failure
is written to ``journey.json`` and QGIS quits with exit code 1.

Environment: ``CARL_JOURNEY_OUT`` (output folder), ``CARL_JOURNEY_SCENE`` / ``CARL_JOURNEY_POLYGONS`` /
``CARL_JOURNEY_FIELD`` (the scene), ``CARL_JOURNEY_WORK`` (model and maps), ``CARL_JOURNEY_STEPS`` (training steps;
empty: the default time budget), ``CARL_JOURNEY_WHEELHOUSE`` (a folder of wheels: first the plugin's installer, which
opens by itself on the first start, installs the dependencies from it offline; empty: ``CARL_QGIS_PYTHON`` is used).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingFeedback, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface

OUT = Path(os.environ["CARL_JOURNEY_OUT"])  # screenshots, journey.json, the training log
WORK = Path(os.environ.get("CARL_JOURNEY_WORK", OUT))  # the model and the maps
RECORD: dict = {"steps": [], "ok": False}
if os.environ.get("CARL_JOURNEY_STACKS"):  # where a stuck journey is: every thread's stack every 30 s
    import faulthandler

    faulthandler.dump_traceback_later(30, repeat=True, file=open(os.environ["CARL_JOURNEY_STACKS"], "w"))  # noqa: SIM115

    def _windows() -> None:  # diagnosis only: which top-level windows are visible (read from another thread)
        import threading

        from qgis.PyQt.QtWidgets import QApplication

        def look() -> None:
            while True:
                time.sleep(20)
                titles = [f"{type(w).__name__}: {w.windowTitle()}" for w in QApplication.topLevelWidgets() if w.isVisible()]
                with open(os.environ["CARL_JOURNEY_STACKS"] + ".windows", "a") as f:
                    f.write(repr(titles) + "\n")

        threading.Thread(target=look, daemon=True).start()

    _windows()


class LogFeedback(QgsProcessingFeedback):
    """Keeps what the algorithm writes to its log (what the user reads in the dialog's Log tab)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def pushInfo(self, info: str) -> None:  # noqa: N802 (Qt name)
        self.lines.append(info)
        super().pushInfo(info)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803
        self.lines.append("ERROR: " + error)
        super().reportError(error, fatalError)


def settle(seconds: float = 1.0) -> None:
    end = time.time() + seconds
    while time.time() < end:
        QgsApplication.processEvents()
        time.sleep(0.05)


def shot(name: str) -> None:
    settle(1.5)
    iface.mapCanvas().refreshAllLayers()
    settle(1.5)
    iface.mainWindow().grab().save(str(OUT / name), "PNG")


def step(name: str, fn) -> object:  # noqa: ANN001
    t = time.perf_counter()
    result = fn()
    RECORD["steps"].append({"step": name, "seconds": round(time.perf_counter() - t, 1)})
    (OUT / "journey.json").write_text(json.dumps(RECORD, indent=1))
    return result


def install_dependencies(house: str) -> dict:
    """First start without the dependencies: the plugin opens its installer by itself; the analyst picks
    "Offline", the folder of wheels, and Install, then waits (the dialog shows progress and pip's log)."""
    from carl_qgis import deps
    from carl_qgis.gui.installer_dialog import InstallerDialog
    from qgis.PyQt.QtWidgets import QApplication

    opened = [w for w in QApplication.topLevelWidgets() if isinstance(w, InstallerDialog) and w.isVisible()]
    if not opened:
        raise RuntimeError("the installer did not open by itself on the first start without the dependencies")
    dialog = opened[0]
    dialog.offline.setChecked(True)
    dialog.wheelhouse_edit.setText(house)
    settle(0.5)
    dialog.grab().save(str(OUT / "desktop_0_installer.png"), "PNG")
    dialog.install_button.click()
    if dialog.job is None:  # refused before starting (the status line says why)
        raise RuntimeError(f"the installer did not start: {dialog.status.text()}")
    end = time.time() + float(os.environ.get("CARL_JOURNEY_INSTALL_TIMEOUT", "1800"))
    while dialog.running and time.time() < end:
        settle(1.0)
    settle(1.0)
    dialog.grab().save(str(OUT / "desktop_0_installed.png"), "PNG")
    status = dialog.status.text()
    if dialog.running:
        dialog.cancel()
        raise RuntimeError(f"the installation did not finish in time: {status}")
    if dialog.error is not None:
        raise RuntimeError(f"the installation failed: {status}")
    result = {"status": status, "ready": deps.status().ok, "env": str(getattr(dialog.result, "env", "")),
              "versions": getattr(dialog.result, "versions", {})}
    if not result["ready"]:
        raise RuntimeError(f"installed, but the CARL algorithms are not ready: {deps.status().message}")
    dialog.close()
    return result


def journey() -> None:
    import processing

    house = os.environ.get("CARL_JOURNEY_WHEELHOUSE")
    if house:
        RECORD["install"] = step("install dependencies (offline, wheel folder)", lambda: install_dependencies(house))
    algs = [a.id() for a in QgsApplication.processingRegistry().algorithms() if a.provider().id() == "carl"]
    RECORD["algorithms"] = sorted(algs)
    if "carl:trainfrompolygons" not in algs:
        raise RuntimeError(f"the CARL algorithms are not in the Processing toolbox: {algs}")
    from qgis.core import QgsSettings

    # no "Select Transformation" prompt (modal: a script cannot answer it); QGIS picks its default transformation
    QgsSettings().setValue("/projections/promptWhenMultipleTransformsExist", False, QgsSettings.App)
    QgsSettings().setValue("/projections/promptWhenMultipleTransformsExist", False)
    scene = QgsRasterLayer(os.environ["CARL_JOURNEY_SCENE"], "nc_landsat7")
    polygons = QgsVectorLayer(os.environ["CARL_JOURNEY_POLYGONS"], "training polygons")
    if not scene.isValid() or not polygons.isValid():
        raise RuntimeError("the scene or the polygons did not load")
    QgsProject.instance().addMapLayers([scene, polygons])
    iface.mapCanvas().setExtent(scene.extent())
    shot("desktop_1_layers.png")

    feedback = LogFeedback()
    params = {"INPUT": scene, "POLYGONS": polygons, "FIELD": os.environ["CARL_JOURNEY_FIELD"], "DEVICE": "cpu",
              "OUTPUT_MODEL": str(WORK / "journey_model.pt"), "OUTPUT": str(WORK / "journey_classes.tif")}
    if os.environ.get("CARL_JOURNEY_STEPS"):
        params["MAX_STEPS"] = int(os.environ["CARL_JOURNEY_STEPS"])
    trained = step("train from polygons",
                   lambda: processing.runAndLoadResults("carl:trainfrompolygons", params, feedback=feedback))
    (OUT / "journey_train_log.txt").write_text("\n".join(feedback.lines) + "\n")
    RECORD["train_results"] = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in trained.items()}
    QgsProject.instance().layerTreeRoot().findLayer(polygons.id()).setItemVisibilityChecked(False)
    shot("desktop_2_trained.png")

    segmented = step("segment raster", lambda: processing.runAndLoadResults(
        "carl:segmentraster", {"INPUT": scene, "MODEL": trained["OUTPUT_MODEL"], "DEVICE": "cpu",
                               "OUTPUT": str(WORK / "journey_segmented.tif")}, feedback=LogFeedback()))
    RECORD["segment_output"] = str(segmented["OUTPUT"])
    shot("desktop_3_segmented.png")
    RECORD["ok"] = True


def run() -> None:
    code = 1
    try:
        journey()
        code = 0
    except Exception as e:  # noqa: BLE001 (recorded for the shell script, then QGIS quits)
        RECORD["error"] = f"{type(e).__name__}: {e}"
        RECORD["traceback"] = traceback.format_exc()
    (OUT / "journey.json").write_text(json.dumps(RECORD, indent=1))
    # close the project while the window is alive (QGIS 3.22 crashes clearing it from its destructor when
    # QApplication.exit ends the session with layers loaded), then end the event loop with the journey's code
    QgsProject.instance().clear()
    settle(0.5)
    QgsApplication.instance().exit(code)

QTimer.singleShot(3000, run)
