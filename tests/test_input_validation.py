"""One place checks inputs for every entry point (issue #20, item 11; messages in the words of
the interface, "And" paragraph)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import carl_geo
from carl_geo.errors import InputError, WavelengthError
from carl_geo.validation import check_wavelength_list
from user_files import WAVELENGTHS, run_cli, save_model, write_scene
from helpers import write_raster

WL = torch.tensor(WAVELENGTHS)


@pytest.mark.parametrize("img, wl, error, says", [
    (torch.randn(1, 4, 16, 16), -WL, WavelengthError, "must be positive"),
    (torch.randn(1, 4, 16, 16), WL * 0, WavelengthError, "must be positive"),
    (torch.randn(1, 4, 16, 16), torch.tensor([0.49, 0.49, 0.6, 0.8]), WavelengthError, "bands 1 and 2 both have"),
    (torch.randn(1, 4, 16, 16), None, WavelengthError, "no wavelengths were given"),
    (torch.randn(1, 4, 16, 16), "0.49,0.56,0.665,0.842", WavelengthError, "not the text"),
    (torch.randn(1, 4, 16, 16), WL * 1000, WavelengthError, "look like nanometres"),
    (torch.randint(0, 255, (1, 4, 16, 16), dtype=torch.uint8), WL, InputError, "img is uint8"),
    (torch.randn(1, 4, 16, 16, dtype=torch.float64), WL, InputError, "img is float64 but the model's weights"),
    (torch.randn(0, 4, 16, 16), WL, InputError, r"empty axis: \(B, C, H, W\) = \(0, 4, 16, 16\)"),
    (torch.randn(1, 4, 0, 16), WL, InputError, "empty axis"),
])
def test_carl_forward_checks(tiny_model: carl_geo.CARL, img, wl, error, says) -> None:
    with pytest.raises(error, match=says), torch.no_grad():
        tiny_model(img, wl)


def test_padded_bands_are_not_checked(tiny_model: carl_geo.CARL) -> None:
    wl = torch.tensor([[0.49, 0.56, 1.0, 1.0]])  # two padding slots, same placeholder wavelength
    mask = torch.tensor([[True, True, False, False]])
    with torch.no_grad():
        assert tiny_model(torch.randn(1, 4, 16, 16), wl, band_mask=mask).spatial.shape == (1, 128, 2, 2)
    with pytest.raises(WavelengthError, match="both have"), torch.no_grad():
        tiny_model(torch.randn(1, 4, 16, 16), wl, band_mask=torch.ones(1, 4, dtype=torch.bool))


def test_float64_model_takes_float64_images() -> None:
    model = carl_geo.CARL(carl_geo.tiny_config()).double().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 4, 16, 16, dtype=torch.float64), WL).spatial.dtype == torch.float64


def test_same_rules_for_the_predictor_and_the_cli(tmp_path: Path, capsys) -> None:
    from carl_geo.inference import predict_raster

    scene, model = write_scene(tmp_path / "scene.tif"), save_model(tmp_path / "model.pt")
    bundle = carl_geo.load_bundle(model)
    for wl, says in (([0.49, 0.49, 0.6, 0.8], "both have"), ([0.49, -0.56, 0.6, 0.8], "positive"),
                     ("0.49,0.56,0.6,0.8", "not the text")):
        with pytest.raises(WavelengthError, match=says):
            predict_raster(bundle, scene, tmp_path / "o.tif", wavelengths=wl, device="cpu")
    code, err, _ = run_cli(["predict", scene, tmp_path / "o.tif", "-m", model, "--wavelengths", "0.49,0.49,0.6,0.8",
                            "--device", "cpu"], capsys)
    assert code == 2 and len(err) == 1 and "bands 1 and 2 both have the wavelength 0.49" in err[0]
    assert not (tmp_path / "o.tif").exists()


def test_messages_use_the_words_of_the_interface(tmp_path: Path, capsys) -> None:
    """A raster without wavelength metadata: the CLI says --wavelengths / --sensor, Python says wavelengths=[...]."""
    import numpy as np
    from carl_geo.inference import predict_raster

    bare = write_raster(tmp_path / "bare.tif", np.ones((3, 16, 16), dtype="uint16"), crs="EPSG:32633", origin=(0, 0),
                        tiled=False)
    model = carl_geo.make_bundle(carl_geo.CARL(carl_geo.tiny_config()))
    carl_geo.save_bundle(model, tmp_path / "features.pt")
    with pytest.raises(WavelengthError) as e:
        predict_raster(model, bare, tmp_path / "o.tif", output="embeddings", device="cpu")
    assert "wavelengths=[...]" in str(e.value) and "--wavelengths" not in str(e.value)
    code, err, _ = run_cli(["predict", bare, tmp_path / "o.tif", "-m", tmp_path / "features.pt"], capsys)
    assert code == 2 and len(err) == 1
    assert "--wavelengths UM,UM,..." in err[0] and "--sensor NAME" in err[0] and "wavelengths=[" not in err[0]
    assert check_wavelength_list([0.49, 0.56]) == [0.49, 0.56]
