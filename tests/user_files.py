"""Small files for the "nothing the user owns is lost" tests (issue #20): a 4-band GeoTIFF with
wavelength metadata, a tiny CARL segmentation model file, file fingerprints and a CLI runner that
returns exit code and stderr lines."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import write_raster

WAVELENGTHS = (0.49, 0.56, 0.665, 0.842)


def write_scene(path: Path, data: np.ndarray | None = None, dtype: str = "uint16", nodata: float | None = 0,
                seed: int = 0) -> Path:
    """A (4, 40, 56) GeoTIFF (UTM 33N, 20 m) with CENTRAL_WAVELENGTH_UM band metadata."""
    if data is None:
        data = np.random.default_rng(seed).integers(500, 4000, size=(4, 40, 56))
    data = np.asarray(data)
    return write_raster(path, data, dtype=dtype, crs="EPSG:32633", origin=(400000.0, 5500000.0), res=20.0,
                        nodata=nodata, wavelengths=WAVELENGTHS[:data.shape[0]], tiled=False)


def save_model(path: Path, class_names: Sequence[str] = ("field", "road"), class_values: Sequence[int] | None = None,
               normalization: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A tiny CARL segmentation bundle (random weights)."""
    import torch

    import carl_geo

    torch.manual_seed(seed)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), len(class_names))
    bundle = carl_geo.make_bundle(seg, class_names=class_names, class_values=class_values,
                                  normalization=normalization)
    return carl_geo.save_bundle(bundle, path)


def fingerprint(path: Path) -> str:
    """md5 of the file's bytes ("missing" when there is none)."""
    path = Path(path)
    return hashlib.md5(path.read_bytes()).hexdigest() if path.exists() else "missing"


def run_cli(argv: Sequence[Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """``carl-geo ARGV`` in this process: (exit code, non-empty stderr lines, stdout)."""
    from carl_geo.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, [line for line in out.err.splitlines() if line.strip()], out.out


def partial_files(folder: Path) -> list[str]:
    """Temporary files carl_geo's writers leave behind if they fail to clean up."""
    return sorted(p.name for p in Path(folder).rglob("*") if ".partial" in p.name)
