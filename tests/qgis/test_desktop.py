"""The plugin in the QGIS desktop program (on a virtual X display), started from an installed
plugin folder with Debian's own Python, which has neither torch nor carl_geo: QGIS starts, the
provider is there, and the message bar shows exactly one CARL message with the pip command for
that Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import SYSTEM_PYTHON, system_python_has_carl_geo, system_python_managed  # noqa: E402

pytestmark = pytest.mark.qgis

XVFB_RUN = shutil.which("xvfb-run")
QGIS_DESKTOP = shutil.which("qgis.bin") or shutil.which("qgis")


@pytest.mark.skipif(XVFB_RUN is None or QGIS_DESKTOP is None, reason="needs xvfb-run and the qgis program")
@pytest.mark.skipif(system_python_has_carl_geo(), reason="the system Python has carl_geo installed")
def test_desktop_qgis_without_carl_geo_shows_one_message(plugin_zip: Path, tmp_path: Path) -> None:
    home, plugins, report = tmp_path / "home", tmp_path / "plugins", tmp_path / "report.json"
    ini = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\ncarl_qgis=true\n")
    zipfile.ZipFile(plugin_zip).extractall(plugins)
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from qgis.core import QgsApplication
        from qgis.PyQt.QtCore import QTimer
        from qgis.PyQt.QtWidgets import QApplication, QPushButton
        from qgis.utils import active_plugins, iface
        provider = QgsApplication.processingRegistry().providerById("carl")
        bar = iface.messageBar()
        with open({str(report)!r}, "w") as f:
            json.dump({{"active": "carl_qgis" in active_plugins,
                        "algorithms": sorted(a.id() for a in provider.algorithms()) if provider else None,
                        "messages": [[w.title(), w.text()] for w in bar.items()],
                        "buttons": [b.text() for w in bar.items() for b in w.findChildren(QPushButton)],
                        "menu": [a.text() for a in iface.pluginMenu().actions() for a in
                                 ((a.menu().actions() if a.menu() else [a]))],
                        "dialogs": [w.windowTitle() for w in QApplication.topLevelWidgets()
                                    if w.isVisible() and w.windowTitle() == "Install CARL dependencies"],
                        "plugin_file": sys.modules["carl_qgis"].__file__}}, f)
        QTimer.singleShot(200, iface.actionExit().trigger)
    """))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "QGIS_PLUGINPATH": str(plugins)}
    proc = subprocess.run([XVFB_RUN, "-a", QGIS_DESKTOP, "--nologo", "--noversioncheck", "--code", str(script)],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["active"] and Path(data["plugin_file"]).is_relative_to(plugins)
    assert data["algorithms"] == ["carl:downloadweights", "carl:extractfeatures", "carl:installdependencies",
                                  "carl:segmentraster", "carl:trainfrompolygons"]
    carl = [text for title, text in data["messages"] if title == "CARL"]
    assert len(carl) == 1
    python = carl[0].rsplit("\n", 1)[-1].split(" -m pip install ")[0]
    assert os.path.realpath(python) == os.path.realpath(SYSTEM_PYTHON)  # QGIS's own Python, not a PATH python3
    flags = "--user --break-system-packages " if system_python_managed() else ""
    wheel = plugins / "carl_qgis" / "wheels" / "carl_geo-0.1.0-py3-none-any.whl"
    assert carl[0].endswith(f"{python} -m pip install {flags}{wheel}")
    assert "Plugins > CARL > Install CARL dependencies" in carl[0]
    # the message carries a button that opens the installer; the Plugins menu has both actions
    assert "Install CARL dependencies…" in data["buttons"]
    assert {"Install CARL dependencies…", "Download CARL-SSL weights…"} <= set(data["menu"])
    assert data["dialogs"] == ["Install CARL dependencies"]  # first run: the installer opens by itself, once
    assert "No module named 'torch'" in carl[0]
    # the next start (same profile): the message again, but the installer does not open by itself
    report.unlink()
    proc = subprocess.run([XVFB_RUN, "-a", QGIS_DESKTOP, "--nologo", "--noversioncheck", "--code", str(script)],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads(report.read_text())
    assert again["dialogs"] == [] and len([t for t, _ in again["messages"] if t == "CARL"]) == 1
