"""The tiled georeferenced predictor on real GeoTIFFs written by the tests."""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.io
import torch
from rasterio.errors import NotGeoreferencedWarning
from torch import nn

import carl_geo
from carl_geo.inference import PredictionCancelled, predict_raster
from carl_geo.inference.engine import EMIT_ROWS
from carl_geo.inference.tiling import TileGrid, axis_starts, blend_window_1d, reflect_fill
from helpers import write_raster

WL4 = [0.49, 0.56, 0.665, 0.842]


class Pointwise(nn.Module):
    """A per-pixel model (1x1 convolution): the single-pass result is well defined."""

    def __init__(self, c: int = 4, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(c, k, 1)

    def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        assert wavelengths.shape == (img.shape[1],)
        return self.conv(img)


class Context(nn.Module):
    """A 5x5 convolution with zero padding: wrong within 2 px of every tile edge, so a tiled run
    without smooth blending would show seams."""

    def __init__(self, c: int = 4, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(c, k, 5, padding=2)

    def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        return self.conv(img)


def smooth_image(c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth uint16 reflectance-like bands (sums of low-frequency waves)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    bands = []
    for _ in range(c):
        fy, fx, py, px = rng.uniform(0.01, 0.05, 2).tolist() + rng.uniform(0, 6, 2).tolist()
        bands.append(2000 + 800 * np.sin(fy * y + py) * np.cos(fx * x + px) + 300 * rng.uniform())
    return np.stack(bands).astype("uint16")


def reference(model: nn.Module, data: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Single pass on the whole (C, H, W) raster -> softmax (K, H, W)."""
    x = torch.from_numpy((data.astype(np.float32) - mean) / (std + 1e-6))[None]
    with torch.no_grad():
        return torch.softmax(model(x, torch.tensor(WL4)), 1)[0].numpy()


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ---------------------------------------------------------------- tiling


def test_tile_grid_covers_raster_and_window_is_positive() -> None:
    for length in (1, 37, 64, 200, 257, 1000):
        extent, starts = axis_starts(length, 64, 16, 8)
        assert starts[0] == -8 and starts[-1] + extent == length + 8
        assert all(0 < b - a <= 64 - 16 for a, b in zip(starts, starts[1:]))
    w = blend_window_1d(64, 16)
    assert w.min() > 0 and w[0] == pytest.approx(w[-1]) and w[32] == 1.0
    # two tiles overlapping by exactly `overlap` px: weights sum to 1 in the overlap
    assert np.allclose(w[-16:] + w[:16], 1.0, atol=1e-6)
    grid = TileGrid.build(20, 13, 64, 16)  # smaller than one tile: one tile of the padded size
    assert grid.n_tiles == 1 and (grid.tile_h, grid.tile_w) == (36, 29)


@pytest.mark.parametrize(("h", "w", "top", "left", "big_h", "big_w"), [
    (5, 7, 2, 3, 12, 15), (2, 2, 6, 6, 16, 17), (1, 4, 3, 2, 8, 9), (40, 50, 0, 0, 40, 50)])
def test_reflect_fill_matches_numpy_pad(h, w, top, left, big_h, big_w) -> None:
    data = np.random.default_rng(0).random((2, h, w)).astype("float32")
    buf = np.full((2, big_h, big_w), -1.0, dtype="float32")
    buf[:, top:top + h, left:left + w] = data
    reflect_fill(buf, top, left, h, w)
    ref = np.pad(data, ((0, 0), (0, 0), (left, big_w - w - left)), mode="reflect" if w > 1 else "edge")
    ref = np.pad(ref, ((0, 0), (top, big_h - h - top), (0, 0)), mode="reflect" if h > 1 else "edge")
    np.testing.assert_array_equal(buf, ref)


# ---------------------------------------------------------------- georeferencing, shapes, blending


@pytest.mark.parametrize("crs", ["EPSG:32632", "EPSG:4326"])
def test_grid_preserved_and_tiled_equals_single_pass(tmp_path: Path, crs: str) -> None:
    data = smooth_image(4, 157, 203)  # not a multiple of the tile size
    src = write_raster(tmp_path / "in.tif", data, crs=crs)
    model = Pointwise()
    res = predict_raster(model, src, tmp_path / "p.tif", output="probabilities", wavelengths=WL4,
                         tile_size=64, overlap=16, batch_size=3, device="cpu")
    with rasterio.open(src) as a, rasterio.open(res.path) as b:
        assert b.crs == a.crs and b.crs.to_string() == crs
        assert b.transform == a.transform
        assert (b.width, b.height, b.count) == (203, 157, 3)
        assert b.dtypes[0] == "float32" and b.block_shapes[0] == (256, 256) and b.compression.name == "deflate"
        prob = b.read()
    assert res.crs == crs and res.tiles == TileGrid.build(157, 203, 64, 16).n_tiles > 9
    np.testing.assert_allclose(prob, reference(model, data, res.mean, res.std), atol=2e-6)
    # scene statistics of a small raster: every pixel sampled once
    assert res.mean == pytest.approx(data.mean(), rel=1e-9) and res.std == pytest.approx(data.std(), rel=1e-6)


def test_smooth_blending_has_no_seams(tmp_path: Path) -> None:
    data = smooth_image(4, 150, 170)
    src = write_raster(tmp_path / "in.tif", data)
    model = Context()
    tiled = predict_raster(model, src, tmp_path / "t.tif", output="probabilities", wavelengths=WL4,
                           tile_size=64, overlap=24, device="cpu", normalization=(2000.0, 500.0))
    single = predict_raster(model, src, tmp_path / "s.tif", output="probabilities", wavelengths=WL4,
                            tile_size=256, overlap=24, device="cpu", normalization=(2000.0, 500.0))
    assert single.tiles == 1 and tiled.tiles > 9
    with rasterio.open(tiled.path) as a, rasterio.open(single.path) as b:
        pa, pb = a.read(), b.read()
    err = np.abs(pa - pb).max()
    # the zero padding corrupts 2 px at each tile edge; the cosine window weights them < 0.02
    assert err < 0.01, err
    # a hard mosaic (no blending) of the same tiles has visible seams
    hard = np.abs(reference_tiles_hard(model, data, 64, 24) - pb).max()
    assert hard > 5 * err


def reference_tiles_hard(model: nn.Module, data: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """Same tiles, each pixel from the last tile covering it (no blending): seams."""
    x = torch.from_numpy((data.astype(np.float32) - 2000.0) / (500.0 + 1e-6))
    x = torch.nn.functional.pad(x[None], (overlap // 2,) * 4, mode="reflect")[0]
    grid = TileGrid.build(data.shape[1], data.shape[2], tile, overlap)
    out = np.zeros((3,) + data.shape[1:], np.float32)
    p = grid.pad
    with torch.no_grad():
        for y0 in grid.row_starts:
            for x0 in grid.col_starts:
                t = x[:, y0 + p:y0 + p + tile, x0 + p:x0 + p + tile]
                pr = torch.softmax(model(t[None], torch.tensor(WL4)), 1)[0].numpy()
                ys, xs = max(0, y0), max(0, x0)
                ye, xe = min(data.shape[1], y0 + tile), min(data.shape[2], x0 + tile)
                out[:, ys:ye, xs:xe] = pr[:, ys - y0:ye - y0, xs - x0:xe - x0]
    return out


def test_raster_smaller_than_one_tile(tmp_path: Path) -> None:
    data = smooth_image(4, 13, 20)
    src = write_raster(tmp_path / "small.tif", data)
    model = Pointwise()
    res = predict_raster(model, src, tmp_path / "o.tif", output="probabilities", wavelengths=WL4, device="cpu")
    assert res.tiles == 1
    with rasterio.open(res.path) as b:
        assert (b.width, b.height) == (20, 13)
        np.testing.assert_allclose(b.read(), reference(model, data, res.mean, res.std), atol=2e-6)


# ---------------------------------------------------------------- output types


def test_classes_colour_table_and_names(tmp_path: Path) -> None:
    data = smooth_image(4, 70, 90)
    src = write_raster(tmp_path / "in.tif", data)
    model = Pointwise(k=3)
    names, colors = ["water", "forest", "urban"], [(0, 0, 255), (0, 128, 0), (200, 0, 0)]
    res = predict_raster(model, src, tmp_path / "c.tif", wavelengths=WL4, class_names=names, colors=colors,
                         tile_size=64, overlap=16, device="cpu")
    with rasterio.open(res.path) as b:
        assert b.dtypes == ("uint8",) and b.nodata == 255 and b.count == 1
        cmap = b.colormap(1)
        assert [cmap[i][:3] for i in range(3)] == colors and cmap[255] == (0, 0, 0, 0)
        tags = b.tags()
        assert json.loads(tags["CLASS_NAMES"]) == names and tags["CLASS_1"] == "forest"
        assert json.loads(tags["CARL_WAVELENGTHS_UM"]) == WL4
        classes = b.read(1)
    expected = reference(model, data, res.mean, res.std).argmax(0)
    assert (classes == expected).mean() > 0.999


def test_many_classes_use_uint16(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 30, 40))
    res = predict_raster(Pointwise(k=300), src, tmp_path / "c.tif", wavelengths=WL4, device="cpu")
    with rasterio.open(res.path) as b:
        assert b.dtypes == ("uint16",) and b.nodata == 65535
        assert json.loads(b.tags()["CLASS_NAMES"])[299] == "class 299"
        assert b.read(1).max() < 300


def test_uint8_probabilities_and_float16_embeddings(tmp_path: Path) -> None:
    data = smooth_image(4, 50, 60)
    src = write_raster(tmp_path / "in.tif", data)
    model = Pointwise(k=3)
    res = predict_raster(model, src, tmp_path / "p8.tif", output="probabilities", probability_dtype="uint8",
                         wavelengths=WL4, tile_size=32, overlap=8, device="cpu")
    with rasterio.open(res.path) as b:
        assert b.dtypes[0] == "uint8" and b.nodata == 255 and b.scales[0] == pytest.approx(1 / 254)
        p = b.read().astype(np.float64) / 254
    np.testing.assert_allclose(p, reference(model, data, res.mean, res.std), atol=0.5 / 254 + 1e-6)

    emb = predict_raster(Pointwise(k=5), src, tmp_path / "e.tif", output="embeddings", embedding_dtype="float16",
                         wavelengths=WL4, tile_size=32, overlap=8, device="cpu")
    with rasterio.open(emb.path) as b:
        assert b.count == 5 and b.dtypes[0] == "float16" and b.descriptions[0] == "embedding_000"
        feats = b.read().astype(np.float32)
    x = torch.from_numpy((data.astype(np.float32) - emb.mean) / (emb.std + 1e-6))[None]
    with torch.no_grad():
        ref = Pointwise(k=5)(x, torch.tensor(WL4))[0].numpy()
    np.testing.assert_allclose(feats, ref, atol=2e-3, rtol=2e-3)


def _placed_raster(path: Path, data: np.ndarray, how: str) -> Path:
    """A raster without a map grid, placed by ground control points (``"gcps"``) or by rational polynomial
    coefficients (``"rpcs"``), as raw satellite products and scanned maps are; ``"grid+rpcs"``: a map grid (CRS and
    transform) and RPCs as metadata, as some orthorectified products carry them."""
    from rasterio.control import GroundControlPoint
    from rasterio.rpc import RPC

    c, h, w = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        grid = dict(crs="EPSG:32633", transform=rasterio.transform.from_origin(500000, 5800000, 10, 10)) \
            if how == "grid+rpcs" else {}
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype=data.dtype, **grid) as dst:
            dst.write(data)
            if how == "gcps":
                dst.gcps = ([GroundControlPoint(r, col, 500000 + 10 * col, 5800000 - 10 * r, z=35.0)
                             for r, col in ((0, 0), (0, w), (h, 0), (h, w))], rasterio.crs.CRS.from_epsg(32633))
            else:
                dst.rpcs = RPC(height_off=40.0, height_scale=500.0, lat_off=52.5, lat_scale=0.05,
                               line_den_coeff=[1.0] + [0.0] * 19, line_num_coeff=[0.0, 0.0, -1.0] + [0.0] * 17, line_off=h / 2, line_scale=h / 2,
                               long_off=12.9, long_scale=0.05, samp_den_coeff=[1.0] + [0.0] * 19,
                               samp_num_coeff=[0.0, 1.0] + [0.0] * 18, samp_off=w / 2, samp_scale=w / 2)
    return path


@pytest.mark.parametrize("how", ["gcps", "rpcs", "grid+rpcs"])
def test_an_input_placed_by_control_points_or_rpcs_keeps_them(tmp_path: Path, how: str) -> None:
    """No map grid, no CRS: the output carries the input's ground control points (with their CRS) or its RPCs, so
    that a GIS places (or warps) the map as it places the input; before, the output had neither."""
    src = _placed_raster(tmp_path / "raw.tif", smooth_image(4, 70, 90), how)
    kw = dict(wavelengths=WL4, tile_size=64, overlap=16, device="cpu", class_names=["a", "b", "c"])
    for name, extra in (("plain.tif", {}), ("cog.tif", {"cog": True})):
        res = predict_raster(Pointwise(), src, tmp_path / name, **kw, **extra)
        with rasterio.open(src) as a, rasterio.open(res.path) as b:
            assert b.shape == a.shape and b.crs == a.crs and b.transform == a.transform
            assert (a.crs is None) == (how != "grid+rpcs")
            if how == "gcps":
                assert b.gcps[1] == a.gcps[1] == rasterio.crs.CRS.from_epsg(32633)
                assert [(g.row, g.col, g.x, g.y, g.z) for g in b.gcps[0]] == \
                       [(g.row, g.col, g.x, g.y, g.z) for g in a.gcps[0]] and len(b.gcps[0]) == 4
                assert res.georeferencing == "4 ground control points (EPSG:32633)"
            else:
                got, want = b.rpcs.to_dict(), a.rpcs.to_dict()
                assert got.keys() == want.keys() and want["lat_off"] == 52.5
                for key in want:
                    np.testing.assert_allclose(got[key], want[key], rtol=1e-9, err_msg=key)
                assert res.georeferencing == ("EPSG:32633" if a.crs else "rational polynomial coefficients")


def test_an_input_without_crs_warns_and_names_the_crs_its_metadata_holds(tmp_path: Path) -> None:
    """A raster with neither a CRS nor control points (the netCDF files of xarray-spatial's Sentinel-2 sample: the CRS
    only in a ``crs`` attribute GDAL does not read) maps onto no grid: one warning says so and how to assign it."""
    from carl_geo.errors import CarlGeoWarning
    from carl_geo.io.georeference import crs_named_in_metadata

    data = smooth_image(4, 40, 50)
    src = tmp_path / "nocrs.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(src, "w", driver="GTiff", width=50, height=40, count=4, dtype=data.dtype,
                           transform=rasterio.transform.from_origin(600000, 4700020, 10, 10)) as dst:
            dst.write(data)
            dst.update_tags(**{"band#crs": "+init=epsg:32719", "band#units": "m"})
    kw = dict(wavelengths=WL4, tile_size=32, overlap=8, device="cpu", class_names=["a", "b", "c"])
    with pytest.warns(CarlGeoWarning, match=r"nocrs.tif has no coordinate reference system .*its metadata names "
                                            r"EPSG:32719.*gdal_translate -a_srs EPSG:32719"):
        res = predict_raster(Pointwise(), src, tmp_path / "out.tif", **kw)
    with rasterio.open(res.path) as b:
        assert b.crs is None and b.shape == (40, 50) and res.georeferencing == ""
    with rasterio.open(src, "r+") as dst:
        dst.update_tags(**{"band#crs": "not a crs"})
    with rasterio.open(src) as ds:
        assert crs_named_in_metadata(ds) is None
    with pytest.warns(CarlGeoWarning, match=r"will not line up with other layers: assign one \(gdal_translate -a_srs "
                                            r"EPSG:xxxx"):
        predict_raster(Pointwise(), src, tmp_path / "out2.tif", **kw)
    with warnings.catch_warnings():  # a raster with a CRS: no such warning, and nothing named
        warnings.simplefilter("error", CarlGeoWarning)
        grid = write_raster(tmp_path / "grid.tif", data)
        predict_raster(Pointwise(), grid, tmp_path / "out3.tif", **kw)
        with rasterio.open(grid) as ds:
            assert crs_named_in_metadata(ds) is None


def test_cog_and_overviews(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 600, 520))
    kw = dict(wavelengths=WL4, tile_size=128, overlap=16, batch_size=8, device="cpu",
              class_names=["a", "b", "c"], colors=[(1, 2, 3), (4, 5, 6), (7, 8, 9)])
    cog = predict_raster(Pointwise(), src, tmp_path / "cog.tif", cog=True, **kw)
    with rasterio.open(cog.path) as b:
        assert b.overviews(1) and b.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert b.colormap(1)[2][:3] == (7, 8, 9) and json.loads(b.tags()["CLASS_NAMES"]) == ["a", "b", "c"]
        with rasterio.open(src) as a:
            assert (b.crs, b.transform, b.shape) == (a.crs, a.transform, a.shape)
        cog_classes = b.read(1)
    ovr = predict_raster(Pointwise(), src, tmp_path / "ovr.tif", overviews=True, **kw)
    with rasterio.open(ovr.path) as b:
        assert b.overviews(1) == [2, 4] and np.array_equal(b.read(1), cog_classes)
    assert listing(tmp_path) == {"in.tif", "cog.tif", "ovr.tif"}


# ---------------------------------------------------------------- nodata


def test_nodata_in_nodata_out(tmp_path: Path) -> None:
    data = smooth_image(4, 60, 80)
    data[2, 10:20, 30:45] = 0  # nodata in one band only
    data[:, 50:, :7] = 0
    src = write_raster(tmp_path / "in.tif", data, nodata=0)
    bad = (data == 0).any(0)
    model = Pointwise()
    cls = predict_raster(model, src, tmp_path / "c.tif", wavelengths=WL4, tile_size=32, overlap=8, device="cpu")
    prob = predict_raster(model, src, tmp_path / "p.tif", output="probabilities", wavelengths=WL4,
                          tile_size=32, overlap=8, device="cpu")
    with rasterio.open(cls.path) as a, rasterio.open(prob.path) as b:
        classes, p = a.read(1), b.read()
    assert np.array_equal(classes == 255, bad)
    assert np.array_equal(np.isnan(p).any(0), bad) and np.isnan(p[:, bad]).all()
    # statistics ignore nodata; valid pixels are unaffected by it
    good = data[:, ~bad].astype(np.float64)
    assert cls.mean == pytest.approx(good.mean(), rel=1e-9)
    ref = reference(model, data, cls.mean, cls.std)
    np.testing.assert_allclose(p[:, ~bad], ref[:, ~bad], atol=2e-6)


def test_nan_pixels_and_nodata_override(tmp_path: Path) -> None:
    data = smooth_image(4, 40, 40).astype("float32")
    data[1, 5:9, 5:9] = np.nan
    data[:, 30:, 30:] = -9999
    src = write_raster(tmp_path / "f.tif", data)  # no nodata in the file
    res = predict_raster(Pointwise(), src, tmp_path / "o.tif", wavelengths=WL4, nodata=-9999, tile_size=32,
                         overlap=8, device="cpu")
    with rasterio.open(res.path) as b:
        classes = b.read(1)
    bad = np.isnan(data).any(0) | (data == -9999).any(0)
    assert np.array_equal(classes == 255, bad) and bad.sum() == 16 + 100


# ---------------------------------------------------------------- cancel, failure, early errors


def test_cancel_leaves_no_file(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 120, 120))
    calls = []

    def progress(done: int, total: int) -> bool:
        calls.append((done, total))
        return done < 4  # cancel after the second batch

    with pytest.raises(PredictionCancelled):
        predict_raster(Pointwise(), src, tmp_path / "out.tif", wavelengths=WL4, tile_size=32, overlap=8,
                       batch_size=2, progress=progress, device="cpu")
    assert calls[0] == (2, calls[0][1]) and calls[-1][0] == 4 and calls[0][1] > 4
    assert listing(tmp_path) == {"in.tif"}  # neither the output nor a temporary file


def test_model_error_leaves_no_file(tmp_path: Path) -> None:
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 100, 100))

    class Breaks(Pointwise):
        n = 0

        def forward(self, img, wavelengths):
            self.n += 1
            if self.n > 3:  # the probe call and two batches work
                raise RuntimeError("GPU fell off")
            return super().forward(img, wavelengths)

    with pytest.raises(RuntimeError, match="fell off"):
        predict_raster(Breaks(), src, tmp_path / "out.tif", wavelengths=WL4, tile_size=32, overlap=8,
                       device="cpu")
    assert listing(tmp_path) == {"in.tif"}


def test_write_error_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    """A failing write in the background writer thread (here: disk full) reaches the caller, and
    neither the output nor its temporary file remains."""
    from carl_geo.inference.writer import GeoTiffWriter

    src = write_raster(tmp_path / "in.tif", smooth_image(4, 300, 100))
    original, calls = GeoTiffWriter.write_rows, []

    def write_rows(self, row0, rows):
        calls.append(row0)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return original(self, row0, rows)

    monkeypatch.setattr(GeoTiffWriter, "write_rows", write_rows)
    with pytest.raises(OSError, match="No space left"):
        predict_raster(Pointwise(), src, tmp_path / "out.tif", wavelengths=WL4, tile_size=32, overlap=8,
                       device="cpu")
    assert len(calls) == 2
    assert listing(tmp_path) == {"in.tif"}


@pytest.mark.slow  # compiles, exports or trains: 1.5-3 s each under load; together they push "not slow" past 1 min
def test_compiled_model_matches_eager(tmp_path: Path, monkeypatch) -> None:
    """``compile=True`` (static shapes: the last, smaller batch is padded) gives the eager result."""
    compiled, real_compile = [], torch.compile

    def spy(model, **kwargs):
        compiled.append(kwargs)
        return real_compile(model, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 70, 90))
    kwargs = dict(output="probabilities", wavelengths=WL4, tile_size=32, overlap=8, batch_size=5, device="cpu")
    eager = predict_raster(Context(), src, tmp_path / "eager.tif", **kwargs)
    assert eager.tiles % 5 != 0  # the last batch is a partial one
    assert not compiled
    predict_raster(Context(), src, tmp_path / "compiled.tif", compile=True, **kwargs)
    assert compiled == [{"dynamic": False}]
    with rasterio.open(tmp_path / "eager.tif") as a, rasterio.open(tmp_path / "compiled.tif") as b:
        np.testing.assert_allclose(b.read(), a.read(), atol=1e-5)


def test_pipeline_recycles_batch_buffers() -> None:
    """Reading in a background thread into pooled buffers: the pool allocates a handful of
    buffers however many batches run, and every buffer comes back."""
    from carl_geo.inference.engine import BufferPool, Prefetcher, iter_batches, run_tiled
    from carl_geo.inference.runner import ModelRunner

    data = smooth_image(4, 200, 200).astype(np.float32)
    grid = TileGrid.build(200, 200, 32, 8)
    pool = BufferPool((2, 4, 32, 32))

    def read_rows(r0: int, r1: int, out: np.ndarray) -> np.ndarray:
        out[...] = data[:, r0:r1]
        return np.ones((r1 - r0, 200), bool)

    rows: dict[int, np.ndarray] = {}

    def emit(row0: int, blended: torch.Tensor, valid: np.ndarray) -> None:
        rows[row0] = blended.numpy()

    with ModelRunner(Pointwise(), WL4, output="probabilities", device=torch.device("cpu")) as runner, \
            Prefetcher(lambda: iter_batches(grid, read_rows, 2, bands=4, dtype=np.float32, mean=2000.0,
                                            std=500.0, pool=pool), depth=2) as batches:
        tiles = run_tiled(grid, batches, runner.predict, emit)
    assert tiles == grid.n_tiles and tiles / 2 > 10 * pool.allocated
    assert len(pool._free) == pool.allocated  # all handed back
    blended = np.concatenate([rows[k] for k in sorted(rows)], axis=1)
    np.testing.assert_allclose(blended, reference(Pointwise(), data, 2000.0, 500.0), atol=1e-5)


class ReadLog:
    """Records every DatasetReader.read call: (bands, rows, cols)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int, int]] = []
        original = rasterio.io.DatasetReader.read

        def read(ds, indexes=None, *args, **kwargs):
            out = original(ds, indexes, *args, **kwargs)
            shape = out.shape if out.ndim == 3 else (1,) + out.shape
            self.calls.append(tuple(int(s) for s in shape))
            return out

        monkeypatch.setattr(rasterio.io.DatasetReader, "read", read)


def test_wrong_wavelength_count_fails_before_reading_pixels(tmp_path: Path, monkeypatch) -> None:
    src = write_raster(tmp_path / "in.tif", smooth_image(5, 40, 40))
    log = ReadLog(monkeypatch)
    with pytest.raises(ValueError, match="has 5 bands but 4 wavelengths were given"):
        predict_raster(Pointwise(c=5), src, tmp_path / "o.tif", wavelengths=WL4, device="cpu")
    with pytest.raises(ValueError, match="no wavelengths"):
        predict_raster(Pointwise(c=5), src, tmp_path / "o.tif", device="cpu")
    assert log.calls == []
    assert listing(tmp_path) == {"in.tif"}


@pytest.mark.parametrize("kwargs", [
    dict(overlap=40, tile_size=64), dict(tile_size=8), dict(batch_size=0), dict(output="masks"),
    dict(precision="fp16"), dict(probability_dtype="uint16"), dict(normalization=(1.0,)),
])
def test_bad_arguments_raise_value_error(tmp_path: Path, kwargs) -> None:
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 20, 20))
    with pytest.raises(ValueError):
        predict_raster(Pointwise(), src, tmp_path / "o.tif", wavelengths=WL4, device="cpu", **kwargs)


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="raster not found"):
        predict_raster(Pointwise(), tmp_path / "nope.tif", tmp_path / "o.tif", wavelengths=WL4)
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 20, 20))
    with pytest.raises(FileNotFoundError, match="output folder"):
        predict_raster(Pointwise(), src, tmp_path / "no" / "o.tif", wavelengths=WL4)


