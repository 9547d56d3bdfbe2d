"""Upstream parity: carl_geo computes what the published CARL computes.

Runs on every ``fixtures_*.pt`` in the reference folder (``$CARL_REFERENCE_DIR`` or
``../shared/carl_reference``): builds the model from the fixture's upstream ``model_kwargs``,
loads the upstream Lightning checkpoint through :func:`carl_geo.load_carl` (student and teacher),
and compares every case to rtol = atol = 1e-4 in float32.
"""

from __future__ import annotations

import json

import pytest
import torch

import carl_geo
from carl_geo.models.spectral_encoder import sincos_1d, wavelength_frequencies
from helpers import reference_dir

REF = reference_dir()
FIXTURES = sorted(REF.glob("fixtures_*.pt")) if REF else []
pytestmark = pytest.mark.skipif(REF is None, reason="upstream reference folder ../shared/carl_reference not present")


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module", params=FIXTURES, ids=[p.stem for p in FIXTURES])
def fixture(request, tmp_path_factory):
    fx = _load(request.param)
    ckpt = tmp_path_factory.mktemp("ckpt") / "upstream_ssl.ckpt"
    torch.save(fx["checkpoint"], ckpt)
    fx["_ckpt_path"] = ckpt
    fx["_config"] = carl_geo.CARLConfig.from_upstream(fx["downstream_model_kwargs"])
    return fx


def _crop_to_patch(img: torch.Tensor, p: int) -> torch.Tensor:
    """Upstream drops trailing pixels that do not fill a patch; carl_geo pads. Compare on the crop."""
    h, w = img.shape[-2:]
    return img[..., : h // p * p, : w // p * p]


@pytest.mark.parametrize("which", ["student", "teacher"])
def test_outputs_match_upstream(fixture, which):
    model = carl_geo.load_carl(fixture["_ckpt_path"], fixture["_config"], which=which)
    suffix = "" if which == "student" else "_teacher"
    n_checked = 0
    for case in fixture["cases"]:
        if f"spatial{suffix}" not in case:
            continue
        img = _crop_to_patch(case["img"], model.patch_size)
        with torch.no_grad():
            out = model(img, case["wavelengths"])
        torch.testing.assert_close(out.spatial, case[f"spatial{suffix}"], rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"{case['name']} spatial ({which}): {m}")
        torch.testing.assert_close(out.spectral, case[f"spectral{suffix}"], rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"{case['name']} spectral ({which}): {m}")
        n_checked += 1
    assert n_checked >= (1 if which == "teacher" else len(fixture["cases"]))


def test_intermediates_match_upstream(fixture):
    """Stage by stage on case 1, so a mismatch points at its stage."""
    inter = fixture["intermediates_case1"]
    case = fixture["cases"][1]
    model = carl_geo.load_carl(fixture["_ckpt_path"], fixture["_config"])
    img = _crop_to_patch(case["img"], model.patch_size)
    with torch.no_grad():
        tokens = model.embed_bands(img)
        torch.testing.assert_close(tokens, inter["patch_tokens"], rtol=1e-4, atol=1e-4)
        pos = model.spectral_tf.positional_embedding(case["wavelengths"])
        torch.testing.assert_close(pos, inter["wavelength_pos_enc"].reshape(pos.shape), rtol=1e-4, atol=1e-4)
        out = model.spectral_tf(tokens, case["wavelengths"])
        torch.testing.assert_close(out["queries"], inter["queries_out"], rtol=1e-4, atol=1e-4)


def test_deterministic_buffers(fixture):
    bufs = fixture["deterministic_buffers"]
    for key, value in bufs.items():
        if key.startswith("wavelength_dims_d"):
            d_part, sigma_part = key.removeprefix("wavelength_dims_d").split("_sigma")
            d, sigma = int(d_part), float(sigma_part)
            torch.testing.assert_close(wavelength_frequencies(d, sigma), value.float(), rtol=0, atol=1e-6)
        elif key.startswith("queries_pos_enc_d"):
            d, n = (int(x) for x in key.removeprefix("queries_pos_enc_d").split("_n"))
            torch.testing.assert_close(sincos_1d(d, n), value.reshape(n, d).float(), rtol=0, atol=1e-6)


def test_band_permutation_matches_upstream(fixture):
    case = fixture["cases"][0]
    model = carl_geo.load_carl(fixture["_ckpt_path"], fixture["_config"])
    perm = torch.randperm(case["img"].shape[1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = model(case["img"], case["wavelengths"]).spatial
        b = model(case["img"][:, perm], case["wavelengths"][:, perm]).spatial
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_published_checkpoint_layout_loads_strict():
    """The published checkpoint's backbone keys and shapes are exactly the published config's."""
    if REF is None or not (REF / "published_keys.json").exists():
        pytest.skip("published_keys.json not present")
    meta = json.loads((REF / "published_keys.json").read_text())
    model = carl_geo.CARL(carl_geo.CARLConfig.from_upstream(meta["config_model_kwargs"]))
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for prefix in ("model.", "teacher."):
        pub = {e["key"][len(prefix):]: tuple(e["shape"]) for e in meta["keys"]
               if e["key"].startswith(prefix) and not e["key"].startswith((prefix + "spectral_predictor", prefix + "spatial_predictor"))}
        assert pub == own, f"{prefix} sub-tree differs: {sorted(set(pub) ^ set(own))[:5]}"
    assert len(own) == meta["downstream_feature_extractor_keys"]["count"]
    assert sum(v.numel() for v in model.state_dict().values()) == meta["downstream_feature_extractor_keys"]["n_elements"]
