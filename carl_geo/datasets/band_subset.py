"""Random band subsets per pre-training sample (upstream's ``n_channels``).

Upstream's EnMAP loaders keep ``randperm(C)[:n_channels]`` of each sample (``n_channels: 64``): a
random set of bands in random order, drawn anew for every sample and epoch, so that CARL-SSL's
contiguous spectral masks act on random wavelength sets and the model sees many band layouts.
:class:`RandomBandSubset` does the same for any dataset of ``{"image", "wavelengths"}`` samples,
reproducibly: the draw of sample ``i`` in epoch ``e`` depends on (seed, e, i) only.

This module was ``carl_geo.ssl.band_subset`` before issue #29 (that name still imports).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from carl_geo.errors import CarlGeoError

#: Fewest bands of a CARL-SSL training sample: the fewest for which a spectral mask exists (one masked
#: band, more than 3 kept; :mod:`carl_geo.ssl.masking`). Band subsets and pre-training sources need as many.
MIN_SSL_BANDS = 5


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator seeded by (seed, epoch, index), independent of the global RNG and of workers."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2**62))


class RandomBandSubset(Dataset):
    """``n_bands`` randomly chosen bands, in random order, of every sample of ``dataset``.

    Samples of a dataset with at most ``n_bands`` bands pass through unchanged (upstream applies
    the subset to its 202-band EnMAP sources only).

    Args:
        dataset: map-style dataset of ``{"image": (C, H, W), "wavelengths": (C,) µm, ...}``.
        n_bands: bands kept per sample.
        seed: base seed of the draws.

    Attributes:
        wavelengths: the wavelengths of ``dataset`` (all bands a subset is drawn from).
    """

    def __init__(self, dataset: Dataset, n_bands: int, seed: int = 0) -> None:
        if int(n_bands) < 1:
            raise CarlGeoError(f"band_subset must be >= 1, got {n_bands}")
        self.dataset, self.n_bands, self.seed = dataset, int(n_bands), seed
        self.epoch = 0

    @property
    def wavelengths(self) -> Any:
        wl = getattr(self.dataset, "wavelengths", None)
        return wl if wl is not None else self.dataset[0]["wavelengths"]

    @property
    def band_count(self) -> int:
        """Bands per sample after the subset."""
        return min(self.n_bands, int(torch.as_tensor(self.wavelengths).numel()))

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of epoch ``epoch`` (forwarded to ``dataset`` too)."""
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def band_indices(self, index: int, n_total: int) -> torch.Tensor:
        """The bands (indices into the sample's C bands) kept for sample ``index`` this epoch."""
        return torch.randperm(n_total, generator=sample_generator(self.seed, self.epoch, index))[: self.n_bands]

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        c = int(sample["image"].shape[0])
        if c <= self.n_bands:
            return sample
        keep = self.band_indices(index, c)
        sample["image"] = sample["image"][keep]
        sample["wavelengths"] = torch.as_tensor(sample["wavelengths"])[keep]
        return sample


__all__ = ["MIN_SSL_BANDS", "RandomBandSubset", "sample_generator"]
