"""Mixed sensors in one run: padded batches with a band mask, and one-sensor-per-batch sampling."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

import carl_geo
from carl_geo.datasets.collate import model_inputs, pad_bands_collate, same_sensor_collate
from carl_geo.samplers import SensorGroupBatchSampler


class _Sensor(Dataset):
    def __init__(self, n: int, sensor: str, seed: int) -> None:
        self.wl = torch.tensor(carl_geo.get_sensor(sensor).wavelengths)
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, len(self.wl), 16, 16, generator=g)
        self.sensor = sensor

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "wavelengths": self.wl, "label": torch.tensor(i % 2), "sensor": self.sensor}


def test_padded_sample_equals_unpadded(tiny_model):
    s2, l7 = _Sensor(2, "sentinel2_l2a", 0), _Sensor(2, "landsat7_etm", 1)
    batch = pad_bands_collate([s2[0], l7[0], l7[1]])
    assert batch["image"].shape == (3, 12, 16, 16)
    assert batch["band_mask"].sum(1).tolist() == [12, 6, 6]
    assert batch["label"].tolist() == [0, 0, 1] and batch["sensor"] == ["sentinel2_l2a", "landsat7_etm", "landsat7_etm"]
    with torch.no_grad():
        padded = tiny_model(*model_inputs(batch)).spatial
        for i, sample in enumerate([s2[0], l7[0], l7[1]]):
            alone = tiny_model(sample["image"][None], sample["wavelengths"]).spatial[0]
            torch.testing.assert_close(padded[i], alone, rtol=1e-4, atol=1e-4)


def test_collate_errors():
    s2, l7 = _Sensor(1, "sentinel2_l2a", 0), _Sensor(1, "landsat7_etm", 1)
    with pytest.raises(ValueError, match="band counts differ"):
        same_sensor_collate([s2[0], l7[0]])
    bad = dict(l7[0], wavelengths=torch.ones(5))
    with pytest.raises(ValueError, match="6 bands but wavelengths has shape"):
        pad_bands_collate([bad])


def test_sensor_group_batches():
    ds = ConcatDataset([_Sensor(10, "sentinel2_l2a", 0), _Sensor(7, "landsat7_etm", 1), _Sensor(5, "rgbn", 2)])
    sampler = SensorGroupBatchSampler.from_concat_dataset(ds, batch_size=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2 + 2
    assert sorted(i for b in batches for i in b) == list(range(22))  # every sample once
    groups = [{0 if i < 10 else 1 if i < 17 else 2 for i in b} for b in batches]
    assert all(len(g) == 1 for g in groups)
    first_groups = [next(iter(g)) for g in groups]
    assert first_groups != sorted(first_groups)  # batches of the groups are interleaved
    sampler.set_epoch(1)
    assert list(sampler) != batches  # new order per epoch
    dropped = SensorGroupBatchSampler([10, 7, 5], batch_size=4, drop_last=True)
    assert len(list(dropped)) == len(dropped) == 2 + 1 + 1
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=same_sensor_collate)
    for batch in loader:
        assert batch["image"].shape[1] == batch["wavelengths"].shape[1] in (12, 6, 4)


class _IndexData(Dataset):
    def __init__(self, n: int, offset: int) -> None:
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"index": torch.tensor(self.offset + i), "x": torch.ones(2)}


class _GroupData(L.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        self.data = ConcatDataset([_IndexData(9, 0), _IndexData(6, 9)])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_sampler=SensorGroupBatchSampler.from_concat_dataset(self.data, 3))

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_sampler=SensorGroupBatchSampler.from_concat_dataset(self.data, 3, shuffle=False))


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[list[list[int]]] = []

    def on_train_epoch_start(self) -> None:
        self.seen.append([])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen[-1].append(batch["index"].tolist())
        return self.layer(batch["x"]).sum()

    def predict_step(self, batch: dict, batch_idx: int) -> list[int]:
        return batch["index"].tolist()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_sensor_group_sampler_under_lightning(tmp_path):
    """Lightning's per-epoch set_epoch reaches the batch sampler (new order each epoch), and
    prediction, where Lightning re-creates the batch sampler, still yields every sample once."""
    model, dm = _Recorder(), _GroupData()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, dm)
    assert len(model.seen) == 3
    for epoch in model.seen:
        assert sorted(i for b in epoch for i in b) == list(range(15))
        assert all(max(b) < 9 or min(b) >= 9 for b in epoch)  # one sensor per batch
    assert model.seen[0] != model.seen[1] != model.seen[2]
    predicted = trainer.predict(model, dm)
    assert [i for b in predicted for i in b] == list(range(15))


def test_sensor_group_sampler_splits_batches_between_ranks():
    data = ConcatDataset([_IndexData(10, 0), _IndexData(7, 10)])
    for drop_last, per_rank in ((False, 3), (True, 1)):  # 3 + 2 batches, or 2 + 1 when dropping
        per_rank_batches = []
        for rank in range(2):
            injected = DistributedSampler(data, num_replicas=2, rank=rank)
            sampler = SensorGroupBatchSampler([10, 7], 4, drop_last=drop_last, seed=5, sampler=injected)
            injected.set_epoch(4)  # what Lightning does through batch_sampler.sampler
            assert sampler.epoch == 4
            per_rank_batches.append(list(sampler))
            assert len(per_rank_batches[-1]) == len(sampler) == per_rank
        all_batches = SensorGroupBatchSampler([10, 7], 4, drop_last=drop_last, seed=5)
        all_batches.set_epoch(4)
        expected = {tuple(b) for b in all_batches}
        got = {tuple(b) for r in per_rank_batches for b in r}
        if drop_last:  # the batch that does not fill a round is dropped
            assert len(got) == 2 and got < expected
        else:  # every batch reaches a rank; one runs twice to fill the last round
            assert got == expected
    with pytest.raises(TypeError, match="without its group sizes"):
        SensorGroupBatchSampler(DistributedSampler(data, num_replicas=2, rank=0), batch_size=4)