# ---------------------------------------------------------------- memory


def test_memory_does_not_grow_with_raster_height(tmp_path: Path, monkeypatch) -> None:
    width, tile, overlap, c = 80, 64, 16, 4
    peaks, maxima = {}, {}
    for height in (512, 3072):  # both at least two output blocks (256 rows) high
        src = write_raster(tmp_path / f"h{height}.tif", smooth_image(c, height, width))
        log = ReadLog(monkeypatch)
        tracemalloc.start()
        predict_raster(Pointwise(), src, tmp_path / f"o{height}.tif", output="probabilities", wavelengths=WL4,
                       tile_size=tile, overlap=overlap, batch_size=2, device="cpu", normalization=(2000, 500))
        peaks[height] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        maxima[height] = max(b * h * w for b, h, w in log.calls)
        assert all(h <= tile for _, h, _ in log.calls)  # row strips of at most one tile height
        monkeypatch.undo()
    assert maxima[3072] == maxima[512] <= c * tile * width
    # 6x the pixels, same peak, up to how full the writer thread's queue happens to get (it holds
    # at most 4 chunks of EMIT_ROWS rows; a whole output kept in memory would add ~2.9 MB)
    queue_slack = 4 * 3 * EMIT_ROWS * width * 4
    assert peaks[3072] < 1.1 * peaks[512] + queue_slack, peaks


