""""Install CARL dependencies": the plugin-private environment built with QGIS's own Python.

The real installation runs in a second headless QGIS (a subprocess, so that carl_geo is not yet
imported there): offline from a wheelhouse the test builds (carl_geo's wheel from the plugin ZIP
plus a small pure-Python package that QGIS's Python lacks). torch and carl_geo's other
dependencies are already in this test QGIS's Python (.venv-qgis), so pip finds them there and
only the wheelhouse's packages land in the private environment. Then: carl_geo imports from the
private folder and "CARL segment raster" runs; a cancelled re-installation and a failed one both
leave the first installation active and working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import make_wheel  # noqa: E402

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def wheelhouse(plugin_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """carl_geo's wheel (taken out of the plugin ZIP) and a small pure-Python package."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    with zipfile.ZipFile(plugin_zip) as zf:
        (folder / "carl_geo-0.1.0-py3-none-any.whl").write_bytes(
            zf.read("carl_qgis/wheels/carl_geo-0.1.0-py3-none-any.whl"))
    make_wheel(folder, "carl_tinydep", "1.0")
    return folder


SCRIPT = """
import importlib.machinery, json, os, sys
from pathlib import Path

# QGIS as a user has it before the installation: no carl_geo. This checkout's editable install (in the test
# venv) is hidden; carl_geo is found only in the environment the installer creates.
_REPO = os.path.realpath({repo!r})
class _HideCheckout:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "carl_geo":
            return None
        spec = importlib.machinery.PathFinder.find_spec(
            name, [p for p in sys.path if os.path.realpath(p or ".") != _REPO])
        if spec is None or os.path.realpath(spec.origin or "").startswith(_REPO + os.sep):
            raise ModuleNotFoundError("No module named 'carl_geo'", name=name)
        return spec
sys.meta_path.insert(0, _HideCheckout)
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback
app = QgsApplication([], False, {profile!r})
QgsApplication.setPrefixPath("/usr", True)
app.initQgis()
sys.path += [QgsApplication.pkgDataPath() + "/python", QgsApplication.pkgDataPath() + "/python/plugins"]
from processing.core.Processing import Processing
Processing.initialize()
import processing, qgis.utils
from pyplugin_installer.unzip import unzip
unzip({zip!r}, {plugins!r})
qgis.utils.plugin_paths.append({plugins!r})
sys.path.insert(0, {plugins!r})
assert qgis.utils.loadPlugin("carl_qgis") and qgis.utils.startProcessingPlugin("carl_qgis")
env = Path({env!r})
out = {{"carl_geo_loaded_before": "carl_geo" in sys.modules}}
progress = []

class Feedback(QgsProcessingFeedback):
    def __init__(self, cancel_at=None):
        super().__init__()
        self.cancel_at = cancel_at
    def setProgress(self, p):
        super().setProgress(p)
        progress.append(p)
        if self.cancel_at is not None and p >= self.cancel_at:
            self.cancel()

res = processing.run("carl:installdependencies", {{"WHEELHOUSE": {wheelhouse!r}, "EXTRA_PACKAGES": "carl-tinydep"}},
                     feedback=Feedback())
out["first"] = res
out["first_progress"] = [progress[0], progress[-1], all(a <= b for a, b in zip(progress, progress[1:]))]
out["current"] = json.loads((env / "current.json").read_text())

# a second installation, cancelled while pip runs
try:
    processing.run("carl:installdependencies", {{"WHEELHOUSE": {wheelhouse!r}, "EXTRA_PACKAGES": "carl-tinydep"}},
                   feedback=Feedback(cancel_at=8.5))
except QgsProcessingException as e:
    out["cancel_error"] = str(e)
out["current_after_cancel"] = json.loads((env / "current.json").read_text())
out["envs_after_cancel"] = sorted(p.name for p in (env / "envs").iterdir())

# a third, failing: the wheel folder lacks a requested package
try:
    processing.run("carl:installdependencies", {{"WHEELHOUSE": {wheelhouse!r},
                                                 "EXTRA_PACKAGES": "carl-tinydep, carl-not-in-the-folder"}})
except QgsProcessingException as e:
    out["fail_error"] = str(e)
out["current_after_failure"] = json.loads((env / "current.json").read_text())
out["envs_after_failure"] = sorted(p.name for p in (env / "envs").iterdir())

# the first installation is what QGIS uses now, without any path edited by hand
import carl_geo, carl_tinydep, torch
out["carl_geo_file"] = carl_geo.__file__
out["tinydep_file"] = carl_tinydep.__file__
out["torch_file"] = torch.__file__
from carl_qgis import deps
out["deps_ok"] = deps.status().ok
res = processing.run("carl:segmentraster", {{"INPUT": {scene!r}, "MODEL": {model!r}, "SENSOR": "rgbn",
                                             "TILE_SIZE": 64, "OVERLAP": 16, "DEVICE": "cpu",
                                             "OUTPUT": {output!r}}})
out["segment"] = res["OUTPUT"]
print("RESULT " + json.dumps(out))
app.exitQgis()
"""


