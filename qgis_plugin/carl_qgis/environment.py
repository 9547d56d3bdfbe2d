"""The plugin-private Python environment that "Install CARL dependencies" fills.

Layout of the base folder (``<QGIS profile>/carl_qgis``, or ``$CARL_QGIS_ENV_DIR``)::

    envs/py311-20260101T120000/   a venv made with QGIS's own Python (its site-packages hold
                                  torch, carl_geo, ...); it also sees QGIS's own packages
    current.json                  which env is active (written last, atomically)
    logs/install-<time>.log       one log per installation

An installation builds a new env next to the active one and switches ``current.json`` only
after the new env imported torch and carl_geo, so a cancelled or failed installation leaves the
previous state working. :func:`activate` (called when QGIS loads the plugin) puts the active
env's site-packages in front of ``sys.path``; no path is ever edited by hand.

Imports nothing from QGIS at module level.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sys
from pathlib import Path
from typing import Any

ENV_DIR_VARIABLE = "CARL_QGIS_ENV_DIR"
CURRENT_FILE = "current.json"


def base_dir() -> Path:
    """``$CARL_QGIS_ENV_DIR``, else ``<QGIS profile folder>/carl_qgis`` (else ``~/.carl_qgis``)."""
    env = os.environ.get(ENV_DIR_VARIABLE)
    if env:
        return Path(env).expanduser()
    try:
        from qgis.core import QgsApplication

        profile = QgsApplication.qgisSettingsDirPath()
    except Exception:  # noqa: BLE001 - outside QGIS
        profile = ""
    return Path(profile) / "carl_qgis" if profile else Path.home() / ".carl_qgis"


def python_tag(version: tuple[int, int] | None = None) -> str:
    """``py311`` for Python 3.11: envs are only used by the Python version that built them."""
    major, minor = version or sys.version_info[:2]
    return f"py{major}{minor}"


def site_packages(env: Path, windows: bool | None = None, version: tuple[int, int] | None = None) -> Path:
    """The site-packages folder of a venv."""
    windows = sys.platform.startswith("win") if windows is None else windows
    if windows:
        return env / "Lib" / "site-packages"
    major, minor = version or sys.version_info[:2]
    return env / "lib" / f"python{major}.{minor}" / "site-packages"


def env_python(env: Path, windows: bool | None = None) -> Path:
    """The interpreter of a venv."""
    windows = sys.platform.startswith("win") if windows is None else windows
    return env / "Scripts" / "python.exe" if windows else env / "bin" / "python"


def read_current(base: Path | None = None) -> dict[str, Any]:
    """The record of the active env (``{}`` when nothing was installed)."""
    base = base or base_dir()
    try:
        data = json.loads((base / CURRENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_current(base: Path, record: dict[str, Any]) -> None:
    """Make ``record["env"]`` the active env (atomic replace of ``current.json``)."""
    tmp = base / (CURRENT_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, base / CURRENT_FILE)


def current_env(base: Path | None = None) -> Path | None:
    """The active env folder, if one was installed for this Python version and still exists."""
    base = base or base_dir()
    name = read_current(base).get("env")
    if not name or not str(name).startswith(python_tag() + "-"):
        return None
    env = base / "envs" / name
    return env if site_packages(env).is_dir() else None


def activate(base: Path | None = None) -> Path | None:
    """Put the active env's site-packages at the front of ``sys.path`` (its ``.pth`` files are
    processed, as for any site folder) and drop an earlier env's. Returns the folder, or None when
    nothing is installed. Safe to call repeatedly."""
    base = base or base_dir()
    env = current_env(base)
    envs_root = str((base / "envs").resolve())
    stale = [p for p in sys.path if p and os.path.abspath(p).startswith(envs_root + os.sep)]
    target = str(site_packages(env).resolve()) if env is not None else None
    for p in stale:
        if p != target:
            sys.path.remove(p)
    if target is None:
        return None
    if target not in sys.path:
        before = list(sys.path)
        site.addsitedir(target)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = added + before
    import importlib

    importlib.invalidate_caches()
    return Path(target)


def remove_unused_envs(base: Path | None = None, min_age_s: float = 0.0) -> list[Path]:
    """Delete env folders other than the active one (left by earlier installations or a crash) that
    were last changed at least ``min_age_s`` seconds ago (an installation running in another QGIS
    keeps its folder). Folders that cannot be deleted now (files in use on Windows) are kept for
    the next time."""
    import time

    base = base or base_dir()
    keep = read_current(base).get("env")
    removed = []
    root = base / "envs"
    if not root.is_dir():
        return removed
    for env in root.iterdir():
        if env.name != keep and env.is_dir() and time.time() - env.stat().st_mtime >= min_age_s:
            shutil.rmtree(env, ignore_errors=True)
            if not env.exists():
                removed.append(env)
    return removed