# ---------------------------------------------------------------- CARL models and bundles


@pytest.fixture(scope="module")
def carl_bundle() -> carl_geo.ModelBundle:
    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 3).eval()
    return carl_geo.make_bundle(seg, class_names=["water", "forest", "urban"],
                                colors=[(0, 0, 255), (0, 128, 0), (200, 0, 0)],
                                normalization={"mode": "fixed", "mean": 2000.0, "std": 600.0})


def test_carl_bundle_with_sentinel2_band_names(tmp_path: Path, carl_bundle) -> None:
    s2 = carl_geo.get_sensor("sentinel2_l2a")
    names = ["B02", "B03", "B04", "B08", "B11"]
    src = write_raster(tmp_path / "s2.tif", smooth_image(5, 70, 60), descriptions=names)
    res = predict_raster(carl_bundle, src, tmp_path / "c.tif", tile_size=48, overlap=16, batch_size=4,
                         device="cpu", precision="bf16")
    assert res.wavelengths == [s2.wavelengths[s2.band_index(n)] for n in names]
    assert (res.mean, res.std) == (2000.0, 600.0)  # the bundle's fixed normalisation
    with rasterio.open(res.path) as b:
        assert b.shape == (70, 60) and set(np.unique(b.read(1))) <= {0, 1, 2}
        assert json.loads(b.tags()["CLASS_NAMES"]) == ["water", "forest", "urban"]
    emb = predict_raster(carl_bundle, src, tmp_path / "e.tif", output="embeddings", tile_size=48, overlap=16,
                         device="cpu")
    with rasterio.open(emb.path) as b:
        feats = b.read()
    assert feats.shape == (carl_bundle.backbone.embed_dim, 70, 60) and np.isfinite(feats).all()


