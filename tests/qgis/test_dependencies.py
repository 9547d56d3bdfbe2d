"""The plugin without carl_geo/torch: one clear message with the pip command for QGIS's Python,
no crash, no silent install, algorithms that refuse to run with the same message."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qgis.core", reason="needs QGIS's Python bindings (Debian python3-qgis); "
                                        "run scripts/run_qgis_tests.sh")

from qgis_helpers import SYSTEM_PYTHON, system_python_has_carl_geo, system_python_managed  # noqa: E402

pytestmark = pytest.mark.qgis

class StubIface:
    """Just enough of QgisInterface for the plugin: a message bar that records messages."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, Any]] = []
        iface = self

        class _Bar:
            def pushMessage(self, title: str, text: str, level: Any = None, duration: int = 0) -> None:  # noqa: N802
                iface.messages.append((title, text, level))

        self._bar = _Bar()

    def messageBar(self) -> Any:  # noqa: N802
        return self._bar


@pytest.fixture
def missing_carl_geo(installed_plugin: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The plugin's dependency check sees ``import carl_geo`` fail (ModuleNotFoundError)."""
    deps = sys.modules["carl_qgis.deps"]
    real_check = deps.check_dependencies

    def finder(name: str) -> None:
        if name == "carl_geo":
            raise ModuleNotFoundError("No module named 'carl_geo'")
        deps.find_module(name)

    monkeypatch.setattr(deps, "check_dependencies", lambda: real_check(finder=finder))
    deps.reset()
    plugin_cls = sys.modules["carl_qgis.plugin"].CarlPlugin
    monkeypatch.setattr(plugin_cls, "_dependency_message_shown", False)
    yield deps
    monkeypatch.undo()
    deps.reset()


def test_missing_carl_geo_gives_one_message_with_pip_command(missing_carl_geo: Any, scene_tif: Path,
                                                             seg_model_path: Path) -> None:
    import processing
    from qgis.core import Qgis, QgsApplication, QgsProcessingException

    log: list[tuple[str, str, Any]] = []

    def on_message(message: str, tag: str, level: Any) -> None:
        if tag == "CARL":
            log.append((message, tag, level))

    QgsApplication.messageLog().messageReceived.connect(on_message)
    try:
        import carl_qgis

        iface = StubIface()
        plugin = carl_qgis.classFactory(iface)
        plugin.initProcessing()  # QGIS calls both; the message must appear once
        plugin.initGui()
        plugin.unload()
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(on_message)

    assert len(iface.messages) == 1
    title, text, level = iface.messages[0]
    assert title == "CARL" and level == Qgis.Critical
    wheel = Path(sys.modules["carl_qgis"].__file__).parent / "wheels" / "carl_geo-0.1.0-py3-none-any.whl"
    assert wheel.is_file()  # the terminal fallback installs the wheel the plugin carries, not a PyPI name
    expected_cmd = f"{sys.executable} -m pip install {wheel}"
    assert expected_cmd in text and "carl_geo" in text and "No module named 'carl_geo'" in text
    assert "Plugins > CARL > Install CARL dependencies" in text and "no terminal is needed" in text
    assert [m for m, _, lvl in log if lvl == Qgis.Critical] == [text]

    # the registered algorithms refuse to run, with the same instructions
    alg = QgsApplication.processingRegistry().createAlgorithmById("carl:segmentraster")
    ok, message = alg.canExecute()
    assert not ok and expected_cmd in message
    with pytest.raises(QgsProcessingException, match="Install CARL dependencies"):
        processing.run("carl:segmentraster", {"INPUT": str(scene_tif), "MODEL": str(seg_model_path),
                                              "OUTPUT": "TEMPORARY_OUTPUT"})


def test_qgis_python_path_on_each_platform(installed_plugin: Any, tmp_path: Path) -> None:
    deps = sys.modules["carl_qgis.deps"]
    # Linux / venv: sys.executable is Python
    assert deps.qgis_python("/usr/bin/python3", "/usr", "linux") == "/usr/bin/python3"
    # Windows (OSGeo4W / standalone installer): sys.executable is qgis-bin.exe
    win = tmp_path / "QGIS 3.22" / "apps" / "Python39"
    win.mkdir(parents=True)
    (win / "python.exe").write_bytes(b"")
    py = deps.qgis_python(str(tmp_path / "QGIS 3.22" / "bin" / "qgis-bin.exe"), str(win), "win32")
    assert py == str(win / "python.exe")
    assert deps.pip_command(py, requirement="carl-geo", managed=False) == \
        f'"{win / "python.exe"}" -m pip install carl-geo'
    assert deps.pip_command(py, managed=False).endswith("wheels" + os.sep + "carl_geo-0.1.0-py3-none-any.whl")
    # macOS app bundle: sys.executable is the QGIS program
    mac = tmp_path / "QGIS.app" / "Contents" / "MacOS"
    (mac / "bin").mkdir(parents=True)
    (mac / "bin" / "python3").write_bytes(b"")
    major, minor = sys.version_info[:2]
    assert deps.qgis_python(str(mac / "QGIS"), str(mac), "darwin") == str(mac / "bin" / "python3")
    (mac / "bin" / f"python{major}.{minor}").write_bytes(b"")
    assert deps.qgis_python(str(mac / "QGIS"), str(mac), "darwin") == str(mac / "bin" / f"python{major}.{minor}")
    # Linux QGIS: sys.executable is the first python3 on PATH (here a pyenv shim), not QGIS's Python
    usr = tmp_path / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "bin" / f"python{major}.{minor}").write_bytes(b"")
    usr_python = str(usr / "bin" / f"python{major}.{minor}")
    assert deps.qgis_python("/root/.pyenv/shims/python3", str(usr), "linux") == usr_python
    # Debian's python3 is externally managed (PEP 668): install into the user's site-packages
    assert deps.pip_command("/usr/bin/python3.11", requirement="carl-geo", managed=True) == \
        "/usr/bin/python3.11 -m pip install --user --break-system-packages carl-geo"
    # nothing found: a generic name, never the QGIS program itself
    assert deps.qgis_python("/opt/qgis/bin/qgis", str(tmp_path / "nowhere"), "linux") == "python3"


