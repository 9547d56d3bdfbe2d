"""Build the installable QGIS plugin ZIP: ``dist/carl_qgis-<version>.zip``.

The archive has one top-level folder ``carl_qgis/`` (what "Plugins > Manage and Install Plugins >
Install from ZIP" expects) and no caches or compiled files. The version comes from
``carl_qgis/metadata.txt``.

Usage::

    python qgis_plugin/build_zip.py [--out-dir dist]
"""

from __future__ import annotations

import argparse
import configparser
import zipfile
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent / "carl_qgis"
REPO_ROOT = Path(__file__).resolve().parents[1]
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
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


def build_zip(out_dir: Path = REPO_ROOT / "dist", plugin_dir: Path = PLUGIN_DIR) -> Path:
    """Write ``<out_dir>/carl_qgis-<version>.zip`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{plugin_dir.name}-{plugin_version(plugin_dir)}.zip"
    tmp = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in plugin_files(plugin_dir):
            arcname = f"{plugin_dir.name}/{path.relative_to(plugin_dir).as_posix()}"
            info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "dist", help="folder for the ZIP (default: dist/)")
    args = parser.parse_args(argv)
    path = build_zip(args.out_dir)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