def test_bf16_runner_casts_linear_weights_once_and_leaves_the_model_as_it_was(carl_bundle) -> None:
    """Low precision: the runner works on a copy whose linear weights are stored in bf16 (cast once, not on
    every call): its output equals autocast on the float32 model, and the caller's model keeps its float32
    weights, unchanged, for float32 callers."""
    from carl_geo.inference.runner import ModelRunner

    module = carl_bundle.model
    before = {k: v.clone() for k, v in module.state_dict().items()}
    torch.manual_seed(5)
    x = torch.randn(2, 4, 32, 32)
    wl = torch.tensor(WL4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = module(x, wl).float()
    with ModelRunner(module, WL4, output="probabilities", device=torch.device("cpu"), precision="bf16") as runner:
        assert runner._eager is not module
        linears = [m for m in runner._eager.modules() if isinstance(m, torch.nn.Linear)]
        assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
        got = runner.predict(x)
    torch.testing.assert_close(got, torch.softmax(ref, dim=1), rtol=0, atol=1e-6)
    after = module.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    with ModelRunner(module, WL4, output="probabilities", device=torch.device("cpu")) as fp32:
        assert fp32._eager is module  # float32: no copy


def test_bf16_on_a_cpu_without_bf16_units_says_it_is_slower(monkeypatch) -> None:
    """bf16 is emulated on CPUs without AMX / AVX-512 BF16 (slower than fp32): one line says so and what to use."""
    import warnings

    from carl_geo.errors import CarlGeoWarning
    from carl_geo.inference import runner

    assert isinstance(runner.cpu_has_bf16_units(), bool)  # the real check runs on this machine
    monkeypatch.setattr(runner, "cpu_has_bf16_units", lambda: False)
    with pytest.warns(CarlGeoWarning, match="runs slower than fp32.*int8"):
        assert runner.inference_device("cpu", "bf16").type == "cpu"
    monkeypatch.setattr(runner, "cpu_has_bf16_units", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarlGeoWarning)
        runner.inference_device("cpu", "bf16")
        monkeypatch.setattr(runner, "cpu_has_bf16_units", lambda: False)
        runner.inference_device("cpu", "fp32")  # fp32 never warns


def test_auto_precision_is_bf16_on_a_cpu_with_amx_and_fp32_elsewhere(tmp_path: Path, carl_bundle,
                                                                    monkeypatch) -> None:
    """The default precision "auto": CARL models in bf16 where the CPU has AMX units (measured: ~2.5x fp32 with the
    published backbone, >= 99.4 % of the pixels as fp32's), fp32 on other CPUs, on GPUs and for other models; the
    result says which ran."""
    from carl_geo.inference import runner

    from carl_geo.inference import PredictSettings

    assert PredictSettings().precision == "auto"
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert isinstance(runner.cpu_has_amx(), bool)  # the real check runs on this machine
    monkeypatch.setattr(runner, "cpu_has_amx", lambda: True)
    carl = carl_bundle.model
    assert runner.resolve_precision("auto", cpu, carl) == "bf16" and runner.resolve_precision("auto", gpu, carl) == "fp32"
    assert runner.resolve_precision("fp32", cpu, carl) == "fp32" and runner.resolve_precision("int8", cpu, carl) == "int8"
    assert runner.resolve_precision("auto", cpu, Pointwise()) == "fp32"  # bf16 was measured on CARL models only
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 40, 36))
    kw = dict(wavelengths=WL4, tile_size=32, overlap=8, device="cpu", output="probabilities")
    with runner.ModelRunner(carl_bundle.model, WL4, output="probabilities", device=cpu, precision="auto") as r:
        assert r.precision == "bf16" and r.autocast_dtype == torch.bfloat16
    auto = predict_raster(carl_bundle, src, tmp_path / "auto.tif", **kw)
    bf16 = predict_raster(carl_bundle, src, tmp_path / "bf16.tif", precision="bf16", **kw)
    assert auto.precision == bf16.precision == "bf16"
    monkeypatch.setattr(runner, "cpu_has_amx", lambda: False)
    plain = predict_raster(carl_bundle, src, tmp_path / "plain.tif", **kw)
    fp32 = predict_raster(carl_bundle, src, tmp_path / "fp32.tif", precision="fp32", **kw)
    assert plain.precision == fp32.precision == "fp32"
    read = {k: rasterio.open(v.path).read() for k, v in dict(auto=auto, bf16=bf16, plain=plain, fp32=fp32).items()}
    np.testing.assert_array_equal(read["auto"], read["bf16"])
    np.testing.assert_array_equal(read["plain"], read["fp32"])
    diff = np.abs(read["bf16"] - read["fp32"])
    assert 0 < diff.max() < 0.05  # bf16 really ran, and stays close to fp32


