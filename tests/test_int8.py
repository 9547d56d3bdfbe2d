"""precision="int8": ONNX Runtime with int8 weights, close to float32 on a tiny CARL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import carl_geo
from carl_geo.inference import predict_raster
from carl_geo.inference import int8 as int8_mod
from carl_geo.inference.runner import check_precision
from carl_geo.inference.tiling import TileGrid
from helpers import write_raster
from test_predictor import WL4, smooth_image

NEEDS_ORT = pytest.mark.skipif(bool(int8_mod.missing_int8_modules()),
                               reason="int8 packages missing: pip install 'carl-geo[int8]' (scripts/setup.sh does)")


def _bundle(k: int = 5) -> carl_geo.ModelBundle:
    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), k).eval()
    return carl_geo.make_bundle(seg, normalization={"mode": "fixed", "mean": 2000.0, "std": 500.0})


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel cosine similarity of (D, H, W) feature maps."""
    return (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))


@NEEDS_ORT
@pytest.mark.slow
def test_int8_close_to_fp32_on_tiny_carl(tmp_path: Path) -> None:
    bundle = _bundle()
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 150, 170))
    kw = dict(wavelengths=WL4, tile_size=64, overlap=16, batch_size=3, device="auto")
    ref = predict_raster(bundle, src, tmp_path / "p32.tif", output="probabilities", **kw)
    got = predict_raster(bundle, src, tmp_path / "p8.tif", output="probabilities", precision="int8", **kw)
    assert got.device == "cpu" and got.tiles == ref.tiles
    with rasterio.open(ref.path) as a, rasterio.open(got.path) as b:
        p32, p8 = a.read(), b.read()
    diff = np.abs(p32 - p8)
    assert 0 < diff.max() < 0.03, diff.max()  # > 0: the int8 model really ran
    assert (p32.argmax(0) == p8.argmax(0)).mean() >= 0.99
    # the runner built one ONNX Runtime session (one tile shape) for this model and kept it
    sessions = int8_mod.int8_model(bundle.model)._sessions
    grid = TileGrid.build(150, 170, 64, 16)
    assert [k[0] for k in sessions] == [(3, 4, grid.tile_h, grid.tile_w)]

    e32 = predict_raster(bundle, src, tmp_path / "e32.tif", output="embeddings", **kw)
    e8 = predict_raster(bundle, src, tmp_path / "e8.tif", output="embeddings", precision="int8", **kw)
    with rasterio.open(e32.path) as a, rasterio.open(e8.path) as b:
        f32, f8 = a.read(), b.read()
    assert f32.shape == f8.shape == (128, 150, 170)
    cos = _cosine(f32.astype(np.float64), f8.astype(np.float64))
    assert cos.mean() >= 0.995 and np.percentile(cos, 1) >= 0.98, (cos.mean(), cos.min())


@pytest.mark.slow  # compiles, exports or trains: 1.5-3 s each under load; together they push "not slow" past 1 min
@NEEDS_ORT
def test_int8_model_reexports_after_weights_change() -> None:
    torch.manual_seed(0)

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
            return self.fc(img.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    module = Linear().eval()
    model = int8_mod.int8_model(module)
    assert int8_mod.int8_model(module) is model
    x, wl = torch.randn(2, 4, 8, 8), torch.tensor(WL4)
    first = model(x, wl)
    with torch.no_grad():
        ref = module(x, wl)
        assert first.shape == ref.shape == (2, 3, 8, 8)
        assert torch.allclose(first, ref, atol=0.05)
        module.fc.weight.mul_(-1.0)  # in place: the session must not go stale
        flipped = module(x, wl)
    again = model(x, wl)
    assert torch.allclose(again, flipped, atol=0.05) and not torch.allclose(again, first, atol=0.05)


def test_int8_missing_packages_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(int8_mod, "missing_int8_modules", lambda: ["onnxruntime"])
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 40, 40))
    with pytest.raises(ValueError, match=r"needs onnxruntime \(not installed\).*pip install") as err:
        predict_raster(_bundle(), src, tmp_path / "out.tif", wavelengths=WL4, precision="int8")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.tif").exists()

    from carl_geo.cli import main

    model = tmp_path / "m.pt"
    carl_geo.save_bundle(_bundle(), model)
    assert main(["predict", str(src), str(tmp_path / "o.tif"), "--model", str(model), "--wavelengths",
                 ",".join(map(str, WL4)), "--precision", "int8", "-q"]) == 2
    assert not (tmp_path / "o.tif").exists()


