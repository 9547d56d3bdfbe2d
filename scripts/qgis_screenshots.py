"""Screenshots of the plugin's dialogs at work, for the docs: the installer during a real offline
installation, and the CARL-SSL weights download in progress.

Run on a (virtual) X display with QGIS's Python, e.g.::

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv-qgis/bin/python scripts/qgis_screenshots.py docs/

The installer installs the carl_geo wheel (built from this repository) and a small test package
from a temporary wheel folder into a temporary private folder; the weights download comes from a
loopback server (a small checkpoint in the published layout, served at ~1 MB/s), so nothing is
fetched from the internet.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Under Xvfb, Qt's OpenGL loads Mesa's software renderer and with it libLLVM; the CUDA torch wheels bring
# triton with its own LLVM, and importing it after a window was shown crashes (segfault). No GL needed here.
os.environ.setdefault("QT_XCB_GL_INTEGRATION", "none")
sys.path[:0] = [str(ROOT / "qgis_plugin"), str(ROOT / "tests"), str(ROOT / "tests" / "qgis"), str(ROOT)]


def wait_until(condition, timeout: float = 300.0) -> None:  # noqa: ANN001
    from qgis.PyQt.QtCore import QCoreApplication

    end = time.time() + timeout
    while not condition() and time.time() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    if not condition():
        raise TimeoutError("the dialog did not reach the state to capture")


def settle(seconds: float = 0.5) -> None:
    """Let Qt paint for ``seconds``."""
    from qgis.PyQt.QtCore import QCoreApplication

    end = time.time() + seconds
    while time.time() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def installer_screenshot(out: Path, work: Path) -> Path:
    import build_zip
    from carl_qgis.gui.installer_dialog import InstallerDialog
    from carl_qgis.installer import InstallPlan, qgis_pins, qgis_site_dirs
    from qgis_helpers import make_wheel

    house = work / "wheelhouse"
    wheel = build_zip.build_wheel(house)
    make_wheel(house, "carl_tinydep", "1.0")
    base = work / "carl_qgis"

    def plan(wheelhouse: str | None, torch: str) -> InstallPlan:
        from carl_qgis.deps import qgis_python

        return InstallPlan(python=qgis_python(), base=base, requirements=(str(wheel), "carl-tinydep"),
                           reinstall=(str(wheel),), wheelhouse=Path(wheelhouse) if wheelhouse else None,
                           constraints=tuple(qgis_pins()), qgis_site_dirs=tuple(qgis_site_dirs(base / "envs")))

    dialog = InstallerDialog(base=base, make_plan=plan)
    dialog.resize(760, 560)
    dialog.offline.setChecked(True)
    dialog.wheelhouse_edit.setText(str(house))
    dialog.show()
    dialog.start()
    # capture while pip works (the log shows what it resolves)
    wait_until(lambda: dialog.progress.value() >= 40 or (dialog.job is not None and dialog.job.finished))
    settle(0.3)
    path = out / "qgis_installer.png"
    dialog.grab().save(str(path), "PNG")
    dialog.job.wait(600)
    settle(0.3)
    done = out / "qgis_installer_done.png"
    dialog.grab().save(str(done), "PNG")
    print(f"{path} ({dialog.status.text()})")
    dialog.close()
    return path


def weights_screenshot(out: Path, work: Path) -> Path:
    import carl_geo.weights as weights
    from carl_geo.weights import CARL_SSL, PUBLISHED, CheckpointLayout
    from carl_geo.weights.layout import load_state_dict
    from carl_qgis.gui.weights_dialog import WeightsDialog
    from weights_server import ServedFile, serve, tiny_ssl_checkpoint

    ckpt, _ = tiny_ssl_checkpoint(work / "tiny_ssl.ckpt")
    layout = CheckpointLayout.from_state_dict(load_state_dict(ckpt), "tiny CARL-SSL layout")
    os.environ["CARL_GEO_HOME"] = str(work / "cache")
    os.environ.pop("CARL_GEO_OFFLINE", None)
    served = ServedFile(ckpt.read_bytes(), chunk=64 * 1024, delay=0.06)
    with serve(served) as url:
        PUBLISHED["carl_ssl"] = CARL_SSL.with_(url=url, layout=lambda: layout, config="tiny", size_hint="5.8 MB",
                                               description="CARL-SSL backbone (test copy from a loopback server)")
        dialog = WeightsDialog(weights=weights)
        dialog.resize(700, 260)
        dialog.show()
        dialog.start()
        wait_until(lambda: dialog.progress.value() >= 400)
        settle(0.2)
        path = out / "qgis_weights_download.png"
        dialog.grab().save(str(path), "PNG")
        dialog.cancel()
        dialog.job.wait(60)
        print(f"{path} ({dialog.status.text()})")
        dialog.close()
    return path


def main(argv: list[str]) -> int:
    from qgis.core import QgsApplication

    out = Path(argv[0] if argv else ROOT / "docs")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="carl_screens_") as tmp:
        work = Path(tmp)
        app = QgsApplication([], True, str(work / "profile"))
        app.initQgis()
        installer_screenshot(out, work)
        weights_screenshot(out, work)
        app.exitQgis()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