def test_a_model_file_path_is_taken_as_the_command_line_takes_it(tmp_path: Path, carl_bundle) -> None:
    """predict_raster / predict_dataarray load a model file's path (issue #31); the file is never an output."""
    import rioxarray  # noqa: F401  (the .rio accessor)

    from carl_geo.inference import predict_dataarray

    model_file = carl_geo.save_bundle(carl_bundle, tmp_path / "model.pt")
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 40, 36))
    kw = dict(wavelengths=WL4, tile_size=32, overlap=8, device="cpu")
    by_path = predict_raster(str(model_file), src, tmp_path / "a.tif", **kw)
    by_bundle = predict_raster(carl_bundle, src, tmp_path / "b.tif", **kw)
    with rasterio.open(by_path.path) as a, rasterio.open(by_bundle.path) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
        assert json.loads(a.tags()["CLASS_NAMES"]) == ["water", "forest", "urban"]
    da = rioxarray.open_rasterio(src)
    np.testing.assert_array_equal(predict_dataarray(model_file, da, chunk_size=40, **kw).values,
                                  predict_dataarray(carl_bundle, da, chunk_size=40, **kw).values)
    before = model_file.read_bytes()
    with pytest.raises(ValueError, match="model file"):
        predict_raster(model_file, src, model_file, **kw)
    assert model_file.read_bytes() == before


