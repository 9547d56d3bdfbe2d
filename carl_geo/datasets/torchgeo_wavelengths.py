"""Give samples of existing torchgeo datasets a ``wavelengths`` entry (µm), read from torchgeo's own
band tables (``Sentinel2.wavelengths``, ``Landsat8.wavelengths``, ``EnMAP.wavelengths``, the
``wavelengths`` attribute of HySpecNet-11k and SSL4EO-S12 instances), for the bands the dataset selected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from carl_geo.errors import CarlGeoError


def torchgeo_wavelengths(dataset: Any) -> list[float]:
    """Wavelengths (µm) of the bands a torchgeo dataset returns, in order.

    Raises:
        ValueError: the dataset publishes no per-band wavelengths (e.g. SAR or label-only datasets).
    """
    table = getattr(type(dataset), "wavelengths", None)
    bands = getattr(dataset, "bands", None)
    if isinstance(table, Mapping) and bands:
        missing = [b for b in bands if b not in table]
        if missing:
            raise CarlGeoError(f"{type(dataset).__name__} has no wavelength for bands {missing}")
        return [float(table[b]) for b in bands]
    own = getattr(dataset, "wavelengths", None)
    if own is not None and not isinstance(own, Mapping) and len(own) > 0:
        return [float(w) for w in torch.as_tensor(own).flatten().tolist()]
    raise CarlGeoError(
        f"{type(dataset).__name__} publishes no per-band wavelengths; pass them explicitly "
        "(AddWavelengths([...])) or use a carl_geo.sensors preset"
    )


class AddWavelengths:
    """Sample transform adding ``sample["wavelengths"]`` (C,) µm; usable as a torchgeo ``transforms``.

    Args:
        wavelengths: one value per band of the samples, in µm.
    """

    def __init__(self, wavelengths: Sequence[float] | Tensor) -> None:
        self.wavelengths = torch.as_tensor(wavelengths, dtype=torch.float32).flatten()
        if (self.wavelengths > 100).any():
            raise CarlGeoError("wavelengths must be in micrometres (values > 100 look like nanometres)")

    @classmethod
    def for_dataset(cls, dataset: Any) -> "AddWavelengths":
        """Build from a torchgeo dataset's own band table (see :func:`torchgeo_wavelengths`)."""
        return cls(torchgeo_wavelengths(dataset))

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = sample["image"]
        c = image.shape[-3]
        if c != len(self.wavelengths):
            raise CarlGeoError(f"sample has {c} bands but {len(self.wavelengths)} wavelengths are known")
        sample["wavelengths"] = self.wavelengths.clone()
        return sample


class WithWavelengths(Dataset):
    """Wrap a torchgeo dataset so that each sample carries ``wavelengths`` (C,) µm.

    Indexing is passed through unchanged (integer indices for NonGeoDatasets, slices/bounding
    boxes for GeoDatasets). A ``wavelength`` entry some torchgeo datasets add is renamed.
    """

    def __init__(self, dataset: Any, wavelengths: Sequence[float] | None = None) -> None:
        self.dataset = dataset
        self.add = AddWavelengths(wavelengths) if wavelengths is not None else AddWavelengths.for_dataset(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        sample.pop("wavelength", None)
        return self.add(sample)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)
