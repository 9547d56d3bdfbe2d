"""CARL-SSL training with Lightning on a synthetic multi-sensor set: the loss falls, the k-NN monitor
beats chance, resuming continues the step count and the EMA / learning-rate schedules, and the
checkpoints load with carl_geo's loader and export to a slim backbone file."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

import carl_geo
from carl_geo.datasets.collate import same_sensor_collate
from carl_geo.ssl import CARLPretrainTask, SSLDataModule, export_backbone
from carl_geo.ssl.ema import ema_momentum, warmup_cosine
from carl_geo.datasets.synthetic_spectra import SyntheticSpectralDataset
from helpers import MICRO_BACKBONE, MICRO_PREDICTOR

S2 = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
L8 = [0.443, 0.482, 0.561, 0.655, 0.865, 1.609, 2.201]
SIZE = 48

pytestmark = pytest.mark.usefixtures("one_thread")


def make_task(**kw) -> CARLPretrainTask:
    args = dict(backbone=MICRO_BACKBONE, image_size=SIZE, spectral_predictor=MICRO_PREDICTOR,
                spatial_predictor=MICRO_PREDICTOR,
                spatial_masking={"min_keep": 2}, lr=2e-3, min_lr=1e-4, warmup_steps=3, ema=(0.99, 0.999))
    return CARLPretrainTask(**{**args, **kw})


def synthetic(n: int, wavelengths: list[float], seed: int, labelled: bool = False) -> SyntheticSpectralDataset:
    # noise 0.3: a randomly initialised model scores ~0.3-0.8 k-NN accuracy on it, not 1.0
    return SyntheticSpectralDataset(n, wavelengths, SIZE, seed=seed, labelled=labelled, noise=0.3)


def make_data(knn: bool = True, batch_size: int = 8) -> SSLDataModule:
    train = [synthetic(40, S2, 0), synthetic(40, L8, 1)]
    bank = query = None
    if knn:  # two sensors in the bank and in the queries
        bank = [synthetic(24, S2, 2, True), synthetic(24, L8, 3, True)]
        query = [synthetic(16, S2, 4, True), synthetic(16, L8, 5, True)]
    return SSLDataModule(train, knn_bank=bank, knn_query=query, batch_size=batch_size, knn_batch_size=32)


def make_trainer(tmp_path, **kw) -> L.Trainer:
    args = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
    return L.Trainer(**{**args, **kw})


class Recorder(L.Callback):
    """(global_step, EMA momentum, learning rate) after every optimiser step."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append((trainer.global_step, pl_module.last_momentum, trainer.optimizers[0].param_groups[0]["lr"]))


def fixed_batch_loss(task: CARLPretrainTask, batch: dict) -> float:
    task.eval()
    with torch.no_grad():
        return float(task.compute_loss(batch["image"], batch["wavelengths"], None, batch_idx=123)["loss"])


def test_pretraining_lowers_the_loss_and_the_knn_monitor_beats_chance(tmp_path):
    torch.manual_seed(0)
    task, dm = make_task(), make_data()
    probe = same_sensor_collate([synthetic(8, S2, 9)[i] for i in range(8)])
    before = fixed_batch_loss(task, probe)
    trainer = make_trainer(tmp_path, max_steps=30, val_check_interval=10)  # 10 batches per epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, dm)
    assert trainer.global_step == 30
    after = fixed_batch_loss(task, probe)
    assert after < 0.8 * before, (before, after)
    acc = float(trainer.callback_metrics["val_knn_acc"])
    assert acc > 0.4, acc  # 4 balanced classes: chance is 0.25
    assert task.pretrain_sensors == [{"sensor": None, "wavelengths": S2}, {"sensor": None, "wavelengths": L8}]