def test_feature_bundle_cannot_make_classes(tmp_path: Path) -> None:
    bundle = carl_geo.make_bundle(carl_geo.CARL(carl_geo.tiny_config()))
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 20, 20))
    with pytest.raises(ValueError, match="feature extractor"):
        predict_raster(bundle, src, tmp_path / "o.tif", wavelengths=WL4)


# ---------------------------------------------------------------- xarray / dask


def test_dask_path_equals_file_path(tmp_path: Path) -> None:
    import rioxarray

    from carl_geo.inference import predict_dataarray

    data = smooth_image(4, 150, 170)
    data[:, :5, :5] = 0
    src = write_raster(tmp_path / "in.tif", data, nodata=0)
    model = Context()
    kw = dict(output="probabilities", wavelengths=WL4, tile_size=64, overlap=16, device="cpu")
    res = predict_raster(model, src, tmp_path / "p.tif", **kw)
    with rasterio.open(res.path) as b:
        file_prob = b.read()
    da = rioxarray.open_rasterio(src, chunks={"x": 64, "y": 64})
    out = predict_dataarray(model, da, chunk_size=80, **kw)
    assert out.dims == ("band", "y", "x") and out.shape == (3, 150, 170)
    assert out.rio.crs == da.rio.crs and out.rio.transform() == da.rio.transform()
    np.testing.assert_array_equal(out["x"].values, da["x"].values)
    got = out.values
    assert np.array_equal(np.isnan(got), np.isnan(file_prob)) and np.isnan(got[:, :5, :5]).all()
    # the tiles are anchored to the array, not to the chunks: the same map at every chunking (issue #31)
    np.testing.assert_allclose(got, file_prob, atol=1e-5, rtol=0)
    for chunk in (64, 100, 1024):
        other = predict_dataarray(model, da, chunk_size=chunk, **kw)
        assert other.chunks is None and np.array_equal(np.isnan(other.values), np.isnan(file_prob))
        np.testing.assert_allclose(other.values, file_prob, atol=1e-5, rtol=0, err_msg=f"chunk_size {chunk}")
    pw = Pointwise()
    exact = predict_dataarray(pw, da, chunk_size=80, client="local", **kw).values
    ok = (data != 0).all(0)
    assert np.isnan(exact[:, ~ok]).all()
    np.testing.assert_allclose(exact[:, ok], reference(pw, data, res.mean, res.std)[:, ok], atol=2e-6)
    classes = predict_dataarray(pw, da, wavelengths=WL4, tile_size=64, overlap=16, compute=False)
    assert classes.chunks is not None and classes.dtype == np.uint8 and classes.rio.nodata == 255
    assert classes.values[0, 0, 0] == 255


