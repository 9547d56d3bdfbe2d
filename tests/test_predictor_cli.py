"""``carl-geo predict``: help, a real run with a quick look, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import carl_geo
from carl_geo.cli import main
from user_files import write_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    """A 4-band uint16 GeoTIFF with wavelength metadata and a tiny 3-class CARL model file."""
    folder = tmp_path_factory.mktemp("cli")
    src = folder / "scene.tif"
    write_scene(src)  # 4 bands, 40 x 56 px, CENTRAL_WAVELENGTH_UM metadata
    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 2)
    model = carl_geo.save_bundle(carl_geo.make_bundle(seg, class_names=["field", "road"],
                                                      colors=[(240, 220, 0), (90, 90, 90)]), folder / "model.pt")
    return src, model


def test_help(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["predict", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--model", "--output", "--wavelengths", "--sensor", "--bands", "--tile-size", "--overlap",
                "--batch-size", "--device", "--precision", "--compile", "--cog", "--overviews", "--quicklook"):
        assert opt in text


def test_cli_run_with_quicklook(scene, tmp_path: Path, capsys) -> None:
    src, model = scene
    out, png = tmp_path / "map.tif", tmp_path / "map.png"
    code = main(["predict", str(src), str(out), "--model", str(model), "--tile-size", "32", "--overlap", "8",
                 "--batch-size", "3", "--device", "cpu", "--quicklook", str(png)])
    assert code == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "predict" in captured.err  # tqdm bar on stderr
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert (b.crs, b.transform, b.shape) == (a.crs, a.transform, a.shape)
        assert json.loads(b.tags()["CLASS_NAMES"]) == ["field", "road"]
        assert b.colormap(1)[1][:3] == (90, 90, 90)
        assert set(np.unique(b.read(1))) <= {0, 1}
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 400 and img[..., :3].std() > 0.05


def test_cli_probabilities_with_explicit_wavelengths(scene, tmp_path: Path) -> None:
    src, model = scene
    out = tmp_path / "p.tif"
    code = main(["predict", str(src), str(out), "-m", str(model), "--output", "probabilities", "--wavelengths",
                 "0.49,0.56,0.665,0.842", "--probability-dtype", "uint8", "--tile-size", "32", "--overlap", "8",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    with rasterio.open(out) as b:
        p = b.read().astype(int)
    assert p.shape == (2, 40, 56) and np.abs(p.sum(0) - 254).max() <= 1


def test_cli_errors_are_one_line(scene, tmp_path: Path, capsys) -> None:
    src, model = scene
    out = tmp_path / "bad.tif"
    code = main(["predict", str(src), str(out), "--model", str(model), "--wavelengths", "0.49,0.56,0.665"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "has 4 bands but 3 wavelengths were given" in err and len(err.splitlines()) == 1
    assert not out.exists()
    code = main(["predict", str(src), str(out), "--model", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "model file not found" in err and len(err.splitlines()) == 1
    code = main(["predict", str(src), str(out), "--model", str(model), "--overlap", "20", "--tile-size", "32"])
    assert code == 2 and "overlap" in capsys.readouterr().err


def test_train_s_names_for_the_raster_and_the_output_work_too(scene, tmp_path: Path, capsys) -> None:
    """`carl-geo train --raster ... --out ...` then `carl-geo predict --raster ... --out ...`: the same names work
    (before, --out was read as an abbreviation of --output: "invalid choice"); twice or not at all is one line."""
    src, model = scene
    fast = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]
    out = tmp_path / "named.tif"
    assert main(["predict", "--raster", str(src), "--out", str(out), "-m", str(model), *fast]) == 0
    assert main(["predict", str(src), str(tmp_path / "positional.tif"), "-m", str(model), *fast]) == 0
    with rasterio.open(out) as a, rasterio.open(tmp_path / "positional.tif") as b:
        assert a.transform == b.transform and (a.read() == b.read()).all()
    capsys.readouterr()
    for argv, said in ((["predict", str(src), "-m", str(model)], "the output GeoTIFF is missing"),
                       (["predict", str(src), str(tmp_path / "c.tif"), "--out", str(tmp_path / "d.tif"), "-m",
                         str(model)], "two output GeoTIFFs given"),
                       (["predict", "--out", str(tmp_path / "e.tif"), "-m", str(model)], "the input raster is missing")):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and said in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["named.tif", "positional.tif"]


def test_cli_batch_size_auto_and_bad_batch_size(scene, tmp_path: Path, capsys) -> None:
    src, model = scene
    args = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]
    assert main(["predict", str(src), str(tmp_path / "a.tif"), "-m", str(model), "--batch-size", "auto", *args]) == 0
    assert main(["predict", str(src), str(tmp_path / "b.tif"), "-m", str(model), "--batch-size", "4", *args]) == 0
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())  # auto is 4 tiles on CPU
    with pytest.raises(SystemExit) as e:
        main(["predict", str(src), str(tmp_path / "c.tif"), "-m", str(model), "--batch-size", "0", *args])
    assert e.value.code == 2 and "--batch-size: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "c.tif").exists()
