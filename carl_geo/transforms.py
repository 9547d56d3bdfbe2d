"""CARL's input normalisation (upstream fact): one scalar mean and std over the whole image, all
bands together, ``(img - mean) / (std + 1e-6)``; not per band.

The formula lives in :func:`normalize` (numpy or torch); :func:`standardize_image` (per image),
:func:`standardize_valid` (per image, valid pixels only), the GEO-Bench per-band statistics and the
polygon trainer's scene statistics all apply it. The tiled predictor's engine applies the same formula
in place on its float32 tile buffers (:func:`carl_geo.inference.normalization.normalize_`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import Tensor, nn

EPS = 1e-6

ArrayT = TypeVar("ArrayT")


def normalize(x: ArrayT, mean: Any, std: Any) -> ArrayT:
    """``(x - mean) / (std + 1e-6)`` for a numpy array or a tensor; ``mean`` / ``std`` are scalars or
    broadcast against ``x`` (e.g. (C, 1, 1) per-band statistics)."""
    return (x - mean) / (std + EPS)  # type: ignore[operator, return-value]


def standardize_image(img: Tensor) -> Tensor:
    """Standardise each image of (B, C, H, W), or one (C, H, W) image, by its scalar mean/std."""
    dims = tuple(range(img.ndim - 3, img.ndim))
    mean = img.mean(dim=dims, keepdim=True)
    std = img.std(dim=dims, keepdim=True)
    return normalize(img, mean, std)


def standardize_valid(x: Tensor, valid: Tensor) -> Tensor:
    """Each image of (B, C, h, w) ``x`` by the scalar mean/std (population std) of its valid pixels
    (``valid`` (B, h, w) bool); invalid pixels become 0."""
    v = valid[:, None].expand_as(x).to(x.dtype)
    n = v.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
    mean = (x * v).sum(dim=(1, 2, 3), keepdim=True) / n
    var = (((x - mean) * v) ** 2).sum(dim=(1, 2, 3), keepdim=True) / n
    return normalize(x, mean, torch.sqrt(var)) * v


class ImageStandardize(nn.Module):
    """Module form of :func:`standardize_image` (torchgeo ``Weights.transforms``)."""

    def forward(self, img: Tensor) -> Tensor:
        return standardize_image(img)
