"""CARL Lightning tasks: a short fit on a synthetic task with a learnable spectral signal,
checkpoints usable by the predictor, and LightningCLI on every shipped config."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import carl_geo
from carl_geo.cli import main as cli_main
from carl_geo.datamodules import ChipFolderDataModule
from carl_geo.trainers import CARLClassificationTask, CARLSegmentationTask
from helpers import write_raster

ROOT = Path(__file__).resolve().parents[1]
# Spectral signatures (reflectance-like DN) of two classes: bright NIR "vegetation" vs dark NIR "water".
SIGNATURES = {"vegetation": [300, 500, 300, 3500, 1800, 900], "water": [900, 800, 600, 200, 100, 50]}


def write_chips(root: Path, sensor: str, n_per_class: int, size: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_bands = len(carl_geo.get_sensor(sensor).wavelengths)
    for split, n in (("train", n_per_class), ("val", max(2, n_per_class // 2)), ("test", max(2, n_per_class // 2))):
        for name, sig in SIGNATURES.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.resize(np.array(sig, dtype=np.float32), n_bands)
            for i in range(n):
                data = base[:, None, None] * rng.uniform(0.6, 1.4) + rng.normal(0, 150, (n_bands, size, size))
                write_raster(folder / f"{i}.tif", data.astype(np.float32), origin=(500000.0, 5300000.0), tiled=False)


@pytest.fixture(scope="module")
def chip_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("chips")
    write_chips(root / "s2", "sentinel2_l2a", 12, seed=0)
    write_chips(root / "l7", "landsat7_etm", 12, seed=1)
    return [{"root": str(root / "s2"), "sensor": "sentinel2_l2a"}, {"root": str(root / "l7"), "sensor": "landsat7_etm"}]


@pytest.mark.slow  # compiles, exports or trains: 1.5-3 s each under load; together they push "not slow" past 1 min
@pytest.mark.parametrize("batching", ["group", "pad"])
def test_mixed_sensor_classification_learns(chip_sources, batching, tmp_path):
    L.seed_everything(0)
    dm = ChipFolderDataModule(chip_sources, batch_size=8, batching=batching)
    task = CARLClassificationTask(num_classes=2, config="tiny", mode="scratch", lr=3e-3, class_names=["vegetation", "water"])
    trainer = L.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, enable_model_summary=False)
    trainer.fit(task, dm)
    acc = trainer.callback_metrics["val_Accuracy"].item()
    assert acc >= 0.85, f"validation accuracy {acc:.2f} after 6 epochs (chance 0.5)"
    assert dm.classes == ["vegetation", "water"]


def test_linear_mode_freezes_backbone():
    task = CARLSegmentationTask(num_classes=3, mode="linear")
    assert not any(p.requires_grad for p in task.model.backbone.parameters())
    assert all(p.requires_grad for p in task.model.head.parameters())
    groups = task.configure_optimizers()["optimizer"].param_groups
    assert len(groups) == 1
    finetune = CARLSegmentationTask(num_classes=3, mode="finetune", lr=1e-3, backbone_lr_factor=0.1)
    lrs = sorted(g["lr"] for g in finetune.configure_optimizers()["optimizer"].param_groups)
    assert lrs == pytest.approx([1e-4, 1e-3])
    with pytest.raises(ValueError, match="mode must be one of"):
        CARLSegmentationTask(num_classes=3, mode="frozen")


def _segmentation_batches(n: int, seed: int) -> list[dict]:
    """Images where class 1 (vegetation) occupies a random rectangle of each 32x32 chip."""
    g = torch.Generator().manual_seed(seed)
    wl = torch.tensor(carl_geo.get_sensor("landsat7_etm").wavelengths)
    veg, water = (torch.tensor(SIGNATURES[k], dtype=torch.float32) for k in ("vegetation", "water"))
    out = []
    for _ in range(n):
        mask = torch.zeros(4, 32, 32, dtype=torch.long)
        for b in range(4):
            y, x = torch.randint(0, 16, (2,), generator=g).tolist()
            mask[b, y : y + 16, x : x + 16] = 1
        img = torch.where(mask[:, None].bool(), veg[None, :, None, None], water[None, :, None, None])
        img = img + torch.randn(img.shape, generator=g) * 150
        out.append({"image": carl_geo.transforms.standardize_image(img), "wavelengths": wl.expand(4, -1), "mask": mask})
    return out


@pytest.mark.slow  # > 4 s on the 2-core machine
def test_segmentation_fit_checkpoint_loads_as_bundle(tmp_path):
    L.seed_everything(0)
    task = CARLSegmentationTask(num_classes=2, config="tiny", mode="scratch", head="progressive", lr=3e-3,
                                class_names=["water", "vegetation"], colors=[[0, 0, 255], [0, 160, 0]],
                                wavelengths=list(carl_geo.get_sensor("landsat7_etm").wavelengths), sensor="landsat7_etm")
    trainer = L.Trainer(max_epochs=6, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, enable_model_summary=False)
    trainer.fit(task, train_dataloaders=DataLoader(_segmentation_batches(12, 0), batch_size=None),
                val_dataloaders=DataLoader(_segmentation_batches(3, 1), batch_size=None))
    miou = trainer.callback_metrics["val_MeanIoU"].item()
    assert miou > 0.6, f"val mIoU {miou:.2f} (chance ~0.33)"
    assert trainer.callback_metrics["val_mIoU"].item() == pytest.approx(miou, abs=1e-5)  # upstream's mIoU
    ckpt = tmp_path / "seg.ckpt"
    trainer.save_checkpoint(ckpt)
    bundle = carl_geo.load_bundle(ckpt)  # weights_only load of a Lightning checkpoint, no extra arguments
    assert bundle.task == "segmentation" and bundle.class_names == ["water", "vegetation"]
    assert bundle.colors == [(0, 0, 255), (0, 160, 0)] and bundle.sensor == "landsat7_etm"
    batch = _segmentation_batches(1, 2)[0]
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(batch["image"], batch["wavelengths"]),
                                   task(batch["image"], batch["wavelengths"]))
    (results,) = trainer.test(task, DataLoader(_segmentation_batches(2, 3), batch_size=None), verbose=False)
    per_class = [results["test_IoU_water"], results["test_IoU_vegetation"]]
    assert results["test_mIoU"] == pytest.approx(sum(per_class) / 2, abs=1e-5)
    assert results["test_MeanIoU"] == pytest.approx(results["test_mIoU"], abs=1e-5)  # both classes present


def test_weights_file_config_wins_over_config_name(tmp_path):
    """A carl_geo weights file stores its architecture; the task's ``config`` name only applies to
    files that store none."""
    from dataclasses import replace

    from carl_geo.models import CARL, save_carl
    from carl_geo.models.config import tiny_config

    cfg = tiny_config()
    cfg = replace(cfg, spectral=replace(cfg.spectral, depth=2))
    backbone = CARL(cfg)
    path = save_carl(backbone, tmp_path / "narrow.pt")
    task = CARLSegmentationTask(num_classes=2, config="tiny", weights=str(path), mode="linear")
    assert task.model.backbone.config.spectral.depth == 2
    for (k, a), b in zip(backbone.state_dict().items(), task.model.backbone.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_parse(config, capsys):
    sub = "pretrain" if config.stem.startswith("ssl_") else "fit"
    if sub == "pretrain":
        pytest.skip("SSL configs are checked by the SSL tests")
    with pytest.raises(SystemExit) as info:
        cli_main([sub, "--config", str(config), "--print_config"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: carl_geo" in printed


def test_cli_fast_dev_run(chip_sources, tmp_path):
    rc = cli_main(["fit", "--config", str(ROOT / "configs" / "mixed_sensors.yaml"),
                   f"--data.init_args.sources=[{{root: {chip_sources[0]['root']}, sensor: sentinel2_l2a}}, "
                   f"{{root: {chip_sources[1]['root']}, sensor: landsat7_etm}}]",
                   "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}",
                   "--trainer.accelerator=cpu"])
    assert rc == 0


def test_cli_fast_dev_run_segmentation_from_polygons(tmp_path):
    """The shipped raster + polygons config runs on the shipped North Carolina scene (torchgeo data layer)."""
    rc = cli_main(["fit", "--config", str(ROOT / "configs" / "segmentation_polygons.yaml"),
                   "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}", "--trainer.accelerator=cpu"])
    assert rc == 0


@pytest.mark.slow  # > 4 s on the 2-core machine
def test_polygon_masks_through_torchgeo_intersection():
    from torchgeo.samplers import GridGeoSampler

    from carl_geo.datamodules import RasterPolygonDataModule

    dm = RasterPolygonDataModule(chip_size=32, batch_size=4)
    dm.setup("fit")
    assert dm.class_names == ["developed", "forest", "herbaceous", "sediment", "shrubland", "water"]
    labelled = 0
    for query in GridGeoSampler(dm.dataset, size=32, stride=32, roi=dm.train_roi):
        sample = dm.dataset[query]
        assert sample["image"].shape == (6, 32, 32) and sample["mask"].shape == (32, 32)
        assert set(sample["mask"].unique().tolist()) <= {-1, 0, 1, 2, 3, 4, 5}
        labelled += int((sample["mask"] >= 0).sum())
    assert labelled > 1000  # the polygons land on the image grid after torchgeo reprojects them (EPSG:3358 -> 32119)
