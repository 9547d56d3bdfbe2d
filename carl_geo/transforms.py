"""CARL's input normalisation (upstream fact): one scalar mean and std over the whole image, all
bands together, ``(img - mean) / (std + 1e-6)``; not per band."""

from __future__ import annotations

from torch import Tensor, nn

EPS = 1e-6


def standardize_image(img: Tensor) -> Tensor:
    """Standardise each image of (B, C, H, W), or one (C, H, W) image, by its scalar mean/std."""
    dims = tuple(range(img.ndim - 3, img.ndim))
    mean = img.mean(dim=dims, keepdim=True)
    std = img.std(dim=dims, keepdim=True)
    return (img - mean) / (std + EPS)


class ImageStandardize(nn.Module):
    """Module form of :func:`standardize_image` (torchgeo ``Weights.transforms``)."""

    def forward(self, img: Tensor) -> Tensor:
        return standardize_image(img)
