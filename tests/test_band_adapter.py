"""The band-agnostic path of a polygon-trained model (issue #27): labelled training pixels kept by wavelength,
interpolated onto other bands, and a forest and an MLP fitted there, fused with the CARL part."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from carl_geo.errors import CarlGeoError, CarlGeoWarning, CheckpointError
from carl_geo.inference.runner import warn_band_path
from carl_geo.models import CARL, CARLSegmenter, get_config, load_bundle, make_bundle, save_bundle
from carl_geo.models.band_adapter import ExemplarBank
from carl_geo.models.config import scratch_variant
from carl_geo.models.context_features import ContextFeatures
from carl_geo.models.pixel_classifier import PixelClassifier
from carl_geo.models.tree_ensemble import fit_random_forest

WL = [0.49, 0.56, 0.665, 0.84, 1.61, 2.19]
#: Class spectra (K = 3) over WL: each class differs from the others in a different part of the spectrum.
SPECTRA = np.array([[1.0, 1.2, 1.0, 3.0, 2.0, 1.0],
                    [1.0, 1.1, 1.3, 1.5, 2.6, 2.0],
                    [2.0, 1.8, 1.6, 1.4, 1.2, 1.0]], dtype=np.float32)


def field_scene(seed: int, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) normalised image of 8 x 8 px fields of the three classes with pixel noise, and (H, W) classes."""
    rng = np.random.default_rng(seed)
    classes = np.kron(rng.integers(0, 3, (size // 8, size // 8)), np.ones((8, 8), dtype=np.int64))
    img = SPECTRA[classes].transpose(2, 0, 1) + rng.normal(0, 0.25, (len(WL), size, size)).astype(np.float32)
    return img.astype(np.float32), classes


@pytest.fixture(scope="module")
def bank():
    img, classes = field_scene(0)
    index = np.random.default_rng(1).choice(img[0].size, 900, replace=False)
    return ExemplarBank.from_image(img, WL, index, classes.ravel()[index], 3, (5, 11), seed=0), img, index


def test_stored_pixels_give_the_features_the_adapter_computes_on_the_new_bands(bank):
    bank, img, index = bank
    sub = [1, 3, 5]
    adapter = bank.adapt([WL[i] for i in sub])
    feats = adapter.context(torch.from_numpy(img[sub])[None])[0].reshape(adapter.context.out_channels, -1)[:, index]
    # the forest's training features, from the stored values as _fit computes them (float16 storage: 1e-2)
    vals = bank.values.float()
    rebuilt = adapter.context.pixel_features(vals[:, sub, 0], [vals[:, sub, 1 + i] for i in range(2)])
    np.testing.assert_allclose(feats.T.numpy(), rebuilt.numpy(), atol=2e-2)
    assert adapter.n_pixels == 900 and bank.adapt([WL[i] for i in sub]) is adapter  # fitted once per band set


def test_the_adapter_averages_a_forest_and_an_mlp_fitted_under_inference_mode(bank):
    bank, img, _ = bank
    sub = [0, 2, 4]
    with torch.inference_mode():  # as the predictor calls it: the MLP's fit switches autograd on for itself
        adapter = bank.adapt([WL[i] for i in sub])
        x = torch.from_numpy(img[sub])[None]
        p = adapter(x)
        feats = adapter.context(x)[0].reshape(adapter.context.out_channels, -1).T
        forest, mlp = (h(feats) for h in adapter.heads)
    assert adapter.head_names == ["forest", "MLP"]
    want = (forest + mlp.softmax(-1)) / 2
    torch.testing.assert_close(p[0].reshape(3, -1).T, want)
    torch.testing.assert_close(p.sum(1), torch.ones_like(p[:, 0]))
    # each head alone maps the scene it was fitted on (chance: 1/3)
    _, classes = field_scene(0)
    for probs in (forest, mlp):
        assert float((probs.argmax(-1).numpy() == classes.ravel()).mean()) > 0.9
    # a bank that fits the forest alone (its setting is saved with it); unknown heads are refused
    only = ExemplarBank(**{**bank.config(), "heads": ["forest"]})
    only.load_state_dict(bank.state_dict())
    assert only.adapt([WL[i] for i in sub]).head_names == ["forest"] and only.config()["heads"] == ["forest"]
    with pytest.raises(CarlGeoError, match="heads are some of forest, mlp, got boosting"):
        ExemplarBank(WL, 10, 3, (5,), heads=["boosting"])


def test_a_bank_keeps_the_adapters_of_the_band_sets_fitted_last(bank, monkeypatch):
    """A long-lived process (the QGIS desktop) that maps from many band sets keeps ADAPTER_CACHE adapters, not all."""
    import carl_geo.models.band_adapter as band_adapter

    bank, _, _ = bank
    only = ExemplarBank(**{**bank.config(), "heads": ["forest"]})
    only.load_state_dict(bank.state_dict())
    monkeypatch.setattr(band_adapter, "ADAPTER_CACHE", 2)
    sets = [[WL[0], WL[3]], [WL[1], WL[4]], [WL[2], WL[5]]]
    first, second = only.adapt(sets[0]), only.adapt(sets[1])
    assert only.adapt(sets[0]) is first and only.adapt(sets[1]) is second  # fitted once per band set
    third = only.adapt(sets[2])  # drops the adapter fitted first
    assert len(only._adapters) == 2 and only.adapt(sets[1]) is second and only.adapt(sets[2]) is third
    refit = only.adapt(sets[0])
    assert refit is not first and len(only._adapters) == 2 and only.adapt(sets[2]) is third
    x = torch.from_numpy(field_scene(3)[0][[0, 3]])[None]
    torch.testing.assert_close(refit(x), first(x))  # the same bank, bands and seed fit the same adapter again
    assert only.adapt([WL[0], 3.5]) is None and len(only._adapters) == 2  # outside the range: kept as None


def test_interpolation_in_wavelength_and_the_range():
    b = ExemplarBank(WL, 10, 3, (5,))
    w = b.interpolation([0.56, 0.6125, 2.2])  # a training band, halfway between two, 0.01 µm past the last
    np.testing.assert_allclose(w[0], [0, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(w[1], [0, 0.5, 0.5, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(w[2], [0, 0, 0, 0, 0, 1])
    assert b.covers([0.45, 2.23]) and not b.covers([0.40]) and not b.covers([0.56, 2.5])
    with pytest.raises(CarlGeoError, match="increase"):
        ExemplarBank([0.56, 0.49], 10, 3, (5,))


def test_the_adapter_maps_another_scene_from_a_band_subset(bank):
    bank, _, _ = bank
    img, classes = field_scene(7)  # another scene, same classes
    for sub in ([0, 1, 2, 3], [3, 4, 5], [1, 4]):
        with torch.no_grad():
            p = bank.adapt([WL[i] for i in sub])(torch.from_numpy(img[sub])[None])[0]
        acc = float((p.argmax(0).numpy() == classes).mean())
        assert acc > 0.9, (sub, acc)  # chance is 1/3


def test_a_subset_between_stored_bands_is_interpolated(bank):
    bank, _, _ = bank
    img, classes = field_scene(8)
    mid = (WL[3] + WL[4]) / 2  # a band no training pixel has: halfway between 0.84 and 1.61 µm
    new = np.stack([img[0], img[2], (img[3] + img[4]) / 2])
    with torch.no_grad():
        p = bank.adapt([WL[0], WL[2], mid])(torch.from_numpy(new)[None])[0]
    assert float((p.argmax(0).numpy() == classes).mean()) > 0.9


@pytest.fixture(scope="module")
def model(bank):
    bank, img, index = bank
    torch.manual_seed(0)
    carl = CARLSegmenter(CARL(scratch_variant(get_config("tiny"), 4)), 3, "progressive", {"width": 16, "n_up": 2}).eval()
    ctx = ContextFeatures(6, windows=(5, 11)).fit(torch.from_numpy(img.reshape(6, -1).T.copy()))
    with torch.no_grad():
        x = ctx(torch.from_numpy(img)[None])[0].reshape(ctx.out_channels, -1)[:, index].T.numpy()
    forest = fit_random_forest(x, bank.labels.numpy(), 3, trees=10)
    return PixelClassifier(carl, WL, ctx, heads=[forest], carl_weight=1 / 3, bank=bank).eval()


def test_the_model_fuses_the_adapter_with_carl_and_saves_its_pixels(model, tmp_path):
    img, _ = field_scene(9, 32)
    x = torch.from_numpy(img)[None]
    wl = torch.tensor(WL)
    sub = [0, 1, 2, 3]
    assert model.band_path(WL) == "heads" and model.band_path(WL[:4]) == "adapted"
    assert model.band_path([0.3, 0.49]) == "carl" and model.adapter([0.3, 0.49]) is None
    with torch.no_grad():
        out = model(x[:, sub], wl[sub])
        want = model.carl(x[:, sub], wl[sub]).softmax(1) / 3 + 2 / 3 * model.adapter(wl[sub])(x[:, sub])
        torch.testing.assert_close(out.exp(), want, atol=1e-5, rtol=1e-4)
        outside = model(x[:, :2], torch.tensor([0.3, 0.49]))  # outside the stored range: CARL alone
        torch.testing.assert_close(outside.exp(), model.carl(x[:, :2], torch.tensor([0.3, 0.49])).softmax(1)
                                   .clamp_min(1e-6))
        # the same bands with centres 8 nm off (another unit of the sensor, a nominal table), in another order: the
        # heads read them as the training bands; 30 nm off they are other bands
        shifted = wl + 0.008
        assert model.band_path(shifted.tolist()) == "heads" and model.band_path((wl + 0.03).tolist()) == "adapted"
        p_carl = model.carl(x, shifted).softmax(1)
        want = p_carl / 3 + 2 / 3 * model.head_probabilities(model.pixel_features(x, p_carl))
        torch.testing.assert_close(model(x.flip(1), shifted.flip(0)).exp(), want, atol=1e-5, rtol=1e-4)
    path = save_bundle(make_bundle(model, class_names=["a", "b", "c"], wavelengths=WL), tmp_path / "m.pt")
    back = load_bundle(path).model
    assert back.bank is not None and torch.equal(back.bank.values, model.bank.values)
    with torch.no_grad():  # refitted after loading, from the same pixels and seed: the same map
        torch.testing.assert_close(back(x[:, sub], wl[sub]), out)
    # a dask worker receives the fitted heads with the model: the same map, never a refit with other threads
    copy = pickle.loads(pickle.dumps(model))
    assert copy.bank._adapters.keys() == model.bank._adapters.keys() and copy.bank._adapters
    with torch.no_grad():
        assert torch.equal(copy(x[:, sub], wl[sub]), model(x[:, sub], wl[sub]))
    # distributed sends a used model between workers with its generic serialiser (it bypasses __getstate__)
    from distributed.protocol import deserialize, serialize

    moved = deserialize(*serialize(back))
    with torch.no_grad():
        torch.testing.assert_close(moved(x[:, sub], wl[sub]), out)
        torch.testing.assert_close(moved(x, wl), back(x, wl))


def test_the_notice_names_the_path(model):
    for wl, words in ((WL[:4], "a forest and an MLP fitted on these wavelengths from the 900 labelled training pixels"),
                      ([0.3, 0.49], "outside the range of its stored training pixels")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert warn_band_path(model, wl)
        assert len(caught) == 1 and issubclass(caught[0].category, CarlGeoWarning)
        assert words in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_band_path(model, WL)
        assert not warn_band_path(model, [w + 0.008 for w in WL])  # the same bands, other centres: the full model


def test_hostile_stored_pixels_are_refused(model, tmp_path):
    path = save_bundle(make_bundle(model, class_names=["a", "b", "c"], wavelengths=WL), tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    pixel = dict(raw["head"]["pixel"])
    pixel["bank"] = {**pixel["bank"], "n_pixels": 10**9}  # a size the stored tensors do not have
    torch.save({**raw, "head": {**raw["head"], "pixel": pixel}}, tmp_path / "big.pt")
    with pytest.raises(CheckpointError, match="exemplar pixels"):
        load_bundle(tmp_path / "big.pt")
    for key, value in (("bank.labels", 7), ("bank.values", float("nan"))):
        state = dict(raw["state_dict"])
        state[key] = state[key].clone()
        state[key][0] = value
        torch.save({**raw, "state_dict": state}, tmp_path / "bad.pt")
        bad = load_bundle(tmp_path / "bad.pt").model
        with pytest.raises(CarlGeoError, match="classes outside|not finite"):
            bad.adapter(WL[:4])


def test_densely_sampled_bands_with_other_centres_are_resampled_for_the_heads(tmp_path):
    # 24 bands 10 nm apart (hyperspectral sampling); the classes differ in smooth spectral shapes
    dense = np.round(np.arange(0.50, 0.74, 0.01), 4)
    shapes = np.stack([1 + 0.5 * np.sin(6 * dense + p) for p in (0.0, 1.5, 3.0)]).astype(np.float32)
    rng = np.random.default_rng(3)
    classes = np.kron(rng.integers(0, 3, (4, 4)), np.ones((8, 8), dtype=np.int64))
    img = shapes[classes].transpose(2, 0, 1) + rng.normal(0, 0.05, (len(dense), 32, 32)).astype(np.float32)
    torch.manual_seed(0)
    carl = CARLSegmenter(CARL(scratch_variant(get_config("tiny"), 4)), 3, "progressive", {"width": 16, "n_up": 2}).eval()
    ctx = ContextFeatures(len(dense), windows=(5,)).fit(torch.from_numpy(img.reshape(len(dense), -1).T.copy()))
    with torch.no_grad():
        feats = ctx(torch.from_numpy(img)[None])[0].reshape(ctx.out_channels, -1).T.numpy()
    forest = fit_random_forest(feats, classes.ravel(), 3, trees=5)
    model = PixelClassifier(carl, dense.tolist(), ctx, heads=[forest], carl_weight=1 / 3).eval()
    x = torch.from_numpy(img)[None]
    for shift, path in ((0.002, "heads"), (0.005, "resampled")):  # within the pairing's 3 nm / beyond it
        given = torch.tensor(dense + shift, dtype=torch.float32)
        assert model.band_path(given.tolist()) == path
        w = torch.as_tensor(model.band_weights(given.tolist()), dtype=torch.float32)
        with torch.no_grad():
            p_carl = model.carl(x, given).softmax(1)
            resampled = torch.einsum("tc,bchw->bthw", w, x)
            want = p_carl / 3 + 2 / 3 * model.head_probabilities(model.pixel_features(resampled, p_carl))
            torch.testing.assert_close(model(x, given).exp(), want.clamp_min(1e-6), atol=1e-5, rtol=1e-4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert warn_band_path(model, given.tolist()) == (path == "resampled")
        if path == "resampled":
            assert "read the training bands taken from them" in str(caught[0].message) and "24: 0.505-0.735" in str(caught[0].message)
    # every third band (30 nm apart) is not dense: the CARL part alone (this model carries no training pixels)
    assert model.band_path(dense[::3].tolist()) == "carl"
