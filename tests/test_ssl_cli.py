"""``carl-geo pretrain`` on real GeoTIFFs of two sensors (torchgeo sampler, one sensor per batch,
k-NN on a labelled raster), periodic checkpoints, resume, and ``carl-geo export``."""

from __future__ import annotations

import argparse
import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

import carl_geo
from carl_geo.datasets.raster_chips import LabelledRasterChips, LabelRasterSource, RandomChips
from carl_geo.ssl_cli import register_export, run_pretrain
from carl_geo.transforms import standardize_image
import helpers
from helpers import MICRO_BACKBONE, MICRO_PREDICTOR, ROOT

CRS = "EPSG:32633"

pytestmark = pytest.mark.usefixtures("one_thread")


#: this module's scenes: UTM 32N at (500000, 4600000), 10 m unless ``res=`` says otherwise
write_raster = functools.partial(helpers.write_raster, crs=CRS, origin=(500000.0, 4600000.0), tiled=False)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ssl_scenes")
    rng = np.random.default_rng(0)
    classes = np.kron(rng.integers(1, 4, (6, 6)), np.ones((16, 16), dtype=np.int64))  # 96 x 96, values 1-3
    s2 = (1000 + 400 * classes[None] * np.linspace(0.5, 1.5, 13)[:, None, None]
          + rng.normal(0, 50, (13, 96, 96))).astype(np.uint16)
    l8 = (1000 + 300 * classes[None, :80, :80] * np.linspace(1.2, 0.6, 7)[:, None, None]
          + rng.normal(0, 50, (7, 80, 80))).astype(np.uint16)
    return {"s2": write_raster(d / "s2.tif", s2), "l8": write_raster(d / "l8.tif", l8, res=30.0),
            "labels": write_raster(d / "labels.tif", classes[None].astype(np.uint8))}


def write_config(tmp_path: Path, scenes: dict[str, Path]) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "ssl_tiny_cpu.yaml").read_text())  # the shipped example, shrunk
    model = cfg["model"]["init_args"]
    model.update(backbone=MICRO_BACKBONE, image_size=32,
                 spatial_masking={**model["spatial_masking"], "min_keep": 1},
                 spectral_predictor=MICRO_PREDICTOR, spatial_predictor=MICRO_PREDICTOR, warmup_steps=2)
    data = cfg["data"]["init_args"]
    data.update(sources=[{"paths": str(scenes["s2"]), "sensor": "sentinel2_l1c"},
                         {"paths": str(scenes["l8"]), "sensor": "landsat8_oli"}],
                chip_size=32, chips_per_epoch=8, batch_size=4,
                knn_rasters=[{"image": str(scenes["s2"]), "labels": str(scenes["labels"]), "sensor": "sentinel2_l1c",
                              "chip_size": 16}])
    trainer = cfg["trainer"]
    trainer.update(max_steps=4, max_epochs=None, default_root_dir=str(tmp_path), enable_progress_bar=False,
                   log_every_n_steps=1, enable_model_summary=False)
    trainer["logger"]["init_args"]["save_dir"] = str(tmp_path)
    trainer["callbacks"][0]["init_args"].update(dirpath=str(tmp_path / "ckpt"), every_n_train_steps=2)
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pretrain_cli_checkpoints_resume_and_export(tmp_path, scenes):
    config = write_config(tmp_path, scenes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_pretrain(["--config", str(config)]) == 0
    names = sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert names == ["last.ckpt", "step=000002.ckpt", "step=000004.ckpt"]  # every 2 steps + last
    last = tmp_path / "ckpt" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert [s["sensor"] for s in ckpt["carl_ssl"]["pretrain_sensors"]] == ["sentinel2_l1c", "landsat8_oli"]
    metrics = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val_knn_acc" in metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_pretrain(["fit", "--config", str(config), "--trainer.max_steps", "6", "--ckpt_path",
                             str(last)]) == 0  # read with weights_only=True
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 6

    parser = argparse.ArgumentParser()
    register_export(parser.add_subparsers(dest="command"))
    out = tmp_path / "carl_ssl.safetensors"
    args = parser.parse_args(["export", str(last), str(out), "--which", "teacher"])
    assert args.func(args) == 0
    exported = carl_geo.read_checkpoint(out)
    assert exported["meta"]["which"] == "teacher" and exported["meta"]["global_step"] == 6
    s2 = carl_geo.get_sensor("sentinel2_l1c").wavelengths
    assert exported["meta"]["pretrain_sensors"][0]["wavelengths"] == pytest.approx(list(s2))
    model = carl_geo.load_carl(out)
    teacher = {k[len("teacher."):]: v for k, v in resumed["state_dict"].items() if k.startswith("teacher.")}
    assert all(torch.equal(v, teacher[k]) for k, v in model.state_dict().items())
    bundle = carl_geo.load_bundle(out)
    assert bundle.task == "features"