@pytest.mark.slow
def test_install_offline_then_cancel_and_failure_keep_it_working(plugin_zip: Path, wheelhouse: Path, scene_tif: Path,
                                                                 seg_model_path: Path, tmp_path: Path) -> None:
    env = tmp_path / "carl_env"
    script = SCRIPT.format(repo=str(Path(__file__).resolve().parents[2]), profile=str(tmp_path / "profile"), zip=str(plugin_zip), plugins=str(tmp_path / "plugins"),
                           env=str(env), wheelhouse=str(wheelhouse), scene=str(scene_tif), model=str(seg_model_path),
                           output=str(tmp_path / "classes.tif"))
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "CARL_QGIS_ENV_DIR": str(env),
               "QT_QPA_PLATFORM": "offscreen", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path, env=run_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert out["carl_geo_loaded_before"] is False

    first = out["first"]
    active = env / "envs" / out["current"]["env"]
    site = Path(first["ENVIRONMENT"])
    assert site == active and (active / "pyvenv.cfg").is_file()
    assert "carl_geo 0.1.0" in first["VERSIONS"] and Path(first["LOG"]).is_file()
    import torch  # the torch the private environment sees (QGIS's site packages here): recorded truthfully

    assert out["current"]["torch_build"] == (f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU")
    assert out["first_progress"][1] == 100 and out["first_progress"][2]  # progress rises to 100
    log = Path(first["LOG"]).read_text()
    assert "--no-index --find-links" in log and "CARL_QGIS_VERIFY" in log

    # cancelled: one line, the first installation stays active and its folder intact; the new one is gone
    assert "Installation cancelled" in out["cancel_error"] and "unchanged" in out["cancel_error"]
    assert out["current_after_cancel"] == out["current"]
    assert out["envs_after_cancel"] == [active.name]
    logs = sorted((env / "logs").glob("install-*.log"))
    assert len(logs) == 3
    cancelled = logs[1].read_text()
    pip_run = cancelled.split(" -m pip --python ", 1)[1]  # pip had started when Cancel came ...
    assert " install " in pip_run.splitlines()[0] and "(exit code" not in pip_run  # ... and was stopped
    assert cancelled.rstrip().endswith("cancelled: the new environment is deleted, the previous installation is "
                                       "unchanged")
    # failed: the cause in one line (the missing package is named), the log path, nothing changed
    assert "carl-not-in-the-folder" in out["fail_error"] and "wheel folder" in out["fail_error"]
    assert "log:" in out["fail_error"] and "\n" not in out["fail_error"]
    assert out["current_after_failure"] == out["current"] and out["envs_after_failure"] == [active.name]

    # QGIS imports carl_geo and the extra package from the private folder (torch comes from QGIS's Python)
    site_packages = active / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    assert Path(out["carl_geo_file"]).is_relative_to(site_packages)
    assert Path(out["tinydep_file"]).is_relative_to(site_packages)
    assert not Path(out["torch_file"]).is_relative_to(env)
    assert out["deps_ok"] is True
    import rasterio

    with rasterio.open(out["segment"]) as ds:
        assert ds.count == 1 and ds.width == 96 and ds.height == 80


# -- pieces, in this QGIS -------------------------------------------------------------------------------


def test_causes_are_one_line_each(installed_plugin: Any) -> None:
    from carl_qgis.install_errors import classify

    samples = {
        "disk_full": "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
        "tls": "WARNING: Retrying ... SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
               "certificate verify failed: self-signed certificate in certificate chain'))",
        "proxy": "WARNING: Retrying ... ProxyError('Cannot connect to proxy.', OSError('Tunnel connection failed: "
                 "407 Proxy Authentication Required'))",
        "network": "WARNING: Retrying (Retry(total=4...)) after connection broken by 'NewConnectionError(...: "
                   "Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')'",
        "python": "ERROR: Package 'carl-geo' requires a different Python: 3.9.18 not in '>=3.11'",
        "dll": "OSError: [WinError 126] The specified module could not be found. Error loading "
               "\"...\\torch\\lib\\c10.dll\" or one of its dependencies. (DLL load failed while importing _C)",
        "no_pip": "/usr/bin/python3: No module named pip",
    }
    for kind, text in samples.items():
        cause = classify(text)
        assert cause is not None and cause.kind == kind, (kind, cause)
        assert "\n" not in cause.message
    wheelhouse = classify("ERROR: No matching distribution found for torch>=2.4", wheelhouse=True)
    assert wheelhouse.kind == "wheelhouse" and "torch>=2.4" in wheelhouse.message
    assert classify("all good") is None


def test_noise_stays_out_of_the_users_log(installed_plugin: Any) -> None:
    from carl_qgis.install_errors import is_noise

    noise = ["[notice] A new release of pip is available: 24.0 -> 25.3",
             "  Can't uninstall 'numpy'. No files were found to uninstall.",
             "  WARNING: The scripts f2py and numpy-config are installed in '/x/bin' which is not on PATH.",
             "/x/matplotlib/projections/__init__.py:63: UserWarning: Unable to import Axes3D. This may be due to ...",
             "sys:1: ResourceWarning: unclosed file <_io.TextIOWrapper name=3>"]
    kept = ["Collecting torch==2.14.1", "ERROR: Could not install packages due to an OSError: [Errno 28] No space",
            "Successfully installed carl-geo-0.2.0", "WARNING: Retrying (Retry(total=0)) after connection broken"]
    assert all(is_noise(line) for line in noise) and not any(is_noise(line) for line in kept)


def test_torch_build_choice(installed_plugin: Any) -> None:
    from carl_qgis.torch_choice import NvidiaGpu, choose_torch

    none = choose_torch("auto", "linux", gpu=None)
    assert none.variant == "cpu" and none.index_url == "https://download.pytorch.org/whl/cpu"
    recent = choose_torch("auto", "win32", gpu=NvidiaGpu("NVIDIA RTX A4000", "572.16"))
    assert recent.variant == "cu128" and recent.index_url.endswith("/cu128") and "572.16" in recent.reason
    assert recent.fallback is not None and recent.fallback.variant == "cpu"  # CPU fallback
    assert choose_torch("auto", "linux", gpu=NvidiaGpu("Tesla T4", "535.104.05")).variant == "cpu"
    assert choose_torch("cpu", "linux", gpu=NvidiaGpu("H100", "580.1")).variant == "cpu"
    assert choose_torch("auto", "darwin").index_url is None
    with pytest.raises(ValueError):
        choose_torch("rocm")


def test_refuses_an_old_python_and_a_full_disk(installed_plugin: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from carl_qgis.installer import InstallFailed, Installer, InstallPlan

    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho PYVER 3 9 18\n")
    old.chmod(0o755)
    with pytest.raises(InstallFailed, match="QGIS's Python is 3.9; carl_geo needs 3.11 or newer") as info:
        Installer(InstallPlan(python=str(old), base=tmp_path / "a", requirements=("x",))).run()
    assert info.value.log is not None and info.value.log.is_file()
    assert not (tmp_path / "a" / "current.json").exists()

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**10, 10**10 - 10**8, 10**8))
    with pytest.raises(InstallFailed, match="the disk is full: 0.1 GB free"):
        Installer(InstallPlan(python=sys.executable, base=tmp_path / "b", requirements=("x",))).run()


