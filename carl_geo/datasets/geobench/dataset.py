"""GEO-Bench samples as CARL batches: ``image`` (C, H, W), ``wavelengths`` (C,) µm, ``label``/``mask``.

Band handling follows upstream CARL (``carl/data/GeoBenchCls.py``, ``GeoBenchSeg.py``): every band
whose ``band_info`` has a wavelength is kept, in file order; bands without one (elevation, cloud
probability, SAR, hyperspectral cubes without per-band wavelengths) are dropped. Bands stored at
a smaller size than the largest are resampled bilinearly to it (upstream would fail; GEO-Bench's
``m-*`` tasks store all bands at one size).

Normalisation:

* ``"image"`` (upstream, default): one scalar mean and std over the whole image
  (:func:`carl_geo.transforms.standardize_image`);
* ``"band"``: GEO-Bench's per-band statistics from ``band_stats.json``, ``(x - mean_b) / std_b``.

``band_order="corrected"`` replaces the stored wavelengths of ``m-eurosat`` and ``m-brick-kiln``,
whose published metadata names the wrong Sentinel-2 band for most channels (geo-bench issues
#28/#29, "Known issues" in the geobench README); the default ``"stored"`` keeps them, as upstream
CARL (and therefore the paper's numbers) did.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from carl_geo.datasets.geobench.options import BAND_ORDERS, NORMALIZATIONS
from carl_geo.datasets.geobench.reader import SPLITS, GeoBenchFormatError, GeoBenchTask, RawSample, read_sample
from carl_geo.errors import check_choice
from carl_geo.sensors import get_sensor
from carl_geo.transforms import normalize, standardize_image

#: True Sentinel-2 band of each of the 13 channels (geobench README, "Known issues"); TCI_R/G/B
#: (8-bit true-colour composites) take the wavelengths of B04/B03/B02.
CORRECTED_S2_CHANNELS = {
    "m-eurosat": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"),
    "m-brick-kiln": ("B01", "B02", "B03", "B04", "B05", "B07", "B8A", "B08", "B11", "B12", "B04", "B03", "B02"),
}
_warned: set[str] = set()


def corrected_wavelengths(task_name: str, n_bands: int) -> list[float] | None:
    """The true wavelengths (µm) of ``m-eurosat`` / ``m-brick-kiln`` channels, from the
    ``sentinel2_l1c`` preset; ``None`` for other tasks or another band count."""
    bands = CORRECTED_S2_CHANNELS.get(task_name)
    if bands is None or len(bands) != n_bands:
        return None
    s2 = get_sensor("sentinel2_l1c")
    return [float(s2.wavelengths[s2.band_index(b)]) for b in bands]


def warn_band_order(task_name: str, band_order: str) -> None:
    """Warn once per task when its stored wavelengths are known to be wrong and kept."""
    if band_order == "stored" and task_name in CORRECTED_S2_CHANNELS and task_name not in _warned:
        _warned.add(task_name)
        warnings.warn(
            f"{task_name}: GEO-Bench v1.0 stores wrong band names/wavelengths for most channels (geo-bench "
            "issue #28/#29); keeping them as upstream CARL did (comparable to the paper). "
            "Use band_order='corrected' (--band-order corrected) for the true wavelengths.", stacklevel=2)


def spectral_stack(sample: RawSample) -> tuple[np.ndarray, list[float], list[str]]:
    """The bands with a wavelength, stacked: (C, H, W) float32, wavelengths (µm), band names.

    Raises:
        GeoBenchFormatError: no band with a wavelength, or a multi-channel band with one wavelength.
    """
    chosen = [b for b in sample.bands if b.wavelength is not None]
    if not chosen:
        raise GeoBenchFormatError(f"{sample.path}: no band has a wavelength, CARL cannot use this sample")
    for b in chosen:
        if b.data.ndim != 2 and not (b.data.ndim == 3 and b.data.shape[2] == 1):
            raise GeoBenchFormatError(f"{sample.path}: band {b.name!r} has shape {b.data.shape} but one wavelength")
    arrays = [b.data.reshape(b.data.shape[:2]).astype(np.float32) for b in chosen]
    h = max(a.shape[0] for a in arrays)
    w = max(a.shape[1] for a in arrays)
    out = np.empty((len(arrays), h, w), dtype=np.float32)
    for i, a in enumerate(arrays):
        if a.shape != (h, w):
            a = F.interpolate(torch.from_numpy(a)[None, None], size=(h, w), mode="bilinear",
                              align_corners=False)[0, 0].numpy()
        out[i] = a
    return out, [float(b.wavelength) for b in chosen], [b.name for b in chosen]


class GeoBenchDataset(Dataset):
    """One split of one GEO-Bench task for CARL.

    Args:
        task: a :class:`GeoBenchTask` (see :func:`~carl_geo.datasets.geobench.reader.load_task`).
        split: ``"train"``, ``"valid"`` or ``"test"``.
        partition: ``"default"`` or a reduced-train partition (``"0.01x_train"``, ``"0.01x"``).
        normalization: ``"image"`` (upstream) or ``"band"`` (GEO-Bench band statistics).
        band_order: ``"stored"`` (upstream) or ``"corrected"`` (see module docstring).
        max_samples: keep only the first N samples of the split (smoke tests).

    Items are dicts: ``image`` (C, H, W) float32, ``wavelengths`` (C,) float32 µm, and ``label``
    () int64 (classification), (K,) int64 {0, 1} (multi-label) or ``mask`` (H, W) int64.
    """

    def __init__(self, task: GeoBenchTask, split: str, partition: str = "default", normalization: str = "image",
                 band_order: str = "stored", max_samples: int | None = None) -> None:
        check_choice("normalization", normalization, NORMALIZATIONS)
        check_choice("band_order", band_order, BAND_ORDERS)
        check_choice("split", split, SPLITS)
        self.task = task
        self.split = split
        self.normalization = normalization
        self.band_order = band_order
        names = task.partition(partition)[split]
        self.sample_names = names[:max_samples] if max_samples else names
        self.stats = task.band_stats() if normalization == "band" else None
        warn_band_order(task.name, band_order)

    def __len__(self) -> int:
        return len(self.sample_names)

    def __getitem__(self, idx: int) -> dict[str, Tensor]:
        sample = read_sample(self.task.sample_path(self.sample_names[idx]))
        img, wavelengths, names = spectral_stack(sample)
        expected = len(self.task.spectral_bands)
        if expected and img.shape[0] != expected:
            raise GeoBenchFormatError(f"{sample.path}: {img.shape[0]} bands with a wavelength, "
                                      f"task {self.task.name} specifies {expected}")
        if self.band_order == "corrected":
            wavelengths = corrected_wavelengths(self.task.name, len(wavelengths)) or wavelengths
        image = torch.from_numpy(img)
        if self.stats is not None:
            try:
                mean = torch.tensor([self.stats[n][0] for n in names]).view(-1, 1, 1)
                std = torch.tensor([self.stats[n][1] for n in names]).view(-1, 1, 1)
            except KeyError as e:
                raise GeoBenchFormatError(f"{self.task.directory / 'band_stats.json'} has no statistics "
                                          f"for band {e.args[0]!r}") from None
            image = normalize(image, mean, std)
        else:
            image = standardize_image(image)
        item: dict[str, Any] = {"image": image, "wavelengths": torch.tensor(wavelengths, dtype=torch.float32)}
        item.update(self._label(sample))
        return item

    def _label(self, sample: RawSample) -> dict[str, Tensor]:
        k, label = self.task.num_classes, sample.label
        if label is None:
            raise GeoBenchFormatError(f"{sample.path}: no label")
        arr = np.asarray(label)
        if self.task.kind == "multilabel":
            if arr.shape != (k,) or not np.isin(arr, (0, 1)).all():
                raise GeoBenchFormatError(f"{sample.path}: multi-label label must be {k} values in {{0, 1}}, "
                                          f"got shape {arr.shape}")
            return {"label": torch.from_numpy(arr.astype(np.int64))}
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise GeoBenchFormatError(f"{sample.path}: labels must lie in [0, {k - 1}], "
                                      f"found [{arr.min()}, {arr.max()}]")
        if self.task.kind == "segmentation":
            if arr.ndim != 2:
                raise GeoBenchFormatError(f"{sample.path}: segmentation label must be 2-D, got shape {arr.shape}")
            return {"mask": torch.from_numpy(arr.astype(np.int64))}
        if arr.ndim != 0:
            raise GeoBenchFormatError(f"{sample.path}: classification label must be one integer, got {arr.shape}")
        return {"label": torch.tensor(int(arr), dtype=torch.int64)}
