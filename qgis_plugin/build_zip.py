"""Build the installable QGIS plugin ZIP: ``dist/carl_qgis-<version>.zip``.

The archive has one top-level folder ``carl_qgis/`` (what "Plugins > Manage and Install Plugins >
Install from ZIP" expects) and no caches or compiled files. The version comes from
``carl_qgis/metadata.txt``. The plugin carries carl_geo itself: a wheel built from this repository
goes to ``carl_qgis/wheels/`` (the "Install CARL dependencies" installer installs it; nothing
depends on a PyPI name).

Usage::

    python qgis_plugin/build_zip.py [--out-dir dist]
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "carl_qgis"
REPO_ROOT = Path(__file__).resolve().parents[1]
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "wheels"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}


def plugin_version(plugin_dir: Path = PLUGIN_DIR) -> str:
    """``version`` of ``metadata.txt``'s ``[general]`` section."""
    meta = configparser.ConfigParser()
    meta.read(plugin_dir / "metadata.txt", encoding="utf-8")
    return meta["general"]["version"]


def plugin_files(plugin_dir: Path = PLUGIN_DIR) -> list[Path]:
    """Files that go into the ZIP, sorted (reproducible archives)."""
    files = []
    for path in sorted(plugin_dir.rglob("*")):
        rel = path.relative_to(plugin_dir)
        if path.is_file() and not EXCLUDED_DIRS.intersection(rel.parts) and path.suffix not in EXCLUDED_SUFFIXES \
                and not path.name.startswith("."):
            files.append(path)
    return files


#: setuptools that builds pyproject.toml (its SPDX ``license`` string needs 77; setuptools 65 failed on it).
MIN_SETUPTOOLS = (77, 0)


def local_setuptools_ok(version: str | None = None) -> bool:
    """True when this Python has setuptools >= :data:`MIN_SETUPTOOLS` (then the wheel builds without network)."""
    if version is None:
        if importlib.util.find_spec("setuptools") is None:
            return False
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            version = dist_version("setuptools")
        except PackageNotFoundError:
            return False
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= MIN_SETUPTOOLS


def build_wheel(out_dir: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Build the carl_geo wheel (``carl_geo-<version>-py3-none-any.whl``, no dependencies bundled)
    into ``out_dir`` and return its path.

    The sources (``pyproject.toml``, ``README.md``, ``carl_geo/``) are copied to a temporary folder
    first, so no stale ``build/`` folder of the repository can slip old files into the wheel. Uses
    this Python's setuptools when it is new enough for the project (:data:`MIN_SETUPTOOLS`, no network); with an
    older one or none, pip builds in an isolated environment with the ``[build-system]`` requirement.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="carl_geo_wheel_") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(repo_root / name, src / name)
        shutil.copytree(repo_root / "carl_geo", src / "carl_geo",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*"))
        built = Path(tmp) / "wheel"
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
               "-w", str(built), str(src)]
        if local_setuptools_ok():
            proc = subprocess.run([*cmd[:4], "--no-build-isolation", *cmd[4:]], capture_output=True, text=True)
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(built.glob("carl_geo-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(f"building the carl_geo wheel failed: {(proc.stderr or proc.stdout)[-2000:]}")
        target = out_dir / wheels[0].name
        shutil.copyfile(wheels[0], target)
    return target


def build_zip(out_dir: Path = REPO_ROOT / "dist", plugin_dir: Path = PLUGIN_DIR, with_wheel: bool = True) -> Path:
    """Write ``<out_dir>/carl_qgis-<version>.zip`` (with the carl_geo wheel in ``carl_qgis/wheels/``
    unless ``with_wheel`` is False) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{plugin_dir.name}-{plugin_version(plugin_dir)}.zip"
    tmp = target.with_name(target.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="carl_qgis_zip_") as wheel_dir:
        extra = {}
        if with_wheel:
            wheel = build_wheel(Path(wheel_dir))
            extra[f"wheels/{wheel.name}"] = wheel
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            entries = [(path.relative_to(plugin_dir).as_posix(), path) for path in plugin_files(plugin_dir)]
            for rel, path in entries + sorted(extra.items()):
                info = zipfile.ZipInfo(f"{plugin_dir.name}/{rel}", date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes())
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "dist", help="folder for the ZIP (default: dist/)")
    parser.add_argument("--no-wheel", action="store_true", help="leave the carl_geo wheel out (development only)")
    args = parser.parse_args(argv)
    path = build_zip(args.out_dir, with_wheel=not args.no_wheel)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