def test_installer_dialog_progress_log_and_cancel(installed_plugin: Any, tmp_path: Path) -> None:
    """The dialog's wiring, with a stand-in worker: progress bar, live log, Cancel, the result line."""
    import time

    from carl_qgis.gui.installer_dialog import InstallerDialog
    from carl_qgis.installer import InstallCancelled

    def worker(plan: Any, progress: Any, line: Any, is_cancelled: Any) -> Any:
        progress(42.0, "resolving packages (7: torch)")
        line("Collecting torch")
        for _ in range(500):
            if is_cancelled():
                raise InstallCancelled()
            time.sleep(0.01)
        raise AssertionError("not cancelled")

    dialog = InstallerDialog(base=tmp_path / "env", make_plan=lambda wh, torch: ("plan", wh, torch), run=worker)
    assert dialog.torch_combo.currentData() == "auto" and dialog.current_label.text() == "nothing yet"
    dialog.offline.setChecked(True)
    dialog.start()  # offline without a folder: refused, nothing started
    assert dialog.job is None and "folder of wheel files" in dialog.status.text()
    dialog.wheelhouse_edit.setText(str(tmp_path))
    dialog.start()
    deadline = time.time() + 10
    from qgis.PyQt.QtCore import QCoreApplication

    while dialog.progress.value() != 42 and time.time() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.02)
    assert dialog.progress.value() == 42 and "Collecting torch" in dialog.log_view.toPlainText()
    assert not dialog.install_button.isEnabled() and dialog.cancel_button.isEnabled()
    dialog.reject()  # closing while running cancels instead
    assert dialog.job.wait(10)
    assert isinstance(dialog.error, InstallCancelled)
    assert dialog.status.text() == "Cancelled. The previous installation is unchanged."
    assert dialog.install_button.isEnabled()
    dialog.close()
