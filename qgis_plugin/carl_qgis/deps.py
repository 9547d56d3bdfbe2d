"""Dependency check: are carl_geo and torch installed in QGIS's Python?

QGIS ships its own Python without PyTorch. When ``carl_geo`` or ``torch`` cannot be imported the
plugin shows one message that points to "Install CARL dependencies" (menu, message bar button,
Processing algorithm: no terminal needed; see :mod:`carl_qgis.installer`) and, for people who
prefer a terminal, the exact ``pip`` command for the Python that QGIS runs with the carl_geo
wheel bundled in the plugin (on Windows and macOS ``sys.executable`` is the QGIS program, not
Python, so the interpreter is derived from ``sys.exec_prefix``).

This module imports nothing from QGIS or carl_geo at import time, so it is safe to import
from ``classFactory`` whatever is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Modules the algorithms import (in this order: a missing torch explains a failing carl_geo).
REQUIRED_MODULES: tuple[str, ...] = ("numpy", "torch", "rasterio", "carl_geo")
#: The pip requirement that brings all of them when the plugin carries no wheel (a source checkout).
PIP_REQUIREMENT = "carl-geo"
#: Where the plugin ZIP carries the carl_geo wheel (qgis_plugin/build_zip.py).
WHEELS_DIR = Path(__file__).with_name("wheels")
#: How to install without a terminal.
INSTALL_HINT = ("Install them from the QGIS menu Plugins > CARL > Install CARL dependencies... (or run the "
                "Processing algorithm CARL > Install CARL dependencies); no terminal is needed.")
#: Oldest Python carl-geo supports (pyproject's requires-python).
MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class DependencyStatus:
    """Result of :func:`check_dependencies`.

    Attributes:
        ok: every module in :data:`REQUIRED_MODULES` imported.
        missing: ``(module, reason)`` pairs for those that did not.
        python: the Python interpreter QGIS runs (for the pip command).
    """

    ok: bool
    missing: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    python: str = ""

    @property
    def pip_command(self) -> str:
        """The command that installs carl_geo (and torch) into QGIS's Python."""
        return pip_command(self.python)

    @property
    def message(self) -> str:
        """One human-readable paragraph; empty when everything is installed."""
        if self.ok:
            return ""
        names = ", ".join(name for name, _ in self.missing)
        first_reason = self.missing[0][1]
        if sys.version_info[:2] < MIN_PYTHON:
            have = ".".join(map(str, sys.version_info[:2]))
            need = ".".join(map(str, MIN_PYTHON))
            return (
                f"CARL plugin: the Python packages it needs are not installed ({names}), and they need Python "
                f"{need} or newer while this QGIS runs Python {have}. Install a QGIS release whose Python is "
                f"{need} or newer (Help > About shows it), then run:\n{self.pip_command}"
            )
        return (
            f"CARL plugin: the Python packages it needs are not installed in QGIS's Python ({names}; "
            f"{first_reason}). {INSTALL_HINT} Or, in a terminal (on Windows: the OSGeo4W Shell), run this "
            f"and restart QGIS:\n{self.pip_command}"
        )


def _inside(path: str, folder: str, windows: bool) -> bool:
    """``path`` lies under ``folder`` (symlinks not resolved: a venv's python is a link)."""
    if not path or not folder:
        return False
    if windows:
        p, root = path.replace("/", "\\").lower(), folder.replace("/", "\\").lower().rstrip("\\") + "\\"
    else:
        p, root = os.path.abspath(path), os.path.abspath(folder).rstrip("/") + "/"
    return p.startswith(root)


def qgis_python(executable: str | None = None, exec_prefix: str | None = None,
                platform: str | None = None) -> str:
    """Path of the Python interpreter behind the running QGIS.

    ``sys.executable`` is used when it is a Python inside ``sys.exec_prefix`` (a plain Python, a
    venv, tests). Inside the QGIS program it is ``qgis-bin.exe`` (Windows), the ``QGIS`` program
    (macOS) or whatever ``python3`` comes first on PATH (Linux, e.g. a pyenv shim: not QGIS's
    Python); then the interpreter is looked up under ``sys.exec_prefix`` (e.g.
    ``C:\\OSGeo4W\\apps\\Python312\\python.exe``, ``QGIS.app/Contents/MacOS/bin/python3``,
    ``/usr/bin/python3.11``). Falls back to ``python3`` (``python`` on Windows).
    """
    executable = sys.executable if executable is None else executable
    exec_prefix = sys.exec_prefix if exec_prefix is None else exec_prefix
    platform = sys.platform if platform is None else platform
    windows = platform.startswith("win")
    name = (executable.replace("\\", "/").rsplit("/", 1)[-1]).lower()
    if name.startswith("python") and _inside(executable, exec_prefix, windows):
        return executable
    prefix = Path(exec_prefix)
    major, minor = sys.version_info[:2]
    if windows:
        candidates = [prefix / "python.exe", prefix / "python3.exe"]
    else:
        candidates = [prefix / "bin" / f"python{major}.{minor}", prefix / "bin" / "python3",
                      prefix / "bin" / "python"]
    for cand in candidates:
        if cand.is_file():
            return str(cand)
    if windows:
        return str(candidates[0]) if exec_prefix else "python"
    return "python3"


