"""Batching samples whose band counts differ (mixed sensors).

A sample is a dict with ``image`` (C, H, W), ``wavelengths`` (C,) in µm and optional
``mask`` (H, W) / ``label`` () or (K,). :func:`pad_bands_collate` pads every image to the largest C
in the batch and adds ``band_mask`` (B, C_max), True for real bands; CARL's spectral encoder
excludes padded bands from attention, so a padded sample's output equals its unpadded output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from carl_geo.errors import CarlGeoError
from carl_geo.validation import PAD_WAVELENGTH_UM

_STACKED_KEYS = ("mask", "label")


def pad_bands_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples with possibly different band counts.

    Returns:
        dict with ``image`` (B, C_max, H, W) float32 (padded bands are 0), ``wavelengths``
        (B, C_max) µm, ``band_mask`` (B, C_max) bool, and ``mask``/``label`` stacked when present.
        Other keys are returned as lists.
    """
    if not samples:
        raise CarlGeoError("cannot collate an empty batch")
    sizes = {tuple(s["image"].shape[-2:]) for s in samples}
    if len(sizes) > 1:
        raise CarlGeoError(f"all images of a batch must share H, W; got {sorted(sizes)}")
    c_max = max(int(s["image"].shape[0]) for s in samples)
    h, w = sizes.pop()
    b = len(samples)
    image = torch.zeros(b, c_max, h, w, dtype=torch.float32)
    wavelengths = torch.full((b, c_max), PAD_WAVELENGTH_UM, dtype=torch.float32)
    band_mask = torch.zeros(b, c_max, dtype=torch.bool)
    for i, s in enumerate(samples):
        c = int(s["image"].shape[0])
        wl = torch.as_tensor(s["wavelengths"], dtype=torch.float32)
        if wl.shape != (c,):
            raise CarlGeoError(f"sample {i}: image has {c} bands but wavelengths has shape {tuple(wl.shape)}")
        image[i, :c] = torch.as_tensor(s["image"], dtype=torch.float32)
        wavelengths[i, :c] = wl
        band_mask[i, :c] = True
    batch: dict[str, Any] = {"image": image, "wavelengths": wavelengths, "band_mask": band_mask}
    for key in _STACKED_KEYS:
        if key in samples[0]:
            batch[key] = torch.stack([torch.as_tensor(s[key]) for s in samples])
    for key in samples[0]:
        if key not in batch and key != "image":
            batch[key] = [s[key] for s in samples]
    return batch


def same_sensor_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples that share their band count (one sensor group); wavelengths become (B, C).

    Raises:
        ValueError: if band counts differ (use :func:`pad_bands_collate` or a
        :class:`~carl_geo.samplers.SensorGroupBatchSampler`).
    """
    counts = {int(s["image"].shape[0]) for s in samples}
    if len(counts) > 1:
        raise CarlGeoError(f"band counts differ within the batch ({sorted(counts)}): use pad_bands_collate "
                           "or SensorGroupBatchSampler")
    batch = pad_bands_collate(samples)
    del batch["band_mask"]
    return batch


def model_inputs(batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(image, wavelengths, band_mask)`` of a collated batch, ready for ``model(*inputs)``."""
    return batch["image"], batch["wavelengths"], batch.get("band_mask")
