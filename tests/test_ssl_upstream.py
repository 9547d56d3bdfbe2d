"""configs/ssl_upstream.yaml reproduces upstream CARL's SSL recipe step by step on a tiny model (learning
rate per step, EMA momentum per step, Resize + flips augmentation), random band subsets per sample, the
readers of upstream's three pre-training layouts on small generated files, and the balanced
multi-source loader."""

from __future__ import annotations

import functools
import math
import warnings

import kornia.augmentation as K
import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import Dataset

from carl_geo.ssl import CARLPretrainTask, SSLDataModule
from carl_geo.datasets.band_subset import RandomBandSubset
from carl_geo.datamodules.carl_ssl import RasterSSLDataModule
from carl_geo.samplers import BalancedSourceBatchSampler
from carl_geo.datasets.pretraining_corpora import BIGEARTHNET_BANDS_NM, BigEarthNetS2, HySpecNet11k, SpectralEarth
from carl_geo.datasets.synthetic_spectra import SyntheticSpectralDataset
from carl_geo.transforms import standardize_image
from helpers import MICRO_BACKBONE, MICRO_PREDICTOR, ROOT, write_raster

SIZE = 32
S2 = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
HYPER = [round(0.40 + 0.1 * i, 3) for i in range(20)]

pytestmark = pytest.mark.usefixtures("one_thread")


def upstream_model_args(**overrides) -> dict:
    """The model section of configs/ssl_upstream.yaml with the architecture shrunk (no downloads)."""
    cfg = yaml.safe_load((ROOT / "configs" / "ssl_upstream.yaml").read_text())
    args = dict(cfg["model"]["init_args"])
    args.update(backbone=MICRO_BACKBONE, image_size=SIZE, spectral_predictor=MICRO_PREDICTOR,
                spatial_predictor=MICRO_PREDICTOR, spatial_masking={**args["spatial_masking"], "min_keep": 1},
                spatial_init=None, spectral_init=None)
    args.update(overrides)
    return args