def externally_managed() -> bool:
    """True for a distribution's own Python that refuses plain ``pip install`` (PEP 668, e.g.
    Debian's and Ubuntu's python3, which their QGIS packages use); False inside a venv."""
    if sys.prefix != sys.base_prefix:
        return False
    return (Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").is_file()


def pip_requirement(folder: Path = WHEELS_DIR) -> str:
    """The carl_geo wheel bundled with the plugin (quoted when its path has spaces), else
    :data:`PIP_REQUIREMENT`."""
    wheels = sorted(folder.glob("carl_geo-*.whl")) if folder.is_dir() else []
    if not wheels:
        return PIP_REQUIREMENT
    path = str(wheels[-1])
    return f'"{path}"' if " " in path else path


def bundled_version(folder: Path = WHEELS_DIR) -> str | None:
    """Version of the carl_geo wheel the plugin carries (from its file name), or None."""
    wheels = sorted(folder.glob("carl_geo-*.whl")) if folder.is_dir() else []
    return wheels[-1].name.split("-")[1] if wheels else None


def update_message(bundled: str | None = None, installed: str | None = None) -> str:
    """A note when the plugin carries another carl_geo version than the one QGIS's Python has (the
    plugin was updated; the private environment was not). Empty when they agree or one is unknown."""
    bundled = bundled if bundled is not None else bundled_version()
    if installed is None:
        try:
            from importlib.metadata import PackageNotFoundError, version

            installed = version("carl-geo")
        except (ImportError, PackageNotFoundError):
            installed = None
    if not bundled or not installed or bundled == installed:
        return ""
    return (f"CARL plugin: it carries carl_geo {bundled} but QGIS's Python has carl_geo {installed}. Run Plugins > "
            "CARL > Install CARL dependencies... to update it.")


def pip_command(python: str | None = None, requirement: str | None = None,
                managed: bool | None = None) -> str:
    """``"<qgis python>" -m pip install <requirement>`` (quoted when the path has spaces; default
    requirement: :func:`pip_requirement`). For an externally managed system Python (``managed``,
    default: :func:`externally_managed`) the packages go to the user's site-packages:
    ``--user --break-system-packages``."""
    requirement = requirement or pip_requirement()
    python = python or qgis_python()
    managed = externally_managed() if managed is None else managed
    quoted = f'"{python}"' if (" " in python or "\\" in python) else python
    flags = "--user --break-system-packages " if managed else ""
    return f"{quoted} -m pip install {flags}{requirement}"


def find_module(name: str) -> None:
    """Raise ModuleNotFoundError unless ``name`` is installed where the heavy work runs: in the Python of the
    worker process (:func:`carl_qgis.child.worker_python`; asked once, a fraction of a second, nothing imported),
    or in QGIS's own Python when that Python is the worker's. Never imports the module (``import carl_geo`` loads
    torch, which must not enter QGIS's process)."""
    found = worker_modules().get(name)
    if found is None:
        found = importlib.util.find_spec(name) is not None
    if not found:
        raise ModuleNotFoundError(f"No module named {name!r}")


_worker_modules: dict[str, bool] | None = None

FIND_CODE = ("import importlib.util, json, sys; "
             "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))")


def worker_modules(modules: Sequence[str] = REQUIRED_MODULES) -> dict[str, bool]:
    """Which of ``modules`` the worker's Python has (``{}`` when it cannot be asked: then QGIS's own Python is
    checked). Cached per session (:func:`reset`)."""
    global _worker_modules
    if _worker_modules is None:
        import json
        import subprocess

        from carl_qgis.child import child_environment, worker_python

        try:
            out = subprocess.run([worker_python(), "-c", FIND_CODE, *modules], capture_output=True, text=True,
                                 timeout=60, env=child_environment(), cwd=os.path.expanduser("~"),
                                 creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
            _worker_modules = {k: bool(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()} \
                if out.returncode == 0 and out.stdout.strip() else {}
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            _worker_modules = {}
    return _worker_modules


def check_dependencies(modules: Sequence[str] = REQUIRED_MODULES,
                       finder: Callable[[str], object] = find_module) -> DependencyStatus:
    """Check that each module is installed (``finder`` raises if not); collect every failure.

    A module that is installed but broken is reported when an algorithm imports it
    (:func:`carl_qgis.algorithms.base.import_carl`), with the same pip command.
    """
    missing: list[tuple[str, str]] = []
    for name in modules:
        try:
            finder(name)
        except Exception as e:  # noqa: BLE001 - report every failure, never crash QGIS
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            missing.append((name, reason))
    return DependencyStatus(ok=not missing, missing=tuple(missing), python=qgis_python())


_status: DependencyStatus | None = None


def status(refresh: bool = False) -> DependencyStatus:
    """Cached :func:`check_dependencies` (the check runs once per QGIS session)."""
    global _status
    if _status is None or refresh:
        _status = check_dependencies()
    return _status


def reset() -> None:
    """Forget the cached status (tests; after the user installed the packages)."""
    global _status, _worker_modules
    _status = None
    _worker_modules = None

