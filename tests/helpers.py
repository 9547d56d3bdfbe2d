"""What many tests need, in one place: a GeoTIFF writer and a micro CARL backbone.

Import as ``from helpers import write_raster, MICRO_BACKBONE`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]

#: a very small CARL (upstream ``model_kwargs`` layout) so that SSL runs take seconds on a CPU
MICRO_BACKBONE = {"patch_size": 8,
                  "spec_encoder_kwargs": {"embed_dim": 32, "depth": 2, "num_heads": 2, "n_queries": 2,
                                          "layer_scale": 1.0},
                  "spat_encoder_kwargs": {"model_name": "eva02_base_patch14_224", "depth": 1,
                                          "model_kwargs": {"embed_dim": 64, "num_heads": 2}}}
#: the matching small SSL predictor (spectral and spatial)
MICRO_PREDICTOR = {"predictor_embed_dim": 32, "depth": 1, "num_heads": 2}


def reference_dir() -> Path | None:
    """``$CARL_REFERENCE_DIR`` or ``../shared/carl_reference`` beside the project, if present."""
    env = os.environ.get("CARL_REFERENCE_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "carl_reference"
    return path if path.is_dir() else None


def micro_config() -> Any:
    """:data:`MICRO_BACKBONE` as a :class:`carl_geo.CARLConfig`."""
    from carl_geo.models.config import CARLConfig

    return CARLConfig.from_upstream(MICRO_BACKBONE)


def write_raster(path: Path, data: np.ndarray, *, crs: str = "EPSG:32632", res: float = 10.0,
                 origin: tuple[float, float] = (600000.0, 5200000.0), transform: Any = None,
                 nodata: float | None = None, dtype: str | None = None, descriptions: Sequence[str] | None = None,
                 wavelengths: Sequence[float] | None = None, tiled: bool = True) -> Path:
    """Write (C, H, W) ``data`` as a GeoTIFF and return ``path``.

    Args:
        crs: the CRS; ``"EPSG:4326"`` gets a 0.0001 degree grid at (11 E, 48 N) unless ``transform`` is given.
        res, origin: pixel size and upper-left corner in CRS units (when ``transform`` is None).
        nodata: the file's nodata value.
        dtype: file dtype (default: ``data``'s).
        descriptions: band descriptions (e.g. ``["B02", "B03"]``).
        wavelengths: band centres (µm) written as GDAL ``IMAGERY`` ``CENTRAL_WAVELENGTH_UM``.
        tiled: 64 x 64 blocks (else GDAL's strips).
    """
    data = np.asarray(data)
    c, h, w = data.shape
    if transform is None:
        transform = from_origin(11.0, 48.0, 0.0001, 0.0001) if crs == "EPSG:4326" else from_origin(*origin, res, res)
    dtype = dtype or data.dtype.name
    blocks = {"tiled": True, "blockxsize": 64, "blockysize": 64} if tiled else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype=dtype, crs=crs,
                       transform=transform, nodata=nodata, **blocks) as dst:
        dst.write(data.astype(dtype, copy=False))
        for b, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(b, d)
        for b, wl in enumerate(wavelengths or [], start=1):
            dst.update_tags(b, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=str(wl))
    return path
