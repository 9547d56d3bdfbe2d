"""Stage 2 of polygon training: the batch source of the CARL model.

:class:`ChipBatches` turns a :class:`~carl_geo.polygon_training.scene.TrainingScene` and a resolved
:class:`~carl_geo.polygon_training.recipe.TrainingRecipe` into training batches: class-balanced chips (or single
pixels in ``"pixels"`` mode) of the normalised image, a random band subset (or a random binning of a many-band
raster) in ``1 - full_band_share`` of the batches, and flips / 90° rotations. :class:`ValidationChips` is the
fixed set of held-out chips scored during training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from carl_geo.datasets.vector_labels import IGNORE_INDEX
from carl_geo.models.spectral_binning import apply_bins, bin_matrix, equal_bins, random_bins
from carl_geo.polygon_training.chips import ChipSampler, augment
from carl_geo.polygon_training.recipe import MIN_TRAIN_BANDS, TrainingRecipe
from carl_geo.polygon_training.scene import TrainingScene
from carl_geo.transforms import standardize_valid

#: Validation chips scored at every validation step.
VAL_CHIPS = 24


def pad_to(arr: np.ndarray, size: int, value: float) -> np.ndarray:
    """Pad the last two axes of ``arr`` at the bottom / right to at least ``size``."""
    ph, pw = max(0, size - arr.shape[-2]), max(0, size - arr.shape[-1])
    if not (ph or pw):
        return arr
    pad = [(0, 0)] * (arr.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(arr, pad, constant_values=value)


def draw_band_subsets(rng: np.random.Generator, batch: int, n_bands: int, lo: int, hi: int) -> Tensor:
    """(batch, n) int64 band indexes: one random subset per sample, sorted (wavelength order kept);
    n is drawn once per batch, uniformly in [lo, min(hi, n_bands)], so a batch stays a tensor."""
    n = int(rng.integers(min(lo, n_bands), min(hi, n_bands) + 1))
    rows = [np.sort(rng.choice(n_bands, size=n, replace=False)) for _ in range(batch)]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


class ChipBatches:
    """Training and validation chips of one scene for one recipe (the recipe resolved by
    :func:`~carl_geo.polygon_training.recipe.plan_recipe`).

    Attributes:
        image: (C, H', W') normalised image (wavelength order when binned), padded to a chip.
        wavelengths: (C,) µm, in the order of ``image``'s bands.
        binning: the raster has more bands than ``recipe.max_bands`` (bins are contiguous in wavelength).
    """

    def __init__(self, scene: TrainingScene, recipe: TrainingRecipe, image: np.ndarray | None = None) -> None:
        """``image``: ``scene.normalized()`` when the caller holds it already (with ``normalization="scene"``),
        shared instead of copied (a hyperspectral window is hundreds of MB); never written to."""
        r = self.recipe = recipe
        self.chip = int(r.chip_size)
        self.batch = int(r.batch_size)
        self.sample_size = 1 if r.mode == "pixels" else self.chip  # side of a training sample (px)
        if r.normalization == "scene":
            img = image if image is not None else scene.normalized()
        else:
            img = scene.image.copy()
        wls = list(scene.wavelengths)
        self.binning = bool(r.max_bands) and img.shape[0] > int(r.max_bands)
        order = np.argsort(wls, kind="stable")
        if self.binning and (order != np.arange(len(wls))).any():  # bins are contiguous in wavelength
            img, wls = img[order], [wls[i] for i in order]
        self.image = torch.from_numpy(pad_to(np.ascontiguousarray(img, dtype=np.float32), self.chip, 0.0))
        self.valid = torch.from_numpy(pad_to(scene.valid, self.chip, False))
        self.train_mask = torch.from_numpy(pad_to(scene.split.train, self.chip, IGNORE_INDEX))
        self.val_mask = torch.from_numpy(pad_to(scene.split.val, self.chip, IGNORE_INDEX))
        self.wavelengths = torch.tensor(wls, dtype=torch.float32)
        self.sampler = ChipSampler(self.train_mask.numpy(), self.chip, seed=r.seed)
        self.generator = torch.Generator().manual_seed(r.seed)
        self.band_rng = np.random.default_rng(r.seed + 7)
        self.validation = ValidationChips(self.val_mask.numpy(), self.chip, n_chips=VAL_CHIPS, seed=r.seed)

    def describe(self) -> str:
        """What the batches hold, for the log (e.g. ``8 chips of 64 px, random subsets of 3-13 bands in 70 %``)."""
        r = self.recipe
        what = f"{self.batch} single pixels" if r.mode == "pixels" else f"{self.batch} chips of {self.chip} px"
        share = f"{100 * (1 - r.full_band_share):.0f} % of the steps"
        if self.binning and r.band_subset is None:
            return f"{what}, {r.max_bands} equal bins"
        if self.binning:
            return (f"{what}, random binning into {max(MIN_TRAIN_BANDS, int(r.max_bands) // 2)}-{r.max_bands} bands "
                    f"in {share}, {r.max_bands} equal bins in the others")
        if r.band_subset:
            return f"{what}, random subsets of {r.band_subset[0]}-{r.band_subset[1]} bands in {share}"
        return what

    def chips(self, corners: Sequence[tuple[int, int]], size: int, target: Tensor) -> tuple[Tensor, Tensor]:
        """Image (B, C, size, size) and labels (B, size, size) at the given top-left corners."""
        x = torch.stack([self.image[:, a:a + size, b:b + size] for a, b in corners])
        y = torch.stack([target[a:a + size, b:b + size] for a, b in corners])
        if self.recipe.normalization == "chip":
            v = torch.stack([self.valid[a:a + size, b:b + size] for a, b in corners])
            x = standardize_valid(x, v)
        return x, y

    def next(self) -> tuple[Tensor, Tensor, Tensor]:
        """One training batch: image (B, C', s, s), labels (B, s, s), wavelengths (C',) or (B, C') µm."""
        r, batch, rng = self.recipe, self.batch, self.band_rng
        x, y = self.chips(self.sampler.sample(batch, self.sample_size), self.sample_size, self.train_mask)
        wl: Tensor = self.wavelengths
        max_bands = int(r.max_bands or 0)
        if self.binning and (r.band_subset is None or rng.random() < r.full_band_share):  # the prediction bins
            x, wl = apply_bins(x, wl, bin_matrix([equal_bins(x.shape[1], max_bands)] * batch, x.shape[1]))
        elif self.binning:  # a random broad-band camera per sample
            n_bins = int(rng.integers(max(MIN_TRAIN_BANDS, max_bands // 2), max_bands + 1))
            edges = [random_bins(x.shape[1], n_bins, rng) for _ in range(batch)]
            x, wl = apply_bins(x, wl, bin_matrix(edges, x.shape[1]))
        elif r.band_subset and rng.random() >= r.full_band_share:
            idx = draw_band_subsets(rng, batch, x.shape[1], *r.band_subset)
            x = torch.gather(x, 1, idx[:, :, None, None].expand(-1, -1, *x.shape[-2:]))
            wl = wl[idx]
        if r.mode != "pixels" or r.intensity_jitter:  # a single pixel has no orientation
            x, y = augment(x, y, self.generator, r.intensity_jitter)
        return x, y, wl

    def validation_batches(self, batch: int = 8) -> list[tuple[Tensor, Tensor]]:
        """The validation chips, in batches: (image, labels), all bands."""
        v = self.validation
        return [self.chips(v.corners[i:i + batch], v.chip, self.val_mask) for i in range(0, len(v.corners), batch)]


class ValidationChips:
    """A fixed set of validation chips (class balanced, drawn once) scored during training, so a
    validation costs a few forward passes however large the scene is."""

    def __init__(self, val_mask: np.ndarray, chip: int, n_chips: int, seed: int) -> None:
        self.corners: list[tuple[int, int]] = []
        if (val_mask != IGNORE_INDEX).any():
            sampler = ChipSampler(val_mask, chip, seed=seed + 1)
            self.corners = sorted(set(sampler.sample(n_chips, chip)))
        self.chip = min(chip, *val_mask.shape)

    def __bool__(self) -> bool:
        return bool(self.corners)
