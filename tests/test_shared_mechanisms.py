"""One implementation per mechanism (issue #19): polygon training scores its hold-out with the inference
engine, one device resolver, one normalisation formula, one k-NN vote, one epoch/rank machinery for the
batch samplers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

import carl_geo
from carl_geo.errors import CarlGeoError
from carl_geo.inference.settings import PredictSettings
from helpers import write_raster

WL4 = [0.49, 0.56, 0.665, 0.842]


class _CountingConv(nn.Module):
    """A 3-class conv model that counts the tiles it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 3, 5, padding=2)
        self.tiles = 0

    def forward(self, img: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        self.tiles += img.shape[0]
        return self.conv(img)


def test_holdout_scoring_is_the_predictor_and_skips_only_unneeded_tiles(tmp_path: Path) -> None:
    from carl_geo.inference import predict_raster
    from carl_geo.polygon_training.polygons import score_holdout

    rng = np.random.default_rng(0)
    raw = rng.normal(1000, 200, (4, 150, 170)).astype(np.float32)
    mean, std = float(raw.mean()), float(raw.std())
    src = write_raster(tmp_path / "in.tif", raw)
    needed = np.zeros((150, 170), dtype=bool)
    needed[10:30, 12:40] = True  # two small "held-out polygons"
    needed[120:140, 140:160] = True
    valid = np.ones_like(needed)
    model = _CountingConv()
    result = predict_raster(model, src, tmp_path / "map.tif", wavelengths=WL4, normalization=(mean, std),
                            tile_size=64, overlap=16, device="cpu")
    model.tiles = 0
    with rasterio.open(result.path) as f:
        full_map = f.read(1).astype(np.int64)
    pred = score_holdout(model, carl_geo.transforms.normalize(raw, mean, std), valid, WL4, needed,
                         torch.device("cpu"), PredictSettings(tile_size=64, overlap=16))
    assert result.tiles == 16 and 0 < model.tiles < result.tiles  # tiles without a needed pixel are skipped
    assert (pred[~needed] == -1).all()
    agree = (pred[needed] == full_map[needed]).mean()
    assert agree > 0.999, agree  # the same tiles, softmax and cosine blending (up to float rounding)


def test_run_array_skip_leaves_needed_pixels_exactly_as_a_full_run() -> None:
    from carl_geo.inference.engine import run_array

    rng = np.random.default_rng(1)
    data = rng.normal(size=(4, 90, 100)).astype(np.float32)
    valid = np.ones((90, 100), dtype=bool)
    needed = np.zeros_like(valid)
    needed[5:9, 60:70] = True
    model = _CountingConv().eval()

    def predict(tiles: torch.Tensor, release) -> torch.Tensor:
        with torch.no_grad():
            out = torch.softmax(model(tiles, torch.tensor(WL4)), 1)
        release()
        return out

    outs = []
    for mask in (None, needed):
        out = np.zeros((3, 90, 100), np.float32)

        def emit(row0: int, blended: torch.Tensor, ok: np.ndarray, out=out) -> None:
            out[:, row0:row0 + blended.shape[1]] = blended.numpy()

        model.tiles = 0
        n = run_array(predict, data, valid, emit, tile_size=32, overlap=8, batch_size=4, mean=0.0, std=1.0,
                      needed=mask)
        outs.append((out, model.tiles, n))
    (full, full_tiles, n_full), (part, part_tiles, n_part) = outs
    assert n_full == n_part == full_tiles and part_tiles < full_tiles / 4
    np.testing.assert_allclose(part[:, needed], full[:, needed], rtol=0, atol=1e-6)


def test_one_device_resolver() -> None:
    from carl_geo import devices
    from carl_geo.inference import runner
    from carl_geo.polygon_training import polygons

    assert polygons.resolve_device is runner.resolve_device is devices.resolve_device
    assert devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(CarlGeoError, match="unknown device 'tpu0'"):
        devices.resolve_device("tpu0")
    if not torch.cuda.is_available():  # training no longer accepts a device it cannot use
        with pytest.raises(CarlGeoError, match="torch sees no CUDA GPU"):
            devices.resolve_device("cuda")


def test_one_normalisation_formula() -> None:
    from carl_geo.transforms import EPS, normalize, standardize_image, standardize_valid

    x = torch.randn(2, 3, 8, 8) * 5 + 7
    m, s = x.mean(dim=(1, 2, 3), keepdim=True), x.std(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(standardize_image(x), (x - m) / (s + EPS))
    arr = x[0].numpy()
    np.testing.assert_allclose(normalize(arr, 7.0, 5.0), (arr - 7.0) / (5.0 + 1e-6), rtol=1e-6)
    valid = torch.zeros(2, 8, 8, dtype=torch.bool)
    valid[:, :4] = True
    out = standardize_valid(x, valid)
    top = x[:, :, :4]
    ref = (top - top.mean(dim=(1, 2, 3), keepdim=True)) / (top.std(dim=(1, 2, 3), unbiased=False, keepdim=True) + EPS)
    torch.testing.assert_close(out[:, :, :4], ref)
    assert (out[:, :, 4:] == 0).all()


def test_one_knn_vote() -> None:
    from carl_geo.ssl import knn as shared
    from carl_geo.evaluation.geobench import knn as geobench_knn
    from carl_geo.ssl.knn import KNNMonitor

    assert geobench_knn.knn_scores is shared.knn_scores
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.2, 1.0]]), dim=1)
    scores = shared.knn_scores(bank, labels, queries, k=3, num_classes=2, temperature=0.1)
    sim = queries @ bank.T
    w = (sim.topk(3, dim=1).values / 0.1).exp()
    top = sim.topk(3, dim=1).indices
    expected = torch.stack([(w * (labels[top] == c)).sum(1) for c in (0, 1)], 1) / w.sum(1, keepdim=True)
    torch.testing.assert_close(scores, expected)
    monitor = KNNMonitor(k=3, temperature=0.1)
    monitor.add_to_bank(bank, labels)
    assert monitor.predict(queries).tolist() == scores.argmax(1).tolist() == [0, 1]