def test_int8_runs_on_the_cpu_only() -> None:
    with pytest.raises(ValueError, match="runs on the CPU"):
        check_precision("int8", torch.device("cuda"))
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("int4", torch.device("cpu"))


def test_int8_export_failure_is_one_plain_line(tmp_path: Path, monkeypatch) -> None:
    """A model the exporter cannot convert (e.g. one whose head has data-dependent shapes) gets one line
    without the exporter's terminal colour codes, and no output file."""
    pytest.importorskip("onnxruntime")

    def fail(*args, **kwargs):
        raise RuntimeError("Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of it.\nmore")

    monkeypatch.setattr(torch.onnx, "export", fail)
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 40, 40))
    with pytest.raises(ValueError, match=r"could not convert this model to ONNX \(Failed to export the model with "
                                         r"torch.export. This is step 1/3 of it.\); use precision 'fp32'") as err:
        predict_raster(_bundle(), src, tmp_path / "out.tif", wavelengths=WL4, precision="int8")
    assert "\x1b" not in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out.tif").exists()


def _ensemble_bundle(carl_inputs: bool = False) -> carl_geo.ModelBundle:
    """A CARL ensemble like the one polygon training keeps: a forest and an MLP on window context (``carl_inputs``:
    also on CARL's probabilities), fused with CARL (w = 1/3), 4 bands."""
    from sklearn.ensemble import RandomForestClassifier

    from carl_geo.models.context_features import ContextFeatures
    from carl_geo.models.pixel_classifier import PixelClassifier, PixelMLP
    from carl_geo.models.tree_ensemble import from_sklearn

    torch.manual_seed(0)
    seg = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 3).eval()
    img = (torch.from_numpy(smooth_image(4, 48, 48, seed=3).astype(np.float32)) - 2000.0) / 500.0
    ctx = ContextFeatures(4, windows=(5,)).fit(img.reshape(4, -1).T)
    with torch.no_grad():
        feats = ctx(img[None])[0]
        if carl_inputs:
            feats = torch.cat([feats, seg(img[None], torch.tensor(WL4)).softmax(1)[0]])
    x = feats.reshape(feats.shape[0], -1).T.numpy()
    y = (img[0] > 0).long().numpy().ravel() + (img[3] > 0.5).long().numpy().ravel()  # 3 classes from the bands
    forest = from_sklearn(RandomForestClassifier(20, random_state=0).fit(x, y), 3)
    mlp = PixelMLP(x.shape[1], 3, hidden=16).eval()
    model = PixelClassifier(seg, WL4, ctx, carl_inputs=carl_inputs, heads=[forest, mlp], carl_weight=1 / 3).eval()
    return carl_geo.make_bundle(model, class_names=["a", "b", "c"], wavelengths=WL4,
                                normalization={"mode": "fixed", "mean": 2000.0, "std": 500.0})