def test_published_config_parses(capsys):
    with pytest.raises(SystemExit) as e:
        run_pretrain(["--config", str(ROOT / "configs" / "ssl_published.yaml"), "--print_config"])
    assert e.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    init = printed["model"]["init_args"]
    assert init["backbone"] == "published" and init["image_size"] == 128 and init["ema"] == [0.996, 0.99999]
    assert init["spatial_predictor"]["depth"] == 3 and printed["trainer"]["precision"] == "bf16-mixed"
    assert printed["trainer"]["use_distributed_sampler"] is False


def test_raster_chips_are_the_file_pixels_standardised(scenes):
    from carl_geo.datasets import SpectralRaster

    chips = RandomChips(SpectralRaster(scenes["s2"], sensor="sentinel2_l1c"), chip_size=32, length=3, seed=1)
    sample = chips[0]
    assert sample["image"].shape == (13, 32, 32)
    assert torch.allclose(sample["wavelengths"], torch.tensor(carl_geo.get_sensor("sentinel2_l1c").wavelengths))
    box = chips.slices[0]
    with rasterio.open(scenes["s2"]) as src:
        assert src.crs.to_epsg() == 32633
        row, col = src.index(box[0].start + 5.0, box[1].stop - 5.0)  # upper-left pixel centre
        ref = src.read(window=((row, row + 32), (col, col + 32))).astype(np.float32)
    torch.testing.assert_close(sample["image"], standardize_image(torch.from_numpy(ref)), rtol=1e-5, atol=1e-5)
    first = [tuple((s.start, s.stop) for s in b[:2]) for b in chips.slices]
    chips.set_epoch(1)
    assert first != [tuple((s.start, s.stop) for s in b[:2]) for b in chips.slices]  # redrawn per epoch

    bank = LabelledRasterChips(LabelRasterSource(str(scenes["s2"]), str(scenes["labels"]), sensor="sentinel2_l1c",
                                                 chip_size=16), "bank")
    query = LabelledRasterChips(LabelRasterSource(str(scenes["s2"]), str(scenes["labels"]), sensor="sentinel2_l1c",
                                                  chip_size=16), "query")
    assert len(bank) == len(query) == 18 and set(bank.classes) <= {1, 2, 3}
    with rasterio.open(scenes["labels"]) as lab:
        labels = lab.read(1)
    assert int(bank[1]["label"]) == int(labels[0, 32])  # chip (0, 2): the second "white" square
    with pytest.raises(ValueError, match="share the image grid"):
        LabelledRasterChips(LabelRasterSource(str(scenes["l8"]), str(scenes["labels"]), sensor="landsat8_oli"), "bank")


def test_chips_fill_nodata_pixels_before_standardising(tmp_path):
    from carl_geo.datasets import SpectralRaster

    rng = np.random.default_rng(1)
    data = (1000 + rng.normal(0, 100, (13, 64, 64))).astype(np.uint16)
    data[:, :, :40] = 0  # outside the footprint: nodata in every band
    path = write_raster(tmp_path / "edge.tif", data, nodata=0)
    chips = RandomChips(SpectralRaster(path, sensor="sentinel2_l1c"), chip_size=48, length=4, seed=0, nodata=0)
    for i in range(4):
        raw = chips.dataset[chips.slices[i]]["image"]
        missing = (raw == 0).all(dim=0)
        assert missing.any() and not missing.all()  # every 48 px chip of this scene straddles the edge
        img = chips[i]["image"]
        valid_mean = img[:, ~missing].mean(dim=1)
        torch.testing.assert_close(img[:, missing], valid_mean[:, None].expand(-1, int(missing.sum())))
        # the valid pixels keep their contrast (with the zeros in the statistics their std would be ~0.2)
        assert float(img[:, ~missing].std()) > 0.8
