"""Stage 4 of polygon training: pixel features at the labelled pixels.

One feature stack per pixel, computed through the inference engine exactly as the predictor computes it for a
map (same tiles, same cosine blending): the normalised bands (C), the window means of their principal components
(:class:`~carl_geo.models.context_features.ContextFeatures`, k x windows) and the CARL model's class probabilities
(K). Each candidate head reads a prefix or all of these columns (:data:`COLUMN_SETS`), so the stack is computed
once per run, and only in the tiles that hold a sampled pixel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from carl_geo.datasets.vector_labels import IGNORE_INDEX
from carl_geo.inference.engine import run_array
from carl_geo.inference.runner import ModelRunner
from carl_geo.inference.settings import PredictSettings
from carl_geo.inference.tiling import TileGrid
from carl_geo.models.context_features import ContextFeatures
from carl_geo.models.segmentation import CARLSegmenter
from carl_geo.polygon_training.scene import TrainingScene

#: Pixels at most that fit the context statistics (principal components).
FIT_PIXELS = 200_000
#: Pixel x band values at most in that fit (float64 copies of them are made): every pixel up to FIT_PIXELS for 24
#: bands or fewer, 21,428 pixels of 224 bands (the fit of 200k pixels x 224 bands took about 1 GB at its peak).
FIT_VALUES = FIT_PIXELS * 24
#: Bands x tiles the feature pass holds in one batch: 4 tiles up to 24 bands, 1 tile from 96 bands. A tile of
#: 224 bands is about 75 MB in float32 and the stack makes a few copies of it, so a batch of 4 added about 1 GB to
#: training's peak on a hyperspectral window (the tiles' results do not depend on the batch).
BATCH_BANDS = 96


class FeatureStack(nn.Module):
    """``forward(img (B, C, H, W) normalised, wavelengths) -> (B, C + k * windows + K, H, W)``: bands, window means,
    CARL class probabilities (the full stack every candidate head reads a prefix or all of)."""

    def __init__(self, context: ContextFeatures, carl: CARLSegmenter) -> None:
        super().__init__()
        self.context, self.carl = context, carl
        self.eval()  # features, never trained: the engine restores this mode after a run

    @property
    def backbone(self) -> nn.Module:
        return self.carl.backbone

    @property
    def min_overlap(self) -> int:
        """Tile overlap (px) the window features need (as the kept :class:`PixelClassifier`'s)."""
        return 2 * self.context.halo

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        return torch.cat([self.context(img), self.carl(img, wavelengths).float().softmax(1)], dim=1)


@dataclass
class PixelSample:
    """Features (N, F) float32 and classes (N,) int64 of sampled labelled pixels, their flat indexes in the scene
    window and the polygon each lies in (``groups``, the label raster's polygon ids)."""

    features: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray) -> "PixelSample":
        return PixelSample(self.features[rows], self.labels[rows], self.index[rows],
                           None if self.groups is None else self.groups[rows])

    @staticmethod
    def concat(parts: list["PixelSample"]) -> "PixelSample":
        groups = None if any(p.groups is None for p in parts) else np.concatenate([p.groups for p in parts])
        return PixelSample(np.concatenate([p.features for p in parts]), np.concatenate([p.labels for p in parts]),
                           np.concatenate([p.index for p in parts]), groups)


