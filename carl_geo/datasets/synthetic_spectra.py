"""Synthetic multi-sensor images with a spectral class signal (tests, demos, smoke runs).

Each class k owns a smooth reflectance spectrum r_k(λ) = 0.5 + 0.3·sin(2π·f_k·λ + φ_k) over
wavelength λ (µm); an image of class k is r_k at its sensor's band wavelengths, times a random
brightness, plus a smooth random spatial texture shared by all bands and pixel noise. Any sensor
(any band wavelengths) sees the same classes, so a camera-agnostic encoder can learn them.

This module was ``carl_geo.ssl.synthetic`` before issue #29 (that name still imports).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from carl_geo.transforms import standardize_image


def class_spectra(wavelengths: torch.Tensor, num_classes: int, seed: int = 1234) -> torch.Tensor:
    """(num_classes, C) reflectances of the classes at ``wavelengths`` (C,) µm."""
    g = torch.Generator().manual_seed(seed)
    freq = 0.3 + 0.9 * torch.rand(num_classes, 1, generator=g)
    phase = 2 * math.pi * torch.rand(num_classes, 1, generator=g)
    return 0.5 + 0.3 * torch.sin(2 * math.pi * freq * wavelengths[None, :] + phase)


class SyntheticSpectralDataset(Dataset):
    """``n`` images of one sensor.

    Args:
        n: number of images.
        wavelengths: band centres (µm) of the sensor.
        size: image side (pixels).
        num_classes: classes (balanced, cycling).
        seed: seed of the images (the class spectra are shared by every seed).
        labelled: add ``label`` to the samples.
        noise: pixel noise relative to the reflectance.

    Samples: ``image`` (C, size, size) standardised per image, ``wavelengths`` (C,) µm, and
    ``label`` () int64 when ``labelled``.
    """

    def __init__(self, n: int, wavelengths: Sequence[float], size: int = 32, num_classes: int = 4, seed: int = 0,
                 labelled: bool = False, noise: float = 0.05) -> None:
        self.wavelengths = torch.tensor(list(wavelengths), dtype=torch.float32)
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % num_classes
        spectra = class_spectra(self.wavelengths, num_classes)[self.labels]  # (n, C)
        texture = F.interpolate(torch.rand(n, 1, max(size // 8, 1), max(size // 8, 1), generator=g), size=(size, size),
                                mode="bilinear", align_corners=False)
        bright = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
        images = spectra[:, :, None, None] * bright * (0.8 + 0.4 * texture)
        self.images = images + noise * torch.randn(images.shape, generator=g)
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = {"image": standardize_image(self.images[index]), "wavelengths": self.wavelengths}
        if self.labelled:
            sample["label"] = self.labels[index]
        return sample
