"""Upstream's linear-probe input pipeline (``carl/trainer/cls_trainer.py``, ``seg_trainer.py``) in plain
torch, applied on the device after the batch transfer.

* classification, train: resize to ``size`` x ``size``, random horizontal and vertical flips (p 0.5);
* segmentation, train: random resized crop (scale 0.8-1.0, aspect 3/4-4/3) of image and mask to
  ``size`` x ``size`` (image bilinear, mask nearest), random flips;
* evaluation: the image is resized to ``size`` x ``size``; labels stay at full size (segmentation
  logits are upsampled to the label size).

``size = 0`` keeps the native size. All random draws use torch's global generator (seeded per run).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

CROP_SCALE = (0.8, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
FLIP_P = 0.5


def resize_images(img: Tensor, size: int) -> Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear; unchanged when ``size`` is 0 or already matches."""
    if not size or tuple(img.shape[-2:]) == (size, size):
        return img
    return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)


def random_flips(img: Tensor, mask: Tensor | None = None, p: float = FLIP_P) -> tuple[Tensor, Tensor | None]:
    """Per-sample random horizontal and vertical flips of (B, C, H, W) and (B, H, W)."""
    for dim in (-1, -2):
        flip = torch.rand(img.shape[0], device=img.device) < p
        if flip.any():
            img = torch.where(flip.view(-1, 1, 1, 1), img.flip(dim), img)
            if mask is not None:
                mask = torch.where(flip.view(-1, 1, 1), mask.flip(dim), mask)
    return img, mask


def _crop_box(h: int, w: int) -> tuple[int, int, int, int]:
    """torchvision/kornia RandomResizedCrop box: (top, left, height, width)."""
    area = h * w
    log_r = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*CROP_SCALE))
        ratio = math.exp(float(torch.empty(1).uniform_(*log_r)))
        cw = int(round(math.sqrt(target * ratio)))
        ch = int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            return top, left, ch, cw
    return 0, 0, h, w


def random_resized_crop(img: Tensor, mask: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Per-sample random resized crop of (B, C, H, W) (bilinear) and (B, H, W) (nearest) to size x size
    (``size`` 0: the input size)."""
    h, w = img.shape[-2:]
    out_hw = (size, size) if size else (h, w)
    imgs, masks = [], []
    for i in range(img.shape[0]):
        top, left, ch, cw = _crop_box(h, w)
        crop = img[i:i + 1, :, top:top + ch, left:left + cw]
        mcrop = mask[i:i + 1, None, top:top + ch, left:left + cw].float()
        imgs.append(F.interpolate(crop, size=out_hw, mode="bilinear", align_corners=False))
        masks.append(F.interpolate(mcrop, size=out_hw, mode="nearest")[:, 0].to(mask.dtype))
    return torch.cat(imgs), torch.cat(masks)


def train_transform(batch: dict[str, Any], size: int) -> dict[str, Any]:
    """Training augmentation of a batch dict (``image`` + ``label`` or ``mask``)."""
    batch = dict(batch)
    if "mask" in batch:
        img, mask = random_resized_crop(batch["image"], batch["mask"], size)
        batch["image"], batch["mask"] = random_flips(img, mask)
    else:
        batch["image"], _ = random_flips(resize_images(batch["image"], size))
    return batch


def eval_transform(batch: dict[str, Any], size: int) -> dict[str, Any]:
    """Evaluation: resize the image only."""
    return {**batch, "image": resize_images(batch["image"], size)}
