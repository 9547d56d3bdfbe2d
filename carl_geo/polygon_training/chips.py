"""Chips for training from polygons: the labelled window, a spatial hold-out split, class-balanced
chip sampling and flip/rot90 augmentation.

All arrays are in the pixel grid of the window read from the raster: image (C, H, W), masks
(H, W) int64 with :data:`~carl_geo.datasets.vector_labels.IGNORE_INDEX` where unlabelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.windows import Window
from torch import Tensor

from carl_geo.errors import CarlGeoError
from carl_geo.datasets.vector_labels import IGNORE_INDEX


def labels_window(bounds: tuple[float, float, float, float], transform, shape: tuple[int, int],
                  margin: int) -> Window:
    """Pixel window of the raster (``transform``, ``shape`` (H, W)) that covers ``bounds``
    (xmin, ymin, xmax, ymax in the raster CRS) plus ``margin`` pixels, clipped to the raster."""
    inv = ~transform
    xs, ys = [bounds[0], bounds[2], bounds[0], bounds[2]], [bounds[1], bounds[1], bounds[3], bounds[3]]
    cols, rows = zip(*(inv @ (x, y) for x, y in zip(xs, ys)))
    r0 = max(0, math.floor(min(rows)) - margin)
    c0 = max(0, math.floor(min(cols)) - margin)
    r1 = min(shape[0], math.ceil(max(rows)) + margin)
    c1 = min(shape[1], math.ceil(max(cols)) + margin)
    return Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))


@dataclass
class HoldoutSplit:
    """Train/validation masks (H, W) int64 and how each class was split.

    ``how[name]`` is ``"polygons"`` (whole polygons held out), ``"blocks"`` (one polygon, split
    into spatial blocks) or ``"train only"`` (too small to split).
    """

    train: np.ndarray
    val: np.ndarray
    how: dict[str, str]


def holdout_split(mask: np.ndarray, polygon_ids: np.ndarray, class_names: list[str], *, val_fraction: float,
                  block: int, seed: int = 0) -> HoldoutSplit:
    """Hold out about ``val_fraction`` of each class's labelled pixels as whole spatial units.

    Units are whole polygons when a class has two or more; a class with one polygon is cut into
    ``block`` x ``block`` pixel blocks. At least one unit of each class stays in training; no
    polygon has random pixels in both sets (only whole polygons or whole blocks move).
    """
    rng = np.random.default_rng(seed)
    train = mask.copy()
    val = np.full_like(mask, IGNORE_INDEX)
    how: dict[str, str] = {}
    if val_fraction <= 0:
        return HoldoutSplit(train, val, {n: "train only" for n in class_names})
    rows, cols = np.indices(mask.shape)
    block_ids = (rows // block) * (mask.shape[1] // block + 1) + cols // block
    for k, name in enumerate(class_names):
        sel = mask == k
        if not sel.any():
            how[name] = "train only"
            continue
        units = polygon_ids[sel].astype(np.int64)
        how[name] = "polygons"
        if len(np.unique(units)) < 2:
            units = block_ids[sel].astype(np.int64)
            how[name] = "blocks"
        uniq, counts = np.unique(units, return_counts=True)
        if len(uniq) < 2:
            how[name] = "train only"
            continue
        chosen = _pick_units(uniq, counts, val_fraction, rng)
        is_val = np.zeros(mask.shape, dtype=bool)
        is_val[sel] = np.isin(units, chosen)
        val[is_val] = k
        train[is_val] = IGNORE_INDEX
    return HoldoutSplit(train, val, how)


def _pick_units(units: np.ndarray, counts: np.ndarray, fraction: float, rng: np.random.Generator,
                tries: int = 64) -> np.ndarray:
    """Subset of units whose pixel share is closest to ``fraction`` (random orders, prefix sums),
    never all units and never none."""
    total = counts.sum()
    best, best_err = units[:1], math.inf
    for _ in range(tries):
        order = rng.permutation(len(units))
        share = np.cumsum(counts[order]) / total
        for n in range(1, len(units)):  # at least one unit left for training
            err = abs(share[n - 1] - fraction)
            if err < best_err:
                best, best_err = units[order[:n]], err
    return best


class ChipSampler:
    """Class-balanced chip positions inside the labelled area.

    Each chip is drawn by picking a class uniformly, then one of its training pixels, then a
    random placement of the ``chip`` x ``chip`` window that contains that pixel (clipped to the
    array of shape ``shape``).
    """

    def __init__(self, train_mask: np.ndarray, chip: int, seed: int = 0) -> None:
        self.shape = train_mask.shape
        self.chip = chip
        self.rng = np.random.default_rng(seed)
        flat = train_mask.ravel()
        self.pixels = [np.flatnonzero(flat == k) for k in np.unique(flat[flat != IGNORE_INDEX])]
        if not self.pixels:
            raise CarlGeoError("no training pixel to sample chips from")

    def sample(self, n: int, chip: int | None = None) -> list[tuple[int, int]]:
        """``n`` top-left corners (row, col) of chips of side ``chip`` (default: the sampler's;
        at most the array's shorter side)."""
        h, w = self.shape
        size = min(chip or self.chip, h, w)
        out = []
        for _ in range(n):
            pix = self.pixels[self.rng.integers(len(self.pixels))]
            r, c = divmod(int(pix[self.rng.integers(len(pix))]), w)
            r0 = int(np.clip(r - self.rng.integers(size), 0, h - size))
            c0 = int(np.clip(c - self.rng.integers(size), 0, w - size))
            out.append((r0, c0))
        return out


def augment(img: Tensor, mask: Tensor, generator: torch.Generator | None = None,
            jitter: float = 0.0) -> tuple[Tensor, Tensor]:
    """Random dihedral transform (flips and 90° rotations) per sample, the same for image
    (B, C, H, W) and mask (B, H, W); H == W. ``jitter`` > 0 also scales each normalised chip by
    1 + U(-jitter, jitter) and shifts it by U(-jitter, jitter) (brightness/contrast changes)."""
    if jitter > 0:
        b = img.shape[0]
        gain = 1 + (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * jitter
        shift = (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * jitter
        img = img * gain + shift
    out_i, out_m = [], []
    for i in range(img.shape[0]):
        k = int(torch.randint(4, (1,), generator=generator))
        flip = bool(torch.randint(2, (1,), generator=generator))
        a, m = torch.rot90(img[i], k, (-2, -1)), torch.rot90(mask[i], k, (-2, -1))
        if flip:
            a, m = a.flip(-1), m.flip(-1)
        out_i.append(a)
        out_m.append(m)
    return torch.stack(out_i), torch.stack(out_m)