def test_bands_without_wavelengths_are_read_as_the_model_bands_with_a_warning(tmp_path: Path) -> None:
    """A raster whose bands carry no wavelengths is read as the model's training bands in their order, with one
    line that says so and what to give for another camera; wavelengths from the file or the caller: no such line."""
    import warnings

    from carl_geo.errors import CarlGeoWarning

    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 3).eval()
    bundle = carl_geo.make_bundle(seg, wavelengths=WL4, band_names=["B2", "B3", "B4", "B8"],
                                  normalization={"mode": "fixed", "mean": 2000.0, "std": 500.0})
    data = smooth_image(4, 40, 40)
    bare = write_raster(tmp_path / "bare.tif", data)
    with pytest.warns(CarlGeoWarning, match=r"bands carry no wavelengths: read as the model's 4 training bands in "
                                            r"their order \(B2 0\.49, B3 0\.56, B4 0\.665, B8 0\.842 µm\).*sensor"):
        predict_raster(bundle, bare, tmp_path / "a.tif")
    tagged = write_raster(tmp_path / "tagged.tif", data, wavelengths=WL4)
    for src, kw in ((bare, {"wavelengths": WL4}), (tagged, {})):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predict_raster(bundle, src, tmp_path / f"b{len(kw)}.tif", **kw)
        assert not [w for w in caught if "carry no wavelengths" in str(w.message)]
