"""Data for CARL-SSL pre-training: unlabelled chips of several sensors, one sensor per batch.

* :class:`~carl_geo.datasets.RandomChips` (:mod:`carl_geo.datasets.raster_chips`, re-exported here):
  ``length`` random chips of a torchgeo GeoDataset (e.g. :class:`~carl_geo.datasets.SpectralRaster`) drawn by
  torchgeo's ``RandomGeoSampler``, redrawn every epoch; samples ``image`` (C, H, W) standardised per image
  (one scalar mean/std, as upstream) and ``wavelengths`` (C,) µm.
* :class:`SSLDataModule`: any map-style datasets (one per sensor) -> training batches from
  :class:`~carl_geo.samplers.SensorGroupBatchSampler` (``batching="group"``: one sensor per batch,
  all batches of every source), :class:`~carl_geo.samplers.BalancedSourceBatchSampler` (``"balanced"``: upstream's
  ``MultiDataLoader``, every source truncated to the batch count of the smallest) or padded mixed
  batches with ``band_mask`` (``"pad"``); optional random band subsets per sample
  (``band_subset``, upstream's ``n_channels``, :class:`~carl_geo.datasets.band_subset.RandomBandSubset`);
  optional labelled k-NN monitor sets (bank + query) as two validation loaders.
* :class:`RasterSSLDataModule`: the same from raster files (:class:`RasterSource`), upstream's
  pre-training folders (:class:`~carl_geo.datasets.pretraining_corpora.LayoutSource`: HySpecNet-11k,
  SpectralEarth, BigEarthNet) and labelled chip folders (:class:`~carl_geo.datasets.ChipSource`,
  ``train`` = bank, ``val`` = queries); the LightningCLI data module of ``carl-geo pretrain``.

Distributed training: batches are sharded over ranks here (:class:`~carl_geo.samplers.EpochBatchSampler`:
every rank gets the same number of batches), so the trainer must run with
``use_distributed_sampler=False`` (the pretrain CLI sets it).

The CARL-SSL Lightning module is :class:`carl_geo.trainers.CARLPretrainTask`; this module was
``carl_geo.ssl.data`` before issue #19 (that name still works).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.utils.data import BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler

from carl_geo.datasets.band_subset import MIN_SSL_BANDS, RandomBandSubset
from carl_geo.datasets.collate import pad_bands_collate, same_sensor_collate
from carl_geo.datasets.pretraining_corpora import LayoutSource
from carl_geo.datasets.raster_chips import LabelledRasterChips, LabelRasterSource, RandomChips
from carl_geo.errors import CarlGeoError, check_choice
from carl_geo.samplers.balanced_source import BalancedSourceBatchSampler
from carl_geo.samplers.epochs import EpochBatchSampler
from carl_geo.samplers.sensor_group import SensorGroupBatchSampler

BATCHINGS = ("group", "balanced", "pad")


@dataclass
class RasterSource:
    """Unlabelled rasters of one sensor.

    Attributes:
        paths: raster file(s) or folder(s).
        sensor: :mod:`carl_geo.sensors` preset, or None.
        wavelengths: µm per selected band, or None (then ``sensor``, then the file metadata).
        bands: 1-based band indexes or names to read (default all).
        res: resampling resolution in CRS units (default: the first file's).
        filename_glob: pattern inside folders (default ``*.tif``).
        chips_per_epoch: random chips drawn per epoch (default: the data module's value).
        band_subset: random bands per sample for this source (default: the data module's
            ``band_subset``; 0 = all bands).
    """

    paths: str | list[str]
    sensor: str | None = None
    wavelengths: list[float] | None = None
    bands: list[int | str] | None = None
    res: float | None = None
    filename_glob: str | None = None
    chips_per_epoch: int | None = None
    band_subset: int | None = None


def _sensor_of(dataset: Any) -> str | None:
    """The ``sensor`` of a dataset or of the first dataset it wraps (``.dataset``) that names one."""
    while dataset is not None:
        sensor = getattr(dataset, "sensor", None)
        if isinstance(sensor, str):
            return sensor
        dataset = getattr(dataset, "dataset", None)
    return None


def _band_count(dataset: Dataset) -> int:
    if hasattr(dataset, "band_count"):
        return int(dataset.band_count)
    wl = getattr(dataset, "wavelengths", None)
    if wl is None:
        wl = dataset[0]["wavelengths"]
    return int(torch.as_tensor(wl).numel())


class SSLDataModule(L.LightningDataModule):
    """Pre-training batches from map-style datasets, one dataset per sensor.

    Args:
        train: datasets of samples ``{"image": (C, H, W) standardised, "wavelengths": (C,) µm}``,
            all of the same H, W; one per sensor (band layout).
        knn_bank, knn_query: labelled datasets (samples also carry ``label`` ()) for the k-NN
            monitor: the bank is encoded first, then each query is classified; each may be a
            list (one per sensor).
        batch_size: training samples per batch (>= 2).
        knn_batch_size: samples per k-NN batch.
        batching: ``"group"`` (one sensor per batch, every batch of every source), ``"balanced"``
            (one sensor per batch, every source truncated to the smallest one's batch count: upstream's
            multi-source loader) or ``"pad"`` (mixed, padded).
        num_workers: DataLoader workers.
        seed: base seed of the batch order (and of the band subsets).
        band_subset: keep this many random bands (in random order) of every training sample with
            more bands, drawn per sample and epoch (upstream ``n_channels: 64``); None keeps all.
    """

    def __init__(self, train: Sequence[Dataset] | None = None, knn_bank: Dataset | Sequence[Dataset] | None = None,
                 knn_query: Dataset | Sequence[Dataset] | None = None, batch_size: int = 16,
                 knn_batch_size: int = 64, batching: str = "group", num_workers: int = 0, seed: int = 0,
                 band_subset: int | None = None) -> None:
        super().__init__()
        check_choice("batching", batching, BATCHINGS)
        if band_subset is not None and band_subset < MIN_SSL_BANDS:
            raise CarlGeoError(f"band_subset must be >= {MIN_SSL_BANDS} (CARL-SSL masks band blocks), got {band_subset}")
        if batch_size < 2:
            raise CarlGeoError("batch_size must be >= 2 (the loss's variance terms are taken over the batch)")
        if (knn_bank is None) != (knn_query is None):
            raise CarlGeoError("give both knn_bank and knn_query, or neither")
        self.train_sets = list(train) if train is not None else []
        self.knn_bank, self.knn_query = self._as_list(knn_bank), self._as_list(knn_query)
        self.batch_size, self.knn_batch_size = batch_size, knn_batch_size
        self.batching, self.num_workers, self.seed = batching, num_workers, seed
        self.band_subset = band_subset
        self._subsets_applied = False

    def _with_subset(self, dataset: Dataset, n_bands: int | None, index: int) -> Dataset:
        """``dataset`` wrapped in a :class:`RandomBandSubset` of ``n_bands`` (None/0: unchanged)."""
        if not n_bands or isinstance(dataset, RandomBandSubset):
            return dataset
        if n_bands < MIN_SSL_BANDS:
            raise CarlGeoError(f"band_subset must be >= {MIN_SSL_BANDS} (CARL-SSL masks band blocks), got {n_bands}")
        return RandomBandSubset(dataset, n_bands, seed=self.seed + 104_729 * (index + 1))

    @staticmethod
    def _as_list(d: Dataset | Sequence[Dataset] | None) -> list[Dataset]:
        if d is None:
            return []
        return list(d) if isinstance(d, (list, tuple)) else [d]

    def check_train_sets(self) -> None:
        """Raise ValueError for missing data, too few bands, or too few samples for one batch."""
        if not self.train_sets:
            raise CarlGeoError("no training data: give at least one dataset / raster source")
        for i, d in enumerate(self.train_sets):
            c = _band_count(d)
            if c < MIN_SSL_BANDS:
                raise CarlGeoError(f"training source {i} has {c} bands; CARL-SSL masks band blocks and needs at least "
                                   f"{MIN_SSL_BANDS}")
        world = self.trainer.world_size if self.trainer is not None else 1
        if self.batching == "group":
            n_batches = sum(len(d) // self.batch_size for d in self.train_sets)
        elif self.batching == "balanced":
            n_batches = min(len(d) // self.batch_size for d in self.train_sets) * len(self.train_sets)
        else:
            n_batches = sum(len(d) for d in self.train_sets) // self.batch_size
        if n_batches < world:
            raise CarlGeoError(f"the training data make {n_batches} full batch(es) of {self.batch_size} for "
                               f"{world} process(es); add chips (chips_per_epoch) or lower batch_size")

    def sensor_summary(self) -> list[dict[str, Any]]:
        """Band facts of the training sources (stored in checkpoints and exported files)."""
        out = []
        for d in self.train_sets:
            wl = getattr(d, "wavelengths", None)
            wl = torch.as_tensor(wl if wl is not None else d[0]["wavelengths"]).tolist()
            entry = {"sensor": _sensor_of(d), "wavelengths": [round(float(w), 6) for w in wl]}
            if isinstance(d, RandomBandSubset):
                entry["band_subset"] = d.n_bands
            out.append(entry)
        return out

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            if not self._subsets_applied:
                self.train_sets = [self._with_subset(d, self.band_subset, i) for i, d in enumerate(self.train_sets)]
                self._subsets_applied = True
            self.check_train_sets()
            trainer = self.trainer
            distributed = trainer is not None and trainer.world_size > 1
            if distributed and trainer._accelerator_connector.use_distributed_sampler:
                raise CarlGeoError("CARL-SSL shards its sensor-grouped batches itself: set "
                                   "trainer.use_distributed_sampler: false")

    def _rank(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        dataset = ConcatDataset(self.train_sets)
        if self.batching in ("group", "balanced"):
            cls = SensorGroupBatchSampler if self.batching == "group" else BalancedSourceBatchSampler
            inner = cls.from_concat_dataset(dataset, self.batch_size, shuffle=True, drop_last=True, seed=self.seed)
            collate = same_sensor_collate
        else:
            gen = torch.Generator().manual_seed(self.seed)
            inner = BatchSampler(RandomSampler(dataset, generator=gen), self.batch_size, drop_last=True)
            collate = pad_bands_collate
        rank, world = self._rank()
        sampler = EpochBatchSampler(inner, self.train_sets, rank, world)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate,
                          persistent_workers=False)

    def _knn_loader(self, sets: list[Dataset]) -> DataLoader:
        dataset = ConcatDataset(sets)
        if self.batching in ("group", "balanced"):
            sampler = SensorGroupBatchSampler.from_concat_dataset(dataset, self.knn_batch_size, shuffle=False)
            return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers,
                              collate_fn=same_sensor_collate)
        return DataLoader(dataset, batch_size=self.knn_batch_size, num_workers=self.num_workers,
                          collate_fn=pad_bands_collate)

    def val_dataloader(self) -> list[DataLoader]:
        """[bank loader, query loader] (the k-NN monitor), or [] when no labelled sets were given."""
        if not self.knn_bank:
            return []
        return [self._knn_loader(self.knn_bank), self._knn_loader(self.knn_query)]


class RasterSSLDataModule(SSLDataModule):
    """CARL-SSL data from raster files and upstream's pre-training folders (the ``carl-geo
    pretrain`` data module).

    Args:
        sources: one :class:`RasterSource` (or dict of its fields) per sensor (may be empty when
            ``layouts`` are given).
        layouts: upstream's pre-training sources (:class:`~carl_geo.datasets.pretraining_corpora.LayoutSource` or
            dicts: ``layout`` hyspecnet11k / spectralearth / bigearthnet, ``root``, ...), one
            training set each, after the raster sources.
        chip_size: side of the random chips (pixels); the task crops/resizes them to its image_size.
        chips_per_epoch: random chips per source and epoch (unless the source sets its own).
        knn_sources: labelled chip folders (``root/{train,val}/<class>/*.tif``, see
            :class:`~carl_geo.datasets.ChipSource`; ``train`` = bank, ``val`` = queries) for the
            k-NN monitor, or None.
        knn_rasters: labelled scenes (:class:`LabelRasterSource`) for the k-NN monitor, or None.
        batch_size, knn_batch_size, batching, num_workers, seed, band_subset: see
            :class:`SSLDataModule` (a source's own ``band_subset`` wins).
    """

    def __init__(self, sources: list[RasterSource | dict[str, Any]] | None = None, chip_size: int = 128,
                 chips_per_epoch: int = 1024, knn_sources: list[dict[str, Any]] | None = None,
                 knn_rasters: list[LabelRasterSource | dict[str, Any]] | None = None, batch_size: int = 16,
                 knn_batch_size: int = 64, batching: str = "group", num_workers: int = 0, seed: int = 0,
                 layouts: list[LayoutSource | dict[str, Any]] | None = None, band_subset: int | None = None) -> None:
        super().__init__(None, None, None, batch_size=batch_size, knn_batch_size=knn_batch_size, batching=batching,
                         num_workers=num_workers, seed=seed, band_subset=band_subset)
        self.sources = [s if isinstance(s, RasterSource) else RasterSource(**s) for s in sources or []]
        self.layouts = [s if isinstance(s, LayoutSource) else LayoutSource(**s) for s in layouts or []]
        if not self.sources and not self.layouts:
            raise CarlGeoError("give at least one raster source (data.init_args.sources) or pre-training folder "
                             "(data.init_args.layouts)")
        if chip_size < 8:
            raise CarlGeoError(f"chip_size must be >= 8 pixels, got {chip_size}")
        self.chip_size, self.chips_per_epoch = chip_size, chips_per_epoch
        self.knn_sources = list(knn_sources or [])
        self.knn_rasters = [r if isinstance(r, LabelRasterSource) else LabelRasterSource(**r)
                            for r in knn_rasters or []]
        if self.knn_sources and self.knn_rasters:
            raise CarlGeoError("give knn_sources (chip folders) or knn_rasters (labelled scenes), not both")

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and not self.train_sets:
            from carl_geo.datasets import SpectralRaster

            import rasterio

            for i, s in enumerate(self.sources):
                missing = [p for p in ([s.paths] if isinstance(s.paths, (str, os.PathLike)) else s.paths)
                           if not os.path.exists(p)]
                if missing:
                    raise FileNotFoundError(
                        f"raster source {i + 1} ({s.sensor or 'no sensor'}): {missing[0]} does not exist; "
                        "data.init_args.sources[].paths must name GeoTIFF files, or folders holding them "
                        f"({s.filename_glob or '*.tif'}), of one sensor per source")
                raster = SpectralRaster(s.paths, wavelengths=s.wavelengths, sensor=s.sensor, bands=s.bands,
                                        res=s.res, filename_glob=s.filename_glob)
                with rasterio.open(raster.index.filepath.iloc[0]) as first:
                    nodata = first.nodata
                chips = RandomChips(raster, self.chip_size, s.chips_per_epoch or self.chips_per_epoch,
                                    seed=self.seed + 7919 * i, nodata=nodata)
                self.train_sets.append(self._with_subset(chips, self._subset_of(s), i))
            for j, layout in enumerate(self.layouts):
                i = len(self.sources) + j
                reader = layout.build(seed=self.seed + 7919 * i)
                self.train_sets.append(self._with_subset(reader, self._subset_of(layout), i))
            self._subsets_applied = True
        if stage in ("fit", "validate", None) and self.knn_sources and not self.knn_bank:
            from carl_geo.datasets.chips import ChipFolderDataset, ChipSource

            srcs = [s if isinstance(s, ChipSource) else ChipSource(**s) for s in self.knn_sources]
            bank = [ChipFolderDataset(srcs[0], "train")]
            classes = bank[0].classes
            bank += [ChipFolderDataset(s, "train", classes) for s in srcs[1:]]
            self.knn_bank = bank
            self.knn_query = [ChipFolderDataset(s, "val", classes) for s in srcs]
        if stage in ("fit", "validate", None) and self.knn_rasters and not self.knn_bank:
            self.knn_bank = [LabelledRasterChips(r, "bank") for r in self.knn_rasters]
            self.knn_query = [LabelledRasterChips(r, "query") for r in self.knn_rasters]
        super().setup(stage)

    def _subset_of(self, source: RasterSource | LayoutSource) -> int | None:
        return self.band_subset if source.band_subset is None else source.band_subset


__all__ = ["BalancedSourceBatchSampler", "EpochBatchSampler", "LabelRasterSource", "LabelledRasterChips", "RandomChips",
           "RasterSSLDataModule", "RasterSource", "SSLDataModule"]  # samplers, chips: re-exported from their homes
