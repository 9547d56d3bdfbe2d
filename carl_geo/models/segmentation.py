"""Dense prediction on top of the CARL backbone.

:class:`CARLSegmenter` maps (B, C, H, W) + wavelengths to per-pixel class logits (B, K, H, W);
:class:`CARLEmbedder` maps them to per-pixel features (B, D, H, W). Both share the call
signature ``model(img, wavelengths)`` that the tiled predictor uses.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError
from carl_geo.models.carl import CARL


class LinearHead(nn.Module):
    """Upstream's linear probe: a 1x1 convolution on the spatial features (B, D, h, w) -> (B, K, h, w)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, num_classes, kernel_size=1)

    def forward(self, feats: Tensor) -> Tensor:
        return self.conv(feats)


class ProgressiveHead(nn.Module):
    """A light decoder: 1x1 projection, then ``n_up`` x2 upsampling stages of 3x3 conv + BN + GELU,
    then a 1x1 classifier. Sharper boundaries than the linear head at patch size 8 (n_up = 3)."""

    def __init__(self, in_dim: int, num_classes: int, width: int = 64, n_up: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, width, kernel_size=1)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.GELU())
            for _ in range(n_up)
        )
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, feats: Tensor) -> Tensor:
        x = self.proj(feats)
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return self.classifier(x)


HEADS = {"linear": LinearHead, "progressive": ProgressiveHead}


class CARLSegmenter(nn.Module):
    """CARL backbone + segmentation head.

    Args:
        backbone: a :class:`CARL` model.
        num_classes: K output classes.
        head: ``"linear"`` (1x1 conv, upstream's linear probe) or ``"progressive"``.
        head_kwargs: extra arguments of the head class.

    ``forward(img (B, C, H, W), wavelengths (C,) | (B, C) µm, band_mask=None)`` returns logits
    (B, K, H, W), bilinearly upsampled from the (ceil(H/p), ceil(W/p)) grid and cropped to H x W.
    """

    def __init__(self, backbone: CARL, num_classes: int, head: str = "linear",
                 head_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if head not in HEADS:
            raise CarlGeoError(f"unknown head {head!r}; choose one of {sorted(HEADS)}")
        if num_classes < 1:
            raise CarlGeoError("num_classes must be >= 1")
        self.backbone = backbone
        self.num_classes = num_classes
        self.head_name = head
        self.head_kwargs = dict(head_kwargs or {})
        self.head = HEADS[head](backbone.embed_dim, num_classes, **self.head_kwargs)

    def head_config(self) -> dict[str, Any]:
        """Plain dict that rebuilds this head: ``{"type", "num_classes", "kwargs"}``."""
        return {"type": self.head_name, "num_classes": self.num_classes, "kwargs": dict(self.head_kwargs)}

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        feats = self.backbone(img, wavelengths, band_mask).spatial
        return upsample_to(self.head(feats), img.shape[-2:], self.backbone.patch_size)


class CARLEmbedder(nn.Module):
    """Per-pixel CARL features: ``forward(img, wavelengths) -> (B, D, H, W)`` (bilinear upsampling
    of the spatial features; ``which="spectral"`` returns the connector output instead)."""

    def __init__(self, backbone: CARL, which: str = "spatial") -> None:
        super().__init__()
        if which not in ("spatial", "spectral"):
            raise CarlGeoError("which must be 'spatial' or 'spectral'")
        self.backbone = backbone
        self.which = which

    @property
    def out_channels(self) -> int:
        return self.backbone.embed_dim

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        out = self.backbone(img, wavelengths, band_mask)
        return upsample_to(getattr(out, self.which), img.shape[-2:], self.backbone.patch_size)


def upsample_to(x: Tensor, size: tuple[int, int], patch_size: int) -> Tensor:
    """Upsample (B, K, h', w') so that each grid cell covers ``patch_size`` pixels (or the head's
    own resolution), then crop to ``size`` (the unpadded H, W)."""
    h, w = int(size[0]), int(size[1])
    ph, pw = -(-h // patch_size) * patch_size, -(-w // patch_size) * patch_size
    if x.shape[-2:] != (ph, pw):
        x = F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=False)
    return x[..., :h, :w]
