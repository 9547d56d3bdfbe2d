"""CARL is reachable through torchgeo's model API after ``import carl_geo``."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("torchgeo")

import carl_geo  # noqa: E402
import carl_geo.weights  # noqa: E402
from torchgeo.models import get_model, get_model_weights, get_weight, list_models  # noqa: E402


def test_models_listed_and_built():
    assert {"carl", "carl_tiny"} <= set(list_models())
    model = get_model("carl_tiny", weights=None)
    assert isinstance(model, carl_geo.CARL)
    out = model(torch.randn(1, 5, 16, 16), torch.tensor([0.49, 0.56, 0.665, 0.842, 1.61]))
    assert out.spatial.shape == (1, 128, 2, 2)


def test_weights_enum_meta():
    enum = get_model_weights("carl")
    weight = get_weight("CARL_Weights.CARL_SSL")
    assert weight in list(enum)
    meta = weight.meta
    assert meta["wavelength_conditioned"] is True and meta["wavelength_unit"] == "um"
    assert meta["publication"].startswith("https://arxiv.org/abs/2504.19223")
    assert meta["repo"] == "https://github.com/IMSY-DKFZ/CARL"
    assert "license" in meta and meta["ssl_method"] == "carl-ssl" and "normalization" in meta
    # the transform is CARL's per-image scalar standardisation
    x = torch.rand(2, 4, 8, 8) * 1000
    y = weight.transforms(x)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4, rtol=0)
    assert get_model_weights(carl_geo.models.registry.carl) is enum


@pytest.mark.slow  # about 4 s on the 2-core machine
def test_weights_load_from_a_local_file(tmp_path, monkeypatch):
    weight = get_weight("CARL_Weights.CARL_SSL")
    monkeypatch.setenv("CARL_GEO_WEIGHTS", str(tmp_path / "absent.ckpt"))
    monkeypatch.setenv("CARL_GEO_OFFLINE", "1")  # a missing file would be downloaded (tests/test_weights.py)
    with pytest.raises(FileNotFoundError, match="downloads are turned off") as info:
        get_model("carl", weights=weight)
    assert str(tmp_path / "absent.ckpt") in str(info.value) and weight.url in str(info.value)
    # a file in the published layout (random weights here) loads through the torchgeo API
    ref = carl_geo.CARL(carl_geo.published_config())
    ckpt = tmp_path / "ssl_checkpoint_carl.ckpt"
    state = {f"model.{k}": v for k, v in ref.state_dict().items()}
    state |= {f"teacher.{k}": v.clone() for k, v in ref.state_dict().items()}  # own storage, as in the real file
    layout = carl_geo.weights.published_layout()  # the rest of the published file (predictors, ...): zeros
    state |= {k: torch.zeros(t.shape, dtype=getattr(torch, t.dtype)) for k, t in layout.tensors.items() if k not in state}
    torch.save({"state_dict": state, "epoch": 0}, ckpt)
    monkeypatch.setenv("CARL_GEO_WEIGHTS", str(ckpt))
    model = get_model("carl", weights=weight)
    torch.testing.assert_close(model.embedder.weight, ref.embedder.weight)
    assert set(weight.get_state_dict()) == set(ref.state_dict())


@pytest.mark.slow  # > 4 s on the 2-core machine
def test_acceptance_one_liner():
    code = "import carl_geo, torchgeo.models as m; print(m.get_model('carl', weights=None).__class__.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "CARL"