def test_resume_continues_steps_and_schedules_and_checkpoints_load(tmp_path):
    torch.manual_seed(0)
    rec1 = Recorder()

    class StopAt(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 4:
                trainer.should_stop = True

    task = make_task()
    trainer = make_trainer(tmp_path, max_steps=8, callbacks=[rec1, StopAt()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, make_data(knn=False))
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    assert [r[0] for r in rec1.rows] == [1, 2, 3, 4]
    assert rec1.rows[0][1] == pytest.approx(0.99)  # the first update uses ema[0]

    raw = torch.load(ckpt, map_location="cpu", weights_only=True)  # plain types only
    assert raw["global_step"] == 4 and raw["carl_ssl"]["image_size"] == SIZE
    teacher_saved = {k[len("teacher."):]: v for k, v in raw["state_dict"].items() if k.startswith("teacher.")}

    rec2 = Recorder()
    task2 = make_task()
    trainer2 = make_trainer(tmp_path, max_steps=8, callbacks=[rec2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer2.fit(task2, make_data(knn=False), ckpt_path=ckpt, weights_only=True)
    assert [r[0] for r in rec2.rows] == [5, 6, 7, 8]
    for step, m, lr in rec1.rows + rec2.rows:  # one schedule over the 8 steps, across the restart
        assert m == pytest.approx(ema_momentum(step - 1, 8, 0.99, 0.999), abs=1e-12)
        assert lr == pytest.approx(2e-3 * warmup_cosine(step, 8, 3, 1e-4 / 2e-3), rel=1e-9)

    # the saved teacher is the one the resumed run started from: loading it with carl_geo's loader
    teacher = carl_geo.load_carl(ckpt, which="teacher")  # config read from the checkpoint
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_saved[k])
    student = carl_geo.load_carl(ckpt)
    assert student.config == task.config
    out = tmp_path / "backbone.safetensors"
    export_backbone(ckpt, out, which="teacher")
    exported = carl_geo.read_checkpoint(out)
    assert not any("predictor" in k for k in exported["state_dict"])
    assert exported["meta"]["which"] == "teacher" and exported["meta"]["global_step"] == 4
    assert exported["meta"]["pretrain_sensors"][1]["wavelengths"] == L8
    reloaded = carl_geo.load_carl(out)
    for k, v in reloaded.state_dict().items():
        assert torch.equal(v, teacher_saved[k])
    with pytest.raises(ValueError, match="which"):
        export_backbone(ckpt, out, which="ema")


def test_data_module_checks_and_sharding():
    few = SSLDataModule([SyntheticSpectralDataset(5, S2, SIZE)], batch_size=8)
    with pytest.raises(ValueError, match="full batch"):
        few.check_train_sets()
    with pytest.raises(ValueError, match="at least 5"):
        SSLDataModule([SyntheticSpectralDataset(16, [0.49, 0.56, 0.66, 0.84], SIZE)], batch_size=8).check_train_sets()
    with pytest.raises(ValueError, match="batch_size"):
        SSLDataModule([SyntheticSpectralDataset(16, S2, SIZE)], batch_size=1)
    from carl_geo.samplers import SensorGroupBatchSampler
    from carl_geo.datamodules.carl_ssl import EpochBatchSampler

    inner = SensorGroupBatchSampler([24, 16], 4, drop_last=True)
    shards = [list(EpochBatchSampler(inner, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # 10 batches -> 3 per rank, equal counts
    flat = [tuple(b) for s in shards for b in s]
    assert len(set(flat)) == 9 and all(all(i < 24 for i in b) or all(i >= 24 for i in b) for b in flat)


def test_lightning_reaches_the_epoch_hook():
    """Lightning calls ``batch_sampler.sampler.set_epoch``: sensor-group order and chip draws change."""
    from carl_geo.samplers import SensorGroupBatchSampler
    from carl_geo.datamodules.carl_ssl import EpochBatchSampler

    class Chips(list):
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

    chips = Chips(range(24))
    inner = SensorGroupBatchSampler([24], 4, drop_last=True)
    sampler = EpochBatchSampler(inner, [chips])
    first = list(sampler)
    sampler.sampler.set_epoch(3)  # what Lightning's _set_sampler_epoch calls
    assert chips.epoch == 3 and inner.epoch == 3 and list(sampler) != first


def test_bf16_mixed_precision_step(tmp_path):
    """The GPU recipe's bf16 autocast path (run here on CPU): finite loss, fp32 weights, teacher updated."""
    torch.manual_seed(0)
    task = make_task()
    before = task.teacher.linear_connector.weight.clone()
    trainer = make_trainer(tmp_path, max_steps=2, precision="bf16-mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, make_data(knn=False))
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert task.teacher.linear_connector.weight.dtype == torch.float32
    assert not torch.equal(task.teacher.linear_connector.weight, before)
