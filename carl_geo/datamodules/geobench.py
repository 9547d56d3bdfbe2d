"""Lightning data module of one GEO-Bench task (train / valid / test of one partition);
``carl_geo.evaluation.geobench.datamodule`` before issue #19 (that name still imports)."""

from __future__ import annotations

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from carl_geo.datasets.geobench.dataset import GeoBenchDataset
from carl_geo.datasets.geobench.reader import GeoBenchTask
from carl_geo.errors import CarlGeoError


class GeoBenchDataModule(LightningDataModule):
    """Loaders as upstream (``carl/data_utils.py``): batch 16, shuffled train batches with the
    last incomplete one dropped (kept when the train split is smaller than one batch).

    Args:
        task: the task.
        partition: ``"default"`` or a reduced-train partition.
        batch_size: samples per batch (upstream 16).
        num_workers: loader processes.
        normalization, band_order, max_samples: see :class:`GeoBenchDataset`.
    """

    def __init__(self, task: GeoBenchTask, partition: str = "default", batch_size: int = 16, num_workers: int = 0,
                 normalization: str = "image", band_order: str = "stored", max_samples: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise CarlGeoError("batch_size must be >= 1")
        self.task = task
        self.partition = task.resolve_partition(partition)
        self.batch_size = batch_size
        self.num_workers = num_workers
        kw = dict(partition=self.partition, normalization=normalization, band_order=band_order,
                  max_samples=max_samples)
        self.datasets = {s: GeoBenchDataset(task, s, **kw) for s in ("train", "valid", "test")}
        for split, ds in self.datasets.items():
            if len(ds) == 0:
                raise CarlGeoError(f"task {task.name}, partition {self.partition}: the {split} split is empty")

    def sizes(self) -> dict[str, int]:
        """Samples per split."""
        return {s: len(d) for s, d in self.datasets.items()}

    def loader(self, split: str, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        """A loader of one split (``"train"``, ``"valid"``, ``"test"``)."""
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=False)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", True, drop_last=len(self.datasets["train"]) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.loader("valid", False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", False)
