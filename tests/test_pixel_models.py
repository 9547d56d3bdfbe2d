"""The parts of polygon training's kept model (issue #27): the tree ensemble (a forest as tensors, pickle-free),
the window context features, the per-pixel classifier with its band-agnostic CARL path, and their bundle files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter
from sklearn.ensemble import RandomForestClassifier

from carl_geo.errors import CheckpointError, CarlGeoError
from carl_geo.models import CARL, CARLSegmenter, get_config, load_bundle, make_bundle, save_bundle
from carl_geo.models.config import scratch_variant
from carl_geo.models.context_features import ContextFeatures, window_mean
from carl_geo.models.pixel_classifier import PixelClassifier, PixelMLP
from carl_geo.models.tree_ensemble import from_sklearn

WL = [0.49, 0.56, 0.665, 0.84, 1.61, 2.19]


@pytest.fixture(scope="module")
def forest_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 12)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] + 0.3 * rng.normal(size=3000) > 0.5)  # classes 0..3
    forest = RandomForestClassifier(20, random_state=0, min_samples_leaf=2).fit(x, y + 1)  # classes 1..4 of K = 6
    return forest, rng.normal(size=(2500, 12)).astype(np.float32)


def test_tree_ensemble_gives_scikit_learns_probabilities_on_both_paths(forest_data):
    forest, x = forest_data
    ens = from_sklearn(forest, 6)
    ens.check()
    want = np.zeros((len(x), 6))
    want[:, forest.classes_] = forest.predict_proba(x)
    fast = ens(torch.from_numpy(x)).numpy()
    assert ens._sk  # scikit-learn's compiled walker was used on the CPU
    np.testing.assert_allclose(fast, want, atol=1e-3)  # leaf values are float16
    ens._sk = []  # the torch walk (other devices)
    walk = ens(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(walk, want, atol=1e-3)
    assert (walk.argmax(1) == want.argmax(1)).mean() > 0.995 and fast[:, [0, 5]].max() == 0  # unseen classes: 0


def test_tree_ensemble_check_refuses_damaged_links(forest_data):
    forest, _ = forest_data
    for name, value in (("left", 10**6), ("right", -5), ("feature", 99), ("roots", 7)):
        ens = from_sklearn(forest, 6)
        inner = int(torch.nonzero(ens.left >= 0)[0])
        getattr(ens, name)[inner if name != "roots" else 1] = value
        with pytest.raises(CarlGeoError, match="tree ensemble"):
            ens.check()
    ens = from_sklearn(forest, 6)
    ens.max_depth = 1
    with pytest.raises(CarlGeoError, match="deeper"):
        ens.check()


def test_window_mean_is_the_mean_over_the_clipped_window():
    x = torch.randn(1, 2, 23, 31, dtype=torch.float64)
    got = window_mean(x, 7).numpy()[0]
    ones = np.ones(x.shape[-2:])
    for c in range(2):  # scipy's zero-padded box filter, divided by the in-image pixel count
        want = uniform_filter(x[0, c].numpy(), 7, mode="constant") / uniform_filter(ones, 7, mode="constant")
        np.testing.assert_allclose(got[c], want, atol=1e-10)


def test_context_features_fit_principal_components():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(5000, 1))
    px = np.concatenate([base * s + 0.01 * rng.normal(size=(5000, 1)) for s in (1, 2, -1, 3)], 1).astype(np.float32)
    ctx = ContextFeatures(4, n_components=2, windows=(3, 5)).fit(torch.from_numpy(px))
    assert ctx.out_channels == 4 + 2 * 2 and ctx.halo == 2
    first = ctx.components[0].numpy()
    assert abs(abs(first @ np.array([1, 1, -1, 1]) / 2) - 1) < 1e-3  # all standardised bands move together
    img = torch.from_numpy(px[:400].T.reshape(1, 4, 20, 20).copy())
    out = ctx(img)
    assert out.shape == (1, 8, 20, 20) and torch.equal(out[:, :4], img)


@pytest.fixture(scope="module")
def classifier_parts():
    torch.manual_seed(0)
    carl = CARLSegmenter(CARL(scratch_variant(get_config("tiny"), 4)), 3, "progressive", {"width": 16, "n_up": 2}).eval()
    img = torch.randn(2, 6, 36, 36)
    ctx = ContextFeatures(6).fit(img.permute(0, 2, 3, 1).reshape(-1, 6))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, ctx.out_channels + 3)).astype(np.float32)
    forest = RandomForestClassifier(8, random_state=0).fit(x, rng.integers(0, 3, 400))
    return carl, img, ctx, {"forest": from_sklearn(forest, 3), "mlp": PixelMLP(ctx.out_channels + 3, 3, hidden=16)}


@pytest.mark.parametrize("kind", ["forest", "mlp"])
def test_pixel_classifier_paths_and_bundle_round_trip(classifier_parts, kind, tmp_path):
    carl, img, ctx, heads = classifier_parts
    pc = PixelClassifier(carl, WL, ctx, carl_inputs=True, heads=[heads[kind]], carl_weight=0.25).eval()
    wl = torch.tensor(WL)
    with torch.no_grad():
        out = pc(img, wl)
        p_carl = carl(img, wl).softmax(1)
        p_head = pc.head_probabilities(pc.pixel_features(img, p_carl))
        if kind == "mlp":
            flat = pc.pixel_features(img, p_carl).permute(0, 2, 3, 1).reshape(-1, pc.feature_channels)
            torch.testing.assert_close(p_head.permute(0, 2, 3, 1).reshape(-1, 3), heads["mlp"](flat).softmax(-1))
        assert out.shape == (2, 3, 36, 36)
        torch.testing.assert_close(out.exp(), 0.25 * p_carl + 0.75 * p_head, atol=1e-5, rtol=1e-4)
        # the training bands in another order: same map
        torch.testing.assert_close(pc(img.flip(1), wl.flip(0)), out, atol=1e-5, rtol=1e-4)
        # the same bands with centres 10 nm off (another unit of the sensor): the heads; other bands: the CARL part
        assert pc.uses_head(WL) and pc.uses_head([w + 0.01 for w in WL]) and pc.band_path([w + 0.01 for w in WL]) == "heads"
        assert not pc.uses_head(WL[:4]) and not pc.uses_head([w + 0.03 for w in WL])
        torch.testing.assert_close(pc(img[:, :4], wl[:4]).exp(), carl(img[:, :4], wl[:4]).softmax(1).clamp_min(1e-6))
    path = save_bundle(make_bundle(pc, class_names=["a", "b", "c"], wavelengths=WL), tmp_path / "m.pt")
    back = load_bundle(path)
    assert isinstance(back.model, PixelClassifier) and back.task == "segmentation" and back.class_names == ["a", "b", "c"]
    with torch.no_grad():
        torch.testing.assert_close(back.model(img, wl), out)


def test_pixel_classifier_file_sizes_are_checked_before_building(classifier_parts, tmp_path):
    carl, _, ctx, heads = classifier_parts
    pc = PixelClassifier(carl, WL, ctx, carl_inputs=True, heads=[heads["forest"], heads["mlp"]], carl_weight=1 / 3).eval()
    path = save_bundle(make_bundle(pc, class_names=["a", "b", "c"], wavelengths=WL), tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    for where, key, value in (("heads", "n_nodes", 10**12), ("heads", "hidden", 10**9), ("context", "n_bands", 10**7)):
        pixel = dict(raw["head"]["pixel"])
        if where == "heads":
            heads = [dict(h) for h in pixel["heads"]]
            h = next(h for h in heads if key in h["kwargs"])
            h["kwargs"] = {**h["kwargs"], key: value}
            pixel["heads"] = heads
        else:
            pixel[where] = {**pixel[where], key: value}
        torch.save({**raw, "head": {**raw["head"], "pixel": pixel}}, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match="does not match the stored weights"):
            load_bundle(tmp_path / "bad.pt")
    bad = {**raw, "state_dict": {**raw["state_dict"], "heads.0.left": raw["state_dict"]["heads.0.left"].clone()}}
    bad["state_dict"]["heads.0.left"][0] = 10**6
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CarlGeoError, match="tree ensemble"):
        load_bundle(tmp_path / "bad.pt")


def test_pixel_classifier_refuses_inconsistent_parts(classifier_parts):
    carl, _, ctx, heads = classifier_parts
    with pytest.raises(CarlGeoError, match="reads 27 features"):
        PixelClassifier(carl, WL, ctx, carl_inputs=False, heads=[heads["mlp"]])
    with pytest.raises(CarlGeoError, match="needs features"):
        PixelClassifier(carl, WL, None, carl_inputs=False, heads=[heads["mlp"]])
    with pytest.raises(CarlGeoError, match="carl_weight"):
        PixelClassifier(carl, WL, ctx, carl_inputs=True, heads=[heads["mlp"]], carl_weight=1.5)