def test_dependency_status_collects_every_failure(installed_plugin: Any) -> None:
    deps = sys.modules["carl_qgis.deps"]

    def finder(name: str) -> None:
        if name == "torch":
            raise OSError("libtorch_cpu.so: cannot open shared object file")
        if name == "carl_geo":
            raise ModuleNotFoundError("No module named 'carl_geo'")
        deps.find_module(name)

    status = deps.check_dependencies(finder=finder)
    assert not status.ok
    assert [m for m, _ in status.missing] == ["torch", "carl_geo"]
    assert "torch, carl_geo" in status.message and "OSError: libtorch_cpu.so" in status.message
    ok = deps.check_dependencies()
    assert ok.ok and ok.message == ""


def test_update_note_when_the_plugin_carries_another_carl_geo(installed_plugin: Any) -> None:
    deps = sys.modules["carl_qgis.deps"]
    assert deps.bundled_version() == "0.1.0"
    assert deps.update_message() == ""  # the wheel in the ZIP and QGIS's carl_geo agree
    note = deps.update_message(bundled="0.2.0", installed="0.1.0")
    assert "carries carl_geo 0.2.0" in note and "has carl_geo 0.1.0" in note and "Install CARL dependencies" in note


@pytest.mark.skipif(system_python_has_carl_geo(), reason="the system Python has carl_geo installed")
def test_plugin_in_a_qgis_python_without_carl_geo(plugin_zip: Path, tmp_path: Path) -> None:
    """Really missing packages: Debian's own /usr/bin/python3 has QGIS but neither torch nor
    carl_geo. The installed plugin loads, registers its provider, logs one message with the pip
    command for that interpreter, and its algorithms fail with that message."""
    plugins = tmp_path / "profiles" / "default" / "python" / "plugins"
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from qgis.core import QgsApplication, QgsProcessingException
        app = QgsApplication([], False, {str(tmp_path / 'profiles' / 'default')!r})
        QgsApplication.setPrefixPath("/usr", True)
        app.initQgis()
        sys.path += [QgsApplication.pkgDataPath() + "/python", QgsApplication.pkgDataPath() + "/python/plugins"]
        from processing.core.Processing import Processing
        Processing.initialize()
        import processing
        import qgis.utils
        from pyplugin_installer.unzip import unzip
        unzip({str(plugin_zip)!r}, {str(plugins)!r})
        qgis.utils.plugin_paths.append({str(plugins)!r})
        sys.path.insert(0, {str(plugins)!r})
        messages = []
        QgsApplication.messageLog().messageReceived.connect(
            lambda msg, tag, level: messages.append(msg) if tag == "CARL" else None)
        assert qgis.utils.loadPlugin("carl_qgis")
        assert qgis.utils.startProcessingPlugin("carl_qgis")
        provider = QgsApplication.processingRegistry().providerById("carl")
        print("ALGS", sorted(a.id() for a in provider.algorithms()))
        print("SENSOR_OPTIONS", provider.algorithm("segmentraster").parameterDefinition("SENSOR").options())
        print("MESSAGES", len(messages))
        print("MESSAGE", messages[0].replace(chr(10), " | "))
        from osgeo import gdal
        tif = {str(tmp_path / 'input.tif')!r}
        gdal.GetDriverByName("GTiff").Create(tif, 8, 8, 2).FlushCache()
        try:
            processing.run("carl:segmentraster", {{"INPUT": tif, "MODEL": {str(plugin_zip)!r},
                                                   "OUTPUT": "TEMPORARY_OUTPUT"}})
        except QgsProcessingException as e:
            print("RUN_ERROR", str(e).replace(chr(10), " | "))
        print("TORCH_LOADED", "torch" in sys.modules)
        app.exitQgis()
    """)
    proc = subprocess.run([SYSTEM_PYTHON, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines["ALGS"] == ("['carl:downloadweights', 'carl:extractfeatures', 'carl:installdependencies', "
                             "'carl:segmentraster', 'carl:trainfrompolygons']")
    assert lines["SENSOR_OPTIONS"] == "['auto']"
    assert lines["MESSAGES"] == "1"
    flags = "--user --break-system-packages " if system_python_managed() else ""
    command = f"{SYSTEM_PYTHON} -m pip install {flags}{plugins}/carl_qgis/wheels/carl_geo-0.1.0-py3-none-any.whl"
    assert command in lines["MESSAGE"]
    assert "torch" in lines["MESSAGE"] and "carl_geo" in lines["MESSAGE"]
    assert command in lines["RUN_ERROR"] and "Install CARL dependencies" in lines["RUN_ERROR"]
    assert lines["TORCH_LOADED"] == "False"