@NEEDS_ORT
@pytest.mark.slow
def test_int8_runs_the_carl_part_of_an_ensemble(tmp_path: Path) -> None:
    """The model polygon training keeps (CARL + forest + MLP heads): its CARL segmenter runs in int8, the forest and
    MLP in float32 torch. With heads on the bands' context the fused map stays close to the float32 one (heads that
    also read the probabilities of this untrained CARL flip on tiny changes: the fusion is checked exactly below)."""
    bundle = _ensemble_bundle()
    src = write_raster(tmp_path / "in.tif", smooth_image(4, 90, 110, seed=3))
    kw = dict(wavelengths=WL4, tile_size=64, overlap=16, batch_size=2, output="probabilities")
    ref = predict_raster(bundle, src, tmp_path / "p32.tif", **kw)
    got = predict_raster(bundle, src, tmp_path / "p8.tif", precision="int8", **kw)
    runner = int8_mod.int8_model(bundle.model)
    assert isinstance(runner, int8_mod.Int8PixelClassifier) and runner.carl.module is bundle.model.carl
    assert len(runner.carl._sessions) == 1 and runner.export_seconds > 0
    with rasterio.open(ref.path) as a, rasterio.open(got.path) as b:
        p32, p8 = a.read(), b.read()
    assert p32.shape == p8.shape == (3, 90, 110)
    diff = np.abs(p32 - p8)
    assert 0 < diff.max() < 0.05, diff.max()  # > 0: the int8 CARL part really ran
    assert (p32.argmax(0) == p8.argmax(0)).mean() >= 0.99

    # one batch by hand: the fusion of int8 CARL logits equals the float32 model's fusion of the same logits
    x = (torch.from_numpy(smooth_image(4, 64, 64, seed=3).astype(np.float32))[None].repeat(2, 1, 1, 1) - 2000) / 500
    wl = torch.tensor(WL4)
    for model in (bundle.model, _ensemble_bundle(carl_inputs=True).model):
        runner = int8_mod.int8_model(model)
        with torch.inference_mode():
            logits8 = runner.carl(x, wl)
            assert 0 < (logits8 - model.carl(x, wl)).abs().max() < 0.1
            torch.testing.assert_close(runner(x, wl), model.fuse(x, wl[None].expand(2, -1), logits8))


def test_int8_refuses_a_forest_outside_pixel_heads_before_reading(tmp_path: Path) -> None:
    """A forest the ONNX export would have to take (not in a PixelClassifier's heads) gets one line that says
    so and what to use, before any export is tried."""
    from carl_geo.models.tree_ensemble import TreeEnsemble

    class WithForest(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = TreeEnsemble(n_nodes=3, n_trees=1, n_features=2, n_classes=2, max_depth=1)

    with pytest.raises(ValueError, match=r"'int8' cannot run this model: it holds a forest outside the pixel "
                                         r"heads.*'fp32'"):
        int8_mod.int8_model(WithForest())
    assert not any(isinstance(k, WithForest) for k in int8_mod._MODELS.keys())


@NEEDS_ORT
def test_int8_weights_get_seven_bits_on_a_cpu_without_vnni(tmp_path: Path, monkeypatch) -> None:
    """Without VNNI, ONNX Runtime's uint8 x int8 products saturate (the published CARL's features fell to a cosine
    of 0.845 on an AVX2 CPU): the weights get 7 bits there (cosine 0.999), and when torch cannot tell."""
    import onnxruntime.quantization as oq

    for answer, reduced in ((True, False), (False, True), (None, True)):
        monkeypatch.setattr(int8_mod, "torch_cpu_check", lambda name, a=answer: a if name == "_is_vnni_supported" else 0)
        assert int8_mod.needs_reduced_range() is reduced
    seen: dict = {}
    original = oq.quantize_dynamic
    monkeypatch.setattr(oq, "quantize_dynamic", lambda *a, **k: seen.update(k) or original(*a, **k))
    torch.manual_seed(0)
    model = carl_geo.CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 3).eval()
    int8_mod.export_int8(model, torch.randn(1, 4, 32, 32), torch.tensor(WL4, dtype=torch.float32), tmp_path / "m.onnx")
    assert seen["reduce_range"] is True and (tmp_path / "m.onnx").is_file()