def fit_context(scene: TrainingScene, image: np.ndarray, seed: int = 0) -> ContextFeatures:
    """Context features for the scene's bands, their statistics fitted on (a sample of) its valid pixels of the
    normalised ``image`` (C, H, W)."""
    ctx = ContextFeatures(image.shape[0])
    flat = np.flatnonzero(scene.valid.ravel())
    n_fit = min(FIT_PIXELS, FIT_VALUES // max(1, image.shape[0]))
    if len(flat) > n_fit:
        flat = np.random.default_rng(seed).choice(flat, n_fit, replace=False)
    pixels = image.reshape(image.shape[0], -1)[:, flat].T
    return ctx.fit(torch.from_numpy(np.ascontiguousarray(pixels)))


def sample_pixels(mask: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Flat indexes of at most ``n`` labelled pixels of ``mask`` (H, W) (uniform without replacement, sorted)."""
    idx = np.flatnonzero(mask.ravel() != IGNORE_INDEX)
    if len(idx) > n:
        idx = np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))
    return idx


def stack_at(stack: nn.Module, image: np.ndarray, valid: np.ndarray, wavelengths: list[float], index: np.ndarray,
             device: torch.device, settings: PredictSettings | None = None) -> np.ndarray:
    """(N, F) features of ``stack`` at the flat pixel ``index`` of the normalised ``image`` (C, H, W), computed
    by the inference engine with the predictor's tiles and blending (only tiles holding such a pixel run)."""
    settings = settings or PredictSettings()
    tile_size, overlap = settings.tiling_for(stack)
    batch = settings.batch_size if isinstance(settings.batch_size, int) else 4
    batch = max(1, min(batch, BATCH_BANDS // max(1, image.shape[0])))  # many bands: fewer tiles at once
    h, w = valid.shape
    needed = np.zeros(h * w, dtype=bool)
    needed[index] = True
    needed = needed.reshape(h, w)
    rows, cols = np.divmod(index, w)
    order = np.argsort(rows, kind="stable")
    out: np.ndarray | None = None

    def emit(row0: int, blended: Tensor, _valid: np.ndarray) -> None:
        nonlocal out
        r1 = row0 + blended.shape[1]
        lo, hi = np.searchsorted(rows[order], [row0, r1])
        if hi <= lo:
            return
        sel = order[lo:hi]
        vals = blended[:, rows[sel] - row0, cols[sel]].float().cpu().numpy().T
        if out is None:
            out = np.zeros((len(index), vals.shape[1]), dtype=np.float32)
        out[sel] = vals

    with ModelRunner(stack, wavelengths, output="embeddings", device=device) as runner:
        run_array(runner.predict, np.ascontiguousarray(image, dtype=np.float32), valid, emit, tile_size=tile_size,
                  overlap=overlap, batch_size=batch, mean=None, std=None, needed=needed)
    return out if out is not None else np.zeros((len(index), 0), dtype=np.float32)


def feature_pass_seconds(stack: nn.Module, image: np.ndarray, valid: np.ndarray, wavelengths: list[float],
                         device: torch.device, settings: PredictSettings | None = None) -> float:
    """Seconds :func:`stack_at` takes at most over the whole normalised ``image`` (C, H, W), measured on this
    machine: the engine runs ``stack`` over the window's top-left tile alone, and that time is scaled to every
    tile of the window (the pass runs only the tiles holding a sampled pixel, in batches: an upper bound). The
    first call's set-up counts too, so the estimate errs long; the probe costs one tile (3-4 s with the published
    backbone on 2 cores)."""
    settings = settings or PredictSettings()
    tile_size, overlap = settings.tiling_for(stack)
    h, w = valid.shape
    full = TileGrid.build(h, w, tile_size, overlap)
    ch, cw = min(h, max(1, full.tile_h - overlap)), min(w, max(1, full.tile_w - overlap))  # one tile with its padding
    crop = TileGrid.build(ch, cw, tile_size, overlap)
    t = time.perf_counter()
    stack_at(stack, image[:, :ch, :cw], valid[:ch, :cw], wavelengths, np.arange(ch * cw), device, settings)
    return (time.perf_counter() - t) / crop.n_tiles * full.n_tiles


def pixel_samples(scene: TrainingScene, stack: FeatureStack, image: np.ndarray, device: torch.device, *,
                  train_pixels: int, val_pixels: int, seed: int) -> tuple[PixelSample, PixelSample]:
    """Features of (a sample of) the training and validation pixels of ``scene``."""
    tr = sample_pixels(scene.split.train, train_pixels, seed)
    va = sample_pixels(scene.split.val, val_pixels, seed + 1)
    index = np.concatenate([tr, va])
    feats = stack_at(stack, image, scene.valid, scene.wavelengths, index, device)
    ids = scene.labels_raster.polygon_ids.ravel()
    train = PixelSample(feats[:len(tr)], scene.split.train.ravel()[tr], tr, ids[tr])
    val = PixelSample(feats[len(tr):], scene.split.val.ravel()[va], va, ids[va])
    return train, val


#: Columns of the feature stack each kind of head reads: ``"bands"`` (C), ``"context"`` (C + k * windows),
#: ``"all"`` (context + the K CARL probabilities).
COLUMN_SETS = ("bands", "context", "all")


def columns(context: ContextFeatures, which: str) -> slice:
    """The slice of the feature stack that ``which`` (:data:`COLUMN_SETS`) reads."""
    if which == "bands":
        return slice(0, context.n_bands)
    if which == "context":
        return slice(0, context.out_channels)
    return slice(0, None)