def test_batch_samplers_share_the_epoch_and_rank_machinery() -> None:
    from carl_geo.samplers import BalancedSourceBatchSampler, EpochBatchSampler, SensorGroupBatchSampler
    from carl_geo.samplers.epochs import EpochHook, shard_batches

    batches = [[i] for i in range(10)]
    shards = [shard_batches(batches, r, 3, drop_last=True) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3] and sorted(b for s in shards for b in s) == batches[:9]
    filled = [shard_batches(batches, r, 3, drop_last=False) for r in range(3)]
    assert [len(s) for s in filled] == [4, 4, 4] and {tuple(b) for s in filled for b in s} == {(i,) for i in range(10)}

    class Chips:  # a dataset that redraws its samples every epoch
        epoch = -1

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    chips = Chips()
    inner = SensorGroupBatchSampler([7, 5], batch_size=2, drop_last=True, seed=3)
    outer = EpochBatchSampler(inner, [chips], rank=1, world_size=2)
    assert isinstance(inner.sampler, EpochHook) and isinstance(outer.sampler, EpochHook)
    first = list(outer)
    outer.sampler.set_epoch(4)  # what Lightning calls at the start of an epoch
    assert chips.epoch == 4 and inner.epoch == 4 and list(outer) != first
    assert len(outer) == len(list(outer)) == len(list(inner)) // 2
    balanced = BalancedSourceBatchSampler([8, 4], batch_size=2)
    assert len(balanced) == len(list(balanced)) == 4  # two batches per source, the smaller one's count


def test_one_registry_of_output_kinds() -> None:
    """The predictor, the xarray predictor, the CLI choices and the QGIS plugin's list follow
    ``carl_geo.inference.outputs.OUTPUT_KINDS`` (issue #29)."""
    import ast

    from carl_geo.inference.outputs import OUTPUT_KINDS, class_outputs, output_kind
    from carl_geo.inference.settings import OUTPUTS

    assert OUTPUTS == tuple(OUTPUT_KINDS)  # the settings' (torch-free) Literal, hence the CLI's --output choices
    plugin = Path(__file__).parents[1] / "qgis_plugin" / "carl_qgis" / "algorithms" / "segment_raster.py"
    consts = {t.id: ast.literal_eval(node.value) for node in ast.parse(plugin.read_text()).body
              if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name) and t.id == "OUTPUT_TYPES"}
    assert consts["OUTPUT_TYPES"] == class_outputs() == ("classes", "probabilities")
    with pytest.raises(CarlGeoError, match="output must be one of classes, probabilities, embeddings, got 'rgb'"):
        output_kind("rgb")
    # a kind encodes the blended result: argmax with the model's own class codes, probabilities scaled to uint8
    blended = torch.tensor([[[0.2, 0.7]], [[0.8, 0.3]]])
    assert output_kind("classes").encode(blended, "uint8", [3, 9]).tolist() == [[[9, 3]]]
    assert output_kind("probabilities").encode(blended, "uint8", None)[0].tolist() == [[51, 178]]
