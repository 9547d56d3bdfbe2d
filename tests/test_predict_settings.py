"""One prediction settings object (issue #19): ``PredictSettings`` is validated, frozen and torch-free; the
two predict functions take it (keywords stay as overrides), ``carl-geo predict`` generates its options from
its fields, and the shared option syntax (``--bands``, ``--wavelengths``) is the same in every command."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from carl_geo.errors import CarlGeoError
from carl_geo.inference.settings import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE_SIZE,
    PredictSettings,
    add_arguments,
    field_names,
    from_arguments,
)
from helpers import write_raster

WL4 = [0.49, 0.56, 0.665, 0.842]


class _Conv(nn.Module):
    def __init__(self, c: int = 4, k: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(c, k, 3, padding=1)

    def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        return self.conv(img)


@pytest.mark.parametrize("bad, says", [
    (dict(tile_size=8), "tile_size must be an integer >= 16"),
    (dict(overlap=128), "overlap must be an integer >= 0 and less than half the tile size"),
    (dict(batch_size=0), "batch_size must be a positive integer or 'auto'"),
    (dict(batch_size="8"), "batch_size must be a positive integer or 'auto'"),
    (dict(output="labels"), "output must be one of classes, probabilities, embeddings"),
    (dict(precision="int4"), "precision must be one of fp32, int8, bf16, fp16"),
    (dict(probability_dtype="float16"), "probability_dtype must be 'float32' or 'uint8'"),
    (dict(embedding_dtype="uint8"), "embedding_dtype must be 'float32' or 'float16'"),
    (dict(normalization=(1.0,)), "normalization must be None, 'scene' or a (mean, std) pair"),
    (dict(normalization=(0.0, -1.0)), "std >= 0"),
    (dict(gdal_cache_mb=-1), "gdal_cache_mb must be >= 0"),
])
def test_bad_settings_are_refused_when_made(bad: dict, says: str) -> None:
    with pytest.raises(CarlGeoError, match=says.replace("(", r"\(").replace(")", r"\)")):
        PredictSettings(**bad)
    with pytest.raises(CarlGeoError):
        PredictSettings().replace(**bad)


def test_defaults_are_frozen_and_replace_checks_names() -> None:
    s = PredictSettings()
    assert (s.tile_size, s.overlap, s.batch_size, s.device, s.precision, s.output) == \
        (None, None, 4, "auto", "auto", "classes")
    assert s.tiling() == (DEFAULT_TILE_SIZE, DEFAULT_OVERLAP) == (256, 16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tile_size = 512  # type: ignore[misc]
    assert s.replace(tile_size=512).tile_size == 512 and s.tile_size is None
    with pytest.raises(TypeError, match="unknown prediction setting.*tile"):
        s.replace(tile=512)


def test_settings_object_and_keyword_overrides_give_the_same_file(tmp_path: Path) -> None:
    from carl_geo.inference import predict_raster

    rng = np.random.default_rng(0)
    src = write_raster(tmp_path / "in.tif", rng.integers(100, 4000, (4, 70, 90)).astype("uint16"))
    common = dict(wavelengths=WL4, normalization=(2000.0, 1000.0))
    a = predict_raster(_Conv(), src, tmp_path / "a.tif", output="probabilities", tile_size=32, overlap=8,
                       batch_size=3, **common)
    settings = PredictSettings(output="probabilities", tile_size=32, overlap=8, batch_size=3)
    b = predict_raster(_Conv(), src, tmp_path / "b.tif", settings=settings, **common)
    c = predict_raster(_Conv(), src, tmp_path / "c.tif", settings=settings.replace(tile_size=64), tile_size=32,
                       **common)  # a keyword wins over the settings object
    with rasterio.open(a.path) as fa, rasterio.open(b.path) as fb, rasterio.open(c.path) as fc:
        ref = fa.read()
        assert ref.shape == (3, 70, 90) and np.array_equal(ref, fb.read()) and np.array_equal(ref, fc.read())
        assert json.loads(fc.tags()["CARL_TILING"]) == {"tile_size": 32, "overlap": 8}
    assert a.tiles == b.tiles == c.tiles > 4
    with pytest.raises(TypeError, match="tile_sise"):
        predict_raster(_Conv(), src, tmp_path / "d.tif", tile_sise=32, **common)
    assert not (tmp_path / "d.tif").exists()


def test_predict_dataarray_takes_the_same_settings_on_the_cpu() -> None:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    from carl_geo.inference.xarray_predict import DATAARRAY_DEFAULTS, predict_dataarray

    assert DATAARRAY_DEFAULTS == PredictSettings(device="cpu")
    da = xr.DataArray(np.random.default_rng(0).normal(size=(4, 40, 40)).astype("float32"), dims=("band", "y", "x"),
                      coords={"y": np.arange(40.0)[::-1], "x": np.arange(40.0)})
    out = predict_dataarray(_Conv(), da, wavelengths=WL4, settings=PredictSettings(tile_size=32, overlap=8),
                            normalization=(0.0, 1.0), output="probabilities")
    assert out.shape == (3, 40, 40) and np.allclose(out.values.sum(0), 1.0, atol=1e-5)
    with pytest.raises(CarlGeoError, match="cog only apply to predict_raster"):
        predict_dataarray(_Conv(), da, wavelengths=WL4, cog=True)


def _predict_parser() -> argparse.ArgumentParser:
    from carl_geo.inference.cli import register

    return register(argparse.ArgumentParser().add_subparsers())


def test_predict_options_are_generated_from_the_fields() -> None:
    parser = _predict_parser()
    options = {s for a in parser._actions for s in a.option_strings}
    assert {"--" + n.replace("_", "-") for n in field_names()} <= options
    args = parser.parse_args(["in.tif", "out.tif", "-m", "m.pt"])
    assert args.output is None  # chosen from the model file at run time
    assert from_arguments(args) == PredictSettings()
    args = parser.parse_args(["in.tif", "out.tif", "-m", "m.pt", "-o", "probabilities", "--tile-size", "512",
                              "--overlap", "32", "--batch-size", "auto", "--normalization", "10,2", "--cog",
                              "--precision", "bf16", "--gdal-cache-mb", "0", "--probability-dtype", "uint8"])
    assert from_arguments(args) == PredictSettings(
        output="probabilities", tile_size=512, overlap=32, batch_size="auto", normalization=(10.0, 2.0), cog=True,
        precision="bf16", gdal_cache_mb=0.0, probability_dtype="uint8")
    with pytest.raises(CarlGeoError, match="overlap"):
        from_arguments(parser.parse_args(["in.tif", "out.tif", "-m", "m.pt", "--overlap", "200"]))


def test_add_arguments_puts_every_field_in_its_group() -> None:
    parser = argparse.ArgumentParser()
    groups = {None: parser, **{t: parser.add_argument_group(t) for t in
                               ("bands and wavelengths", "tiling and device", "output file")}}
    add_arguments(groups)
    titles = {a.dest: g.title for g in parser._action_groups for a in g._group_actions}
    assert titles["tile_size"] == titles["device"] == "tiling and device"
    assert titles["nodata"] == titles["normalization"] == "bands and wavelengths"
    assert titles["cog"] == titles["embedding_dtype"] == "output file"


@pytest.mark.parametrize("command", ["predict", "train"])
def test_bands_and_wavelengths_have_one_syntax_in_every_command(command: str) -> None:
    from carl_geo.cli import build_parser

    head = ["predict", "in.tif", "out.tif", "-m", "m.pt"] if command == "predict" else \
        ["train", "--raster", "r.tif", "--labels", "l.gpkg", "--label-field", "c", "--out", "m.pt"]
    parse = build_parser().parse_args
    assert parse([*head, "--bands", "4,3,2"]).bands == [4, 3, 2]
    assert parse([*head, "--bands", "B04, B03,B8A"]).bands == ["B04", "B03", "B8A"]
    assert parse([*head, "--bands", "4 3 2"]).bands == [4, 3, 2]
    if command == "train":  # no positional arguments to swallow: also several values
        assert parse([*head, "--bands", "4", "3", "B02"]).bands == [4, 3, "B02"]
    # micrometres, or nanometres converted to micrometres; commas or spaces
    assert parse([*head, "--wavelengths", "0.49,0.56,0.665"]).wavelengths == pytest.approx([0.49, 0.56, 0.665])
    assert parse([*head, "--wavelengths", "490, 560 665"]).wavelengths == pytest.approx([0.49, 0.56, 0.665])
    with pytest.raises(SystemExit):
        parse([*head, "--wavelengths", "red,green"])
