"""Batch augmentations of CARL-SSL (kornia, on the training device, any band count).

Upstream resizes each image to the training size (``K.Resize``) and flips it horizontally and
vertically with p = 0.5; carl_geo's default replaces the plain resize by a random resized crop
(scale ``crop_scale`` of the area, aspect 3/4..4/3). ``crop_scale=(1, 1)`` builds upstream's
pipeline exactly (resize + flips, the same random draws in the same order).
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError


class SSLAugment(nn.Module):
    """(B, C, H, W) -> (B, C, size, size): random resized crop (or, with ``crop_scale=(1, 1)``,
    upstream's plain resize) + horizontal/vertical flips, drawn independently per image.

    Args:
        size: output side (pixels), the SSL ``image_size``.
        crop_scale: area fraction range of the crop.
        crop_ratio: aspect-ratio range of the crop.
        flip_p: probability of each flip.
    """

    def __init__(self, size: int, crop_scale: Sequence[float] = (0.8, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), flip_p: float = 0.5) -> None:
        super().__init__()
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise CarlGeoError(f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {list(crop_scale)}")
        if not 0 <= flip_p <= 1:
            raise CarlGeoError(f"flip_p must be in [0, 1], got {flip_p}")
        #: True when the pipeline is upstream's (resize instead of a random crop)
        self.upstream = tuple(float(v) for v in crop_scale) == (1.0, 1.0)
        first = (K.Resize((size, size), p=1.0) if self.upstream else
                 K.RandomResizedCrop((size, size), scale=tuple(crop_scale), ratio=tuple(crop_ratio), p=1.0))
        self.pipeline = K.AugmentationSequential(
            first,
            K.RandomHorizontalFlip(p=flip_p),
            K.RandomVerticalFlip(p=flip_p),
            data_keys=["input"],
            same_on_batch=False,
        )

    def forward(self, img: Tensor) -> Tensor:
        return self.pipeline(img)