def test_upstream_config_states_upstreams_recipe():
    cfg = yaml.safe_load((ROOT / "configs" / "ssl_upstream.yaml").read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert (model["lr_schedule"], model["warmup_steps"], model["crop_scale"]) == ("epoch_cosine", 0, [1.0, 1.0])
    assert (model["lr"], model["min_lr"], model["weight_decay"], model["ema"]) == (1e-4, 1e-6, 1e-2, [0.996, 0.99999])
    assert (model["spatial_init"], model["spectral_init"]) == ("timm", "timm")
    assert model["backbone"]["spat_encoder_kwargs"]["model_name"] == "timm/eva02_base_patch14_224.mim_in22k"
    assert data["batching"] == "balanced" and data["batch_size"] == 16
    assert [(s["layout"], s.get("band_subset")) for s in data["layouts"]] == [
        ("hyspecnet11k", 64), ("bigearthnet", None), ("spectralearth", 64)]
    header = (ROOT / "configs" / "ssl_upstream.yaml").read_text().split("seed_everything")[0]
    assert "Remaining differences" in header and "float16" in header and "permutes" in header


class Recorder(L.Callback):
    """(epoch, learning rate the step used, EMA momentum of its teacher update) of every optimiser step."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lr = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append((trainer.current_epoch, self.lr, pl_module.last_momentum))


def test_upstream_config_reproduces_the_lr_and_ema_schedule_per_step(tmp_path):
    torch.manual_seed(0)
    task = CARLPretrainTask(**upstream_model_args())
    # two sources of 12 and 20 samples, batch 4: the balanced loader gives 3 batches of each per epoch
    train = [SyntheticSpectralDataset(12, S2, SIZE, seed=0), SyntheticSpectralDataset(20, HYPER, SIZE, seed=1)]
    dm = SSLDataModule(train, batch_size=4, batching="balanced")
    rec = Recorder()
    epochs = 4
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[rec],
                        default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, dm)
    assert len(rec.rows) == epochs * 6

    # upstream's scheduler: CosineAnnealingLR(T_max=max_epochs, eta_min=min_lr), stepped once per epoch
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    upstream = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=1e-6)
    upstream_lr = []
    for _ in range(epochs):
        upstream_lr.append(opt.param_groups[0]["lr"])
        opt.step()
        upstream.step()
    total = epochs * 6  # upstream: len(train_loader) * max_epochs momentum steps, one per batch
    for i, (epoch, lr, momentum) in enumerate(rec.rows):
        closed_form = 1e-6 + (1e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        assert lr == pytest.approx(upstream_lr[epoch], rel=1e-9) and lr == pytest.approx(closed_form, rel=1e-9)
        assert momentum == pytest.approx(0.996 + i * (0.99999 - 0.996) / total, rel=1e-12)
    assert rec.rows[0][1] == pytest.approx(1e-4)  # no warm-up: the first step runs at the full rate


def test_upstream_augmentation_is_resize_and_flips():
    task = CARLPretrainTask(**upstream_model_args())
    assert task.augment.upstream
    img = torch.randn(6, 5, 40, 40)
    upstream = K.AugmentationSequential(K.Resize((SIZE, SIZE), p=1.0), K.RandomHorizontalFlip(p=0.5),
                                        K.RandomVerticalFlip(p=0.5), data_keys=["input"], same_on_batch=False)
    torch.manual_seed(3)
    ours = task.augment(img)
    torch.manual_seed(3)
    torch.testing.assert_close(ours, upstream(img), rtol=0, atol=0)

    # the crop is the identity: on 32 x 32 inputs every output is one of the four flips of its input
    x = torch.randn(16, 5, SIZE, SIZE)

    def flips_only(out: torch.Tensor) -> bool:
        return all(any(torch.allclose(o, v, atol=1e-6) for v in (s, s.flip(-1), s.flip(-2), s.flip(-1).flip(-2)))
                   for o, s in zip(out, x))

    torch.manual_seed(0)
    assert flips_only(task.augment(x))
    torch.manual_seed(0)
    assert not flips_only(CARLPretrainTask(**upstream_model_args(crop_scale=(0.8, 1.0))).augment(x))  # carl_geo's crop


def test_epoch_schedule_refuses_a_warmup():
    with pytest.raises(ValueError, match="no warm-up"):
        CARLPretrainTask(**upstream_model_args(warmup_steps=10))
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        CARLPretrainTask(**upstream_model_args(lr_schedule="linear"))


# ----------------------------------------------------------------------------------- band subsets
class Bands(Dataset):
    """Sample i: band b is the constant 100 * b + i (so a band is recognisable after any permutation)."""

    def __init__(self, n: int, wavelengths: list[float]) -> None:
        self.n, self.wavelengths = n, torch.tensor(wavelengths)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        c = len(self.wavelengths)
        return {"image": (100 * torch.arange(c, dtype=torch.float32) + i)[:, None, None].expand(c, 4, 4).clone(),
                "wavelengths": self.wavelengths.clone()}


def test_random_band_subsets_per_sample_and_epoch():
    data = RandomBandSubset(Bands(50, HYPER), 8, seed=1)
    draws = []
    for i in range(50):
        s = data[i]
        bands = (s["image"][:, 0, 0] - i).div(100).round().long()
        assert s["image"].shape == (8, 4, 4) and len(set(bands.tolist())) == 8
        torch.testing.assert_close(s["wavelengths"], torch.tensor(HYPER)[bands])  # each band keeps its wavelength
        draws.append(bands.tolist())
    assert len({tuple(d) for d in draws}) == 50  # a new draw for every sample
    assert any(d != sorted(d) for d in draws)  # random order, as randperm(C)[:n]
    assert set(sum(draws, [])) == set(range(20))  # every band gets drawn
    assert torch.equal(data[7]["wavelengths"], data[7]["wavelengths"])  # reproducible
    first = data[7]["wavelengths"]
    data.set_epoch(1)
    assert not torch.equal(data[7]["wavelengths"], first)  # redrawn every epoch
    few = RandomBandSubset(Bands(3, S2[:6]), 8)
    assert torch.equal(few[1]["image"], Bands(3, S2[:6])[1]["image"])  # fewer bands than the subset: unchanged
    assert few.band_count == 6 and data.band_count == 8


def test_data_module_band_subset_gives_per_sample_wavelengths():
    dm = SSLDataModule([Bands(16, HYPER), Bands(8, S2)], batch_size=4, band_subset=6, batching="group")
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 6
    for b in batches:
        c = b["image"].shape[1]
        assert c == 6 and b["wavelengths"].shape == (4, 6)
    hyper = [b for b in batches if not set(b["wavelengths"].flatten().tolist()) <= set(torch.tensor(S2).tolist())]
    assert len(hyper) == 4 and all(len({tuple(r.tolist()) for r in b["wavelengths"]}) > 1 for b in hyper)
    assert dm.sensor_summary()[0]["band_subset"] == 6
    with pytest.raises(ValueError, match="band_subset must be >= 5"):
        SSLDataModule([Bands(16, HYPER)], band_subset=3)


def test_balanced_loader_truncates_every_source_to_the_smallest():
    sampler = BalancedSourceBatchSampler([10, 25, 13], batch_size=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6  # min(2, 6, 3) = 2 batches of each source
    sources = [0 if b[0] < 10 else 1 if b[0] < 35 else 2 for b in batches]
    assert sorted(sources) == [0, 0, 1, 1, 2, 2]
    for b, g in zip(batches, sources):
        lo, hi = [(0, 10), (10, 35), (35, 48)][g]
        assert len(b) == 4 and all(lo <= i < hi for i in b) and len(set(b)) == 4
    sampler.set_epoch(1)
    assert list(sampler) != batches  # new samples and schedule every epoch


# ----------------------------------------------------------------------------------- layouts
#: the layout tests' files: UTM 33N at (500000, 5000000), 30 m
write_tif = functools.partial(write_raster, crs="EPSG:32633", origin=(500000.0, 5000000.0), res=30.0, tiled=False)


def test_hyspecnet_layout(tmp_path):
    rng = np.random.default_rng(0)
    wl_file = tmp_path / "wl.txt"
    wl_file.write_text("\n".join(f"{1000 * w:.1f}" for w in HYPER))
    raw = {}
    for tile, patch in (("tile_b", "p2"), ("tile_a", "p1"), ("tile_a", "p0")):
        raw[patch] = rng.integers(0, 5000, (20, 12, 12)).astype(np.int16)
        write_tif(tmp_path / "hsn" / tile / patch / f"{patch}-SPECTRAL_IMAGE.TIF", raw[patch])
    data = HySpecNet11k(tmp_path / "hsn", wavelengths_file=str(wl_file))
    assert len(data) == 3 and [p.parent.name for p in data.paths] == ["p0", "p1", "p2"]  # sorted
    s = data[1]
    torch.testing.assert_close(s["image"], standardize_image(torch.from_numpy(raw["p1"]).float() / 10000))
    torch.testing.assert_close(s["wavelengths"], torch.tensor(HYPER))
    with pytest.raises(ValueError, match="has 20 bands but 202 wavelengths"):
        HySpecNet11k(tmp_path / "hsn")[0]  # default: the 202-band EnMAP list
    assert len(HySpecNet11k(tmp_path / "hsn").wavelengths) == 202


def test_spectralearth_layout_reads_bands_as_bands_and_draws_a_date(tmp_path):
    rng = np.random.default_rng(1)
    wl_file = tmp_path / "wl.txt"
    wl_file.write_text("\n".join(f"{1000 * w:.1f}" for w in HYPER))
    dates = {}
    for loc, n in (("loc1", 3), ("loc2", 1)):
        for d in range(n):
            arr = rng.integers(0, 5000, (20, 10, 14)).astype(np.int16)  # H != W: a permutation would show
            dates[(loc, d)] = arr
            write_tif(tmp_path / "se" / loc / f"2023010{d}.tif", arr)
    data = SpectralEarth(tmp_path / "se", wavelengths_file=str(wl_file), seed=0)
    assert len(data) == 2
    picks = set()
    for epoch in range(8):
        data.set_epoch(epoch)
        s = data[0]
        assert s["image"].shape == (20, 10, 14)
        d = data.date_index(0)
        torch.testing.assert_close(s["image"], standardize_image(torch.from_numpy(dates[("loc1", d)]).float() / 1e4))
        picks.add(d)
    assert picks == {0, 1, 2}  # every date gets drawn over the epochs
    assert data.date_index(0) == data.date_index(0)  # fixed within an epoch


def test_bigearthnet_layout_resizes_every_band(tmp_path):
    rng = np.random.default_rng(2)
    sides = {"B01": 2, "B09": 2, "B02": 12, "B03": 12, "B04": 12, "B08": 12}
    patch = tmp_path / "ben" / "S2A_tile" / "S2A_tile_patch_1"
    raw = {}
    for band in BIGEARTHNET_BANDS_NM:
        side = sides.get(band, 6)  # 60 m, 10 m, else 20 m
        raw[band] = rng.integers(0, 10000, (1, side, side)).astype(np.uint16)
        write_tif(patch / f"{patch.name}_{band}.tif", raw[band])
    data = BigEarthNetS2(tmp_path / "ben", size=16)
    s = data[0]
    assert s["image"].shape == (12, 16, 16)
    torch.testing.assert_close(s["wavelengths"], torch.tensor([v / 1000 for v in BIGEARTHNET_BANDS_NM.values()]))
    stack = torch.cat([F.interpolate(torch.from_numpy(raw[b].astype(np.float32))[None], size=(16, 16),
                                     mode="bilinear", align_corners=False)[0] for b in BIGEARTHNET_BANDS_NM])
    torch.testing.assert_close(s["image"], standardize_image(stack / 10000), rtol=1e-5, atol=1e-5)
    (patch / f"{patch.name}_B8A.tif").unlink()
    with pytest.raises(FileNotFoundError, match="S2A_tile_patch_1_B8A.tif"):
        data[0]


def test_pretrain_data_module_with_the_three_layouts(tmp_path):
    rng = np.random.default_rng(3)
    wl_file = tmp_path / "wl.txt"
    wl_file.write_text("\n".join(f"{1000 * w:.1f}" for w in HYPER))
    for i in range(6):
        write_tif(tmp_path / "hsn" / "t" / f"p{i}" / f"p{i}-SPECTRAL_IMAGE.TIF",
                  rng.integers(0, 5000, (20, 16, 16)).astype(np.int16))
    for i in range(9):
        write_tif(tmp_path / "se" / f"l{i}" / "d0.tif", rng.integers(0, 5000, (20, 16, 16)).astype(np.int16))
    for i in range(4):
        patch = tmp_path / "ben" / "t" / f"b{i}"
        for band in BIGEARTHNET_BANDS_NM:
            write_tif(patch / f"b{i}_{band}.tif", rng.integers(0, 10000, (1, 8, 8)).astype(np.uint16))
    dm = RasterSSLDataModule(layouts=[
        {"layout": "hyspecnet11k", "root": str(tmp_path / "hsn"), "wavelengths_file": str(wl_file), "band_subset": 8},
        {"layout": "bigearthnet", "root": str(tmp_path / "ben"), "size": 16},
        {"layout": "spectralearth", "root": str(tmp_path / "se"), "wavelengths_file": str(wl_file),
         "band_subset": 8}], batch_size=2, batching="balanced")
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 6  # min(3, 2, 4) = 2 batches per source
    counts = sorted(b["image"].shape[1] for b in batches)
    assert counts == [8, 8, 8, 8, 12, 12] and all(b["image"].shape[-2:] == (16, 16) for b in batches)
    assert [s["sensor"] for s in dm.sensor_summary()] == ["enmap", "sentinel2_l2a", "enmap"]
    with pytest.raises(ValueError, match="raster source .* or pre-training folder"):
        RasterSSLDataModule(sources=[], layouts=[])


def test_upstream_config_runs_through_the_pretrain_cli(tmp_path):
    """configs/ssl_upstream.yaml, shrunk (micro model, no downloads, tiny generated layouts), runs end to end."""
    from carl_geo.ssl_cli import run_pretrain

    rng = np.random.default_rng(4)
    wl_file = tmp_path / "wl.txt"
    wl_file.write_text("\n".join(f"{1000 * w:.1f}" for w in HYPER))
    for i in range(4):
        write_tif(tmp_path / "hsn" / "t" / f"p{i}" / f"p{i}-SPECTRAL_IMAGE.TIF",
                  rng.integers(0, 5000, (20, SIZE, SIZE)).astype(np.int16))
        write_tif(tmp_path / "se" / f"l{i}" / "d0.tif", rng.integers(0, 5000, (20, SIZE, SIZE)).astype(np.int16))
        for band in BIGEARTHNET_BANDS_NM:
            write_tif(tmp_path / "ben" / "t" / f"b{i}" / f"b{i}_{band}.tif",
                      rng.integers(0, 10000, (1, 8, 8)).astype(np.uint16))
    cfg = yaml.safe_load((ROOT / "configs" / "ssl_upstream.yaml").read_text())
    cfg["model"]["init_args"] = upstream_model_args()
    data = cfg["data"]["init_args"]
    data["layouts"][0].update(root=str(tmp_path / "hsn"), wavelengths_file=str(wl_file), band_subset=8)
    data["layouts"][1].update(root=str(tmp_path / "ben"), size=SIZE)
    data["layouts"][2].update(root=str(tmp_path / "se"), wavelengths_file=str(wl_file), band_subset=8)
    data.update(knn_sources=None, batch_size=2, num_workers=0)
    cfg["trainer"].update(max_epochs=2, accelerator="cpu", precision="32-true", default_root_dir=str(tmp_path),
                          enable_model_summary=False, logger=False)
    cfg["trainer"]["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                    "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}]
    path = tmp_path / "ssl_upstream.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run_pretrain(["--config", str(path)]) == 0
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 * 6  # 2 epochs x (3 sources x 2 batches of 2)
    assert [s.get("band_subset") for s in ckpt["carl_ssl"]["pretrain_sensors"]] == [8, None, 8]
    assert ckpt["hyper_parameters"]["lr_schedule"] == "epoch_cosine"
