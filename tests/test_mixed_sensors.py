"""Mixed sensors in one run: padded batches with a band mask, and one-sensor-per-batch sampling."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

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
