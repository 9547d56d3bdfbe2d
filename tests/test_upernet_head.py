"""The UperNet segmentation head (smp's UPerNetDecoder on a simple feature pyramid of the CARL features):
shapes, training on the synthetic segmentation task, loading as a bundle in the tiled predictor, and the
GEO-Bench runner."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader

import carl_geo
from carl_geo.inference import predict_raster
from carl_geo.models.segmentation import HEADS, CARLSegmenter, UperNetHead
from carl_geo.trainers import CARLSegmentationTask
from helpers import write_raster
from test_trainers import SIGNATURES, _segmentation_batches

pytestmark = pytest.mark.usefixtures("one_thread")
L7 = list(carl_geo.get_sensor("landsat7_etm").wavelengths)


def test_pyramid_and_output_shapes():
    head = UperNetHead(64, num_classes=5, width=16)
    assert HEADS["upernet"] is UperNetHead
    levels = head.pyramid(torch.randn(2, 64, 8, 8))
    assert [tuple(x.shape) for x in levels] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4), (2, 16, 2, 2)]
    assert head(torch.randn(2, 64, 8, 8)).shape == (2, 5, 16, 16)  # 1/4 of the image at patch size 8
    assert head(torch.randn(2, 64, 3, 5)).shape == (2, 5, 6, 10)  # odd grids: ceil pooling
    assert head.train()(torch.randn(1, 64, 4, 4)).shape == (1, 5, 8, 8)  # a training batch of one image
    seg = CARLSegmenter(carl_geo.CARL(carl_geo.tiny_config()), 3, "upernet", {"width": 16})
    assert seg(torch.randn(2, 6, 44, 36), torch.tensor(L7)).shape == (2, 3, 44, 36)  # cropped to the input
    assert seg.head_config() == {"type": "upernet", "num_classes": 3, "kwargs": {"width": 16}, "max_bands": None,
                                 "pixelwise": False}
    with pytest.raises(ValueError, match="width must be >= 1"):
        UperNetHead(64, 3, width=0)


def write_scene(path, seed: int = 0):
    """A 6-band Landsat-7-like scene: a vegetation rectangle in water; returns the true class map."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((96, 80), dtype=np.uint8)
    truth[20:70, 16:56] = 1
    veg, water = (np.array(SIGNATURES[k], dtype=np.float32) for k in ("vegetation", "water"))
    img = np.where(truth[None] == 1, veg[:, None, None], water[:, None, None]) + rng.normal(0, 150, (6, 96, 80))
    write_raster(path, img.astype(np.float32), crs="EPSG:32617", origin=(300000.0, 3900000.0), res=30.0, tiled=False)
    return truth


@pytest.mark.slow  # about 4 s on the 2-core machine
def test_upernet_trains_and_predicts_a_raster_as_a_bundle(tmp_path):
    L.seed_everything(0)
    task = CARLSegmentationTask(num_classes=2, config="tiny", mode="scratch", head="upernet", head_kwargs={"width": 32},
                                lr=3e-3, class_names=["water", "vegetation"], wavelengths=L7, sensor="landsat7_etm")
    trainer = L.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(task, train_dataloaders=DataLoader(_segmentation_batches(12, 0), batch_size=None),
                val_dataloaders=DataLoader(_segmentation_batches(3, 1), batch_size=None))
    miou = trainer.callback_metrics["val_mIoU"].item()
    assert miou > 0.6, f"val mIoU {miou:.2f} (chance ~0.33)"

    ckpt = tmp_path / "upernet.ckpt"
    trainer.save_checkpoint(ckpt)
    bundle = carl_geo.load_bundle(ckpt)
    assert isinstance(bundle.model.head, UperNetHead) and bundle.model.head.width == 32
    batch = _segmentation_batches(1, 2)[0]
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(batch["image"], batch["wavelengths"]),
                                   task(batch["image"], batch["wavelengths"]))

    truth = write_scene(tmp_path / "scene.tif")
    result = predict_raster(bundle, tmp_path / "scene.tif", tmp_path / "classes.tif", tile_size=64, overlap=16,
                            device="cpu")
    with rasterio.open(result.path) as out, rasterio.open(tmp_path / "scene.tif") as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        classes = out.read(1)
    accuracy = float((classes == truth).mean())
    assert accuracy > 0.85, f"pixel accuracy {accuracy:.2f} of the predicted map"


def test_geobench_runner_with_the_upernet_head(make_geobench, tmp_path):
    from carl_geo.evaluation.geobench import GeoBenchSettings, run_geobench

    bench = make_geobench(n_train=8, n_valid=4, n_test=4)
    settings = GeoBenchSettings(root=bench, checkpoint="random", out=tmp_path / "o", tasks=["m-synth-seg"],
                                config="tiny", epochs=1, seeds=1, batch_size=4, image_size=0, val_every=1,
                                num_workers=0, progress=False, head="upernet", head_width=16)
    report = run_geobench(settings, log=lambda msg: None)
    (rec,) = report.records
    assert rec["settings"]["head"] == "upernet" and rec["settings"]["head_width"] == 16
    assert 0.0 <= rec["score"] <= 100.0 and report.rows[0]["paper"] is None
    assert json.loads((tmp_path / "o" / "settings.json").read_text())["head"] == "upernet"
    with pytest.raises(ValueError, match="head_width must be >= 1 and needs a progressive or upernet head"):
        GeoBenchSettings(root=bench, checkpoint="random", out=tmp_path / "x", head_width=8).validate()
