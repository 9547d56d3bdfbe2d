"""Default tile size / overlap: little recomputation, fitted tile extents, and no seams with CARL."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import carl_geo
from carl_geo.inference import predict_raster
from carl_geo.inference.settings import PredictSettings
from carl_geo.inference.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, TileGrid, axis_starts
from carl_geo.inference.xarray_predict import DATAARRAY_DEFAULTS
from helpers import write_raster
from test_predictor import WL4, smooth_image


@pytest.mark.parametrize("size", [4096, 10980, 2000])
def test_defaults_compute_at_most_1_3_pixels_per_raster_pixel(size: int) -> None:
    grid = TileGrid.build(size, size, DEFAULT_TILE_SIZE, DEFAULT_OVERLAP)
    ratio = grid.n_tiles * grid.tile_h * grid.tile_w / size**2
    assert ratio <= 1.3, ratio
    # the former defaults (256, 64) computed 1.89 px per raster px at 4096
    old = TileGrid.build(4096, 4096, 256, 64)
    assert old.n_tiles * old.tile_h * old.tile_w / 4096**2 == pytest.approx(1.891, abs=1e-3)


@pytest.mark.parametrize(("tile", "overlap"), [(256, 16), (256, 64), (64, 16), (100, 30), (512, 32)])
def test_fitted_tiles_cover_each_axis_with_the_overlap(tile: int, overlap: int) -> None:
    pad = overlap // 2
    for length in list(range(1, 700, 7)) + [4096, 10980]:
        extent, starts = axis_starts(length, tile, overlap, pad)
        assert extent <= max(tile, 0) or len(starts) == 1
        assert starts[0] == -pad and starts[-1] + extent == length + pad
        shared = [extent - (b - a) for a, b in zip(starts, starts[1:])]
        assert all(s >= overlap for s in shared), (length, extent, starts)
        if len(starts) > 1:  # no tile could be dropped: the fewest full-size tiles
            assert len(starts) == -(-(length + 2 * pad - overlap) // (tile - overlap))
            assert extent == tile or extent % 8 == 0


def test_cli_and_qgis_defaults_equal_the_library_constants() -> None:
    from carl_geo.inference.cli import register

    sub = argparse.ArgumentParser().add_subparsers()
    p = register(sub)
    args = p.parse_args(["a.tif", "b.tif", "--model", "m.pt"])
    assert (args.tile_size, args.overlap) == (None, None)  # None: from the model's patch size
    settings = PredictSettings()
    assert (settings.tile_size, settings.overlap) == (None, None)
    assert settings.tiling() == settings.tiling(8) == (DEFAULT_TILE_SIZE, DEFAULT_OVERLAP) == (256, 16)
    assert settings.tiling(2) == (64, 4) and settings.tiling(4) == (128, 8)
    assert PredictSettings(tile_size=512).tiling(2) == (512, 4)
    assert DATAARRAY_DEFAULTS.replace(device="auto") == settings  # predict_dataarray: same, but on the CPU
    # the QGIS plugin reads them from PredictSettings (tests/qgis/test_precision.py checks its parameters)


def test_small_patch_models_predict_on_proportional_tiles(tmp_path: Path) -> None:
    """A polygon-trained model with 2 px patches gets 64 px tiles: the same 32 x 32 tokens per tile
    (and attention cost per pixel) as CARL's 256 px tiles at patch 8."""
    from carl_geo.inference.settings import model_patch_size

    cfg = carl_geo.tiny_config()
    cfg.patch_size = 2
    cfg.spatial.model_kwargs.update(use_abs_pos_emb=False, use_rot_pos_emb=False)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(cfg), 3, "linear").eval()
    bundle = carl_geo.make_bundle(seg, class_names=["a", "b", "c"], wavelengths=WL4)
    assert model_patch_size(seg) == model_patch_size(bundle) == 2 and model_patch_size(object()) is None
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 150, 150))
    res = predict_raster(bundle, src, tmp_path / "out.tif", device="cpu")
    with rasterio.open(res.path) as out:
        import json

        assert json.loads(out.tags()["CARL_TILING"]) == {"tile_size": 64, "overlap": 4}


def _column_jumps(prob: np.ndarray) -> np.ndarray:
    """Mean |p(x + 1) - p(x)| over bands and rows, per column gap: a seam is a spike."""
    return np.abs(np.diff(prob.astype(np.float64), axis=2)).mean(axis=(0, 1))


def test_default_tiling_has_no_seams_with_carl(tmp_path: Path) -> None:
    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 4).eval()
    h, w = 96, 600
    data = smooth_image(4, h, w)
    src = write_raster(tmp_path / "in.tif", data)
    res = predict_raster(seg, src, tmp_path / "p.tif", output="probabilities", wavelengths=WL4, device="cpu",
                         normalization=(2000.0, 500.0))
    grid = TileGrid.build(h, w, DEFAULT_TILE_SIZE, DEFAULT_OVERLAP)
    assert res.tiles == grid.n_tiles == 3
    with rasterio.open(res.path) as ds:
        blended = _column_jumps(ds.read())

    # the same tiles mosaicked without blending (each pixel from the last tile covering it)
    x = torch.from_numpy((data.astype(np.float32) - 2000.0) / (500.0 + 1e-6))
    x = torch.nn.functional.pad(x[None], (grid.pad,) * 4, mode="reflect")[0]
    hard = np.zeros((4, h, w), np.float32)
    with torch.no_grad():
        for x0 in grid.col_starts:
            y0 = grid.row_starts[0]
            t = x[:, y0 + grid.pad:y0 + grid.pad + grid.tile_h, x0 + grid.pad:x0 + grid.pad + grid.tile_w]
            p = torch.softmax(seg(t[None], torch.tensor(WL4)), 1)[0].numpy()
            a, b = max(0, x0), min(w, x0 + grid.tile_w)
            hard[:, :, a:b] = p[:, -y0:-y0 + h, a - x0:b - x0]
    hard_jumps = _column_jumps(hard)
    seams = [x0 - 1 for x0 in grid.col_starts[1:]]  # the gap before each later tile's first column
    assert hard_jumps[seams].max() > 5 * np.median(hard_jumps)  # the test can see a seam
    assert blended.max() < 2.5 * np.median(blended), (blended.max(), np.median(blended))
