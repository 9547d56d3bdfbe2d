"""CARL-SSL masks: I-JEPA multi-block masks on the token grid and contiguous band-block masks
on the spectral axis (upstream ``SpatialMasking`` / ``SpectralMasking``, re-implemented).

All masks are index tensors (int64) of the tokens to *keep* (encoder/context masks) or to
*predict* (predictor/target masks), sorted ascending, like upstream's ``apply_masks`` expects.

Spatial (grid of gh x gw tokens, N = gh*gw):

* the block sizes of one call are shared by the whole batch (drawn from a generator seeded with
  the step, as upstream): ``npred`` target blocks covering ``pred_mask_scale`` of the grid with an
  aspect ratio in ``aspect_ratio``, and one square context block covering ``enc_mask_scale``;
* per sample, the target blocks are placed at random, then the context block is placed and cut
  down to the tokens outside every target block (no overlap); a context keeps more than
  ``min_keep`` tokens. As upstream, after 20 failed placements one target block's exclusion is
  dropped (then the next, ...); :attr:`SpatialMasking.relaxed` counts such samples;
* masks are truncated to the smallest count in the batch (rectangular tensors).

Spectral (C bands, one row per token column):

* C >= 20: ``npred`` blocks of ``pred_mask_scale`` x C contiguous bands; C < 20: one block of
  2-3 bands (upstream's multispectral rule); a block leaves more than
  ``max(int(min_keep*C), 3)`` bands; the context bands are those outside every block;
* upstream loops without end for 5-6 bands; here the block is shortened so that the rule holds
  (5 bands: 1, 6 bands: 2), and fewer than 5 bands raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from carl_geo.datasets.band_subset import MIN_SSL_BANDS
from carl_geo.errors import CarlGeoError

#: Upstream retries a block placement this many times before relaxing a constraint.
PLACEMENT_TRIES = 20


def apply_masks(x: Tensor, masks: Sequence[Tensor]) -> Tensor:
    """Gather kept tokens: x (B, N, ...) and masks [(B, K)] -> (len(masks)*B, K, ...), mask-major
    (all samples of mask 0, then of mask 1, ...), as upstream's ``apply_masks``."""
    out = []
    for m in masks:
        index = m.reshape(m.shape + (1,) * (x.ndim - 2)).expand(*m.shape, *x.shape[2:])
        out.append(torch.gather(x, 1, index))
    return out[0] if len(out) == 1 else torch.cat(out, dim=0)


@dataclass
class SpatialMasks:
    """enc: (B, K_ctx) context token indices; pred: npred tensors (B, K_pred) of target indices."""

    enc: Tensor
    pred: list[Tensor]

    def to(self, device: torch.device | str) -> SpatialMasks:
        return SpatialMasks(self.enc.to(device), [p.to(device) for p in self.pred])


@dataclass
class SpectralMasks:
    """enc: (N, K_enc) context band indices, enc_valid: (N, K_enc) bool (False only for the padding
    of rows with fewer context bands, padded batches); pred: npred tensors (N, h) of masked bands."""

    enc: Tensor
    enc_valid: Tensor
    pred: list[Tensor]
    #: every entry of ``enc`` is a real context band (no padding); known without a device sync
    all_valid: bool = True

    def to(self, device: torch.device | str) -> SpectralMasks:
        return SpectralMasks(self.enc.to(device), self.enc_valid.to(device), [p.to(device) for p in self.pred],
                             self.all_valid)

    def select(self, rows: Tensor) -> SpectralMasks:
        """The masks of the given rows (R,)."""
        return SpectralMasks(self.enc[rows], self.enc_valid[rows], [p[rows] for p in self.pred], self.all_valid)


def _check_range(name: str, pair: Sequence[float], low: float, high: float) -> tuple[float, float]:
    if len(pair) != 2 or not (low <= pair[0] <= pair[1] <= high):
        raise CarlGeoError(f"{name} must be [min, max] with {low} <= min <= max <= {high}, got {list(pair)}")
    return float(pair[0]), float(pair[1])


class SpatialMasking:
    """I-JEPA multi-block masks on a gh x gw token grid.

    Args:
        grid_size: (gh, gw) tokens (image_size // patch_size on each side).
        enc_mask_scale: fraction of the grid covered by the context block (before cutting).
        pred_mask_scale: fraction covered by each target block.
        aspect_ratio: target block height / width range.
        nenc: context blocks (upstream uses 1; only 1 is supported).
        npred: target blocks per sample.
        min_keep: a context keeps more than this many tokens; a target leaves more than this many.
        allow_overlap: accepted for config compatibility; upstream ignores it and so does this
            class (context and targets never overlap unless a placement had to be relaxed).
    """

    def __init__(self, grid_size: int | tuple[int, int], enc_mask_scale: Sequence[float] = (0.5, 0.75),
                 pred_mask_scale: Sequence[float] = (0.3, 0.5), aspect_ratio: Sequence[float] = (0.75, 1.5),
                 nenc: int = 1, npred: int = 2, min_keep: int = 4, allow_overlap: bool = False) -> None:
        gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
        if gh < 2 or gw < 2:
            raise CarlGeoError(f"spatial masking needs a token grid of at least 2x2, got {gh}x{gw}")
        if nenc != 1:
            raise CarlGeoError("spatial masking supports nenc=1 (one context block), as upstream's model")
        if npred < 1:
            raise CarlGeoError("npred must be >= 1")
        if not 0 <= min_keep < gh * gw:
            raise CarlGeoError(f"min_keep must be in [0, {gh * gw}), got {min_keep}")
        self.height, self.width = gh, gw
        self.enc_mask_scale = _check_range("enc_mask_scale", enc_mask_scale, 0.0, 1.0)
        self.pred_mask_scale = _check_range("pred_mask_scale", pred_mask_scale, 0.0, 1.0)
        self.aspect_ratio = _check_range("aspect_ratio", aspect_ratio, 1e-3, 1e3)
        self.nenc, self.npred, self.min_keep = nenc, npred, min_keep
        self.allow_overlap = allow_overlap
        #: samples of the last call whose context had to overlap a target block
        self.relaxed = 0

    def block_size(self, generator: torch.Generator, scale: tuple[float, float],
                   aspect_ratio: tuple[float, float]) -> tuple[int, int]:
        """(h, w) of a block; one uniform draw sets both scale and aspect ratio (as upstream)."""
        r = torch.rand(1, generator=generator).item()
        keep = int(self.height * self.width * (scale[0] + r * (scale[1] - scale[0])))
        ar = aspect_ratio[0] + r * (aspect_ratio[1] - aspect_ratio[0])
        h = min(int(round(math.sqrt(keep * ar))), self.height - 1)
        w = min(int(round(math.sqrt(keep / ar))), self.width - 1)
        return max(h, 1), max(w, 1)

    def _place(self, size: tuple[int, int], generator: torch.Generator, exclude: list[Tensor] | None,
               is_target: bool) -> tuple[Tensor, Tensor, bool]:
        """Indices of one placed block (cut by ``exclude``), its complement grid, and whether a
        constraint had to be dropped."""
        h, w = size
        n = self.height * self.width
        tries = timeout = 0
        while True:
            top = int(torch.randint(0, self.height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, self.width - w + 1, (1,), generator=generator))
            grid = torch.zeros(self.height, self.width, dtype=torch.bool)
            grid[top:top + h, left:left + w] = True
            if exclude:
                for region in exclude[: max(len(exclude) - tries, 0)]:
                    grid &= region
            idx = grid.flatten().nonzero().squeeze(1)
            ok = (n - len(idx) > self.min_keep) if is_target else (len(idx) > self.min_keep)
            if ok:
                complement = torch.ones(self.height, self.width, dtype=torch.bool)
                complement[top:top + h, left:left + w] = False
                return idx, complement, tries > 0
            timeout += 1
            if timeout == PLACEMENT_TRIES:
                tries, timeout = tries + 1, 0
                if tries == 15:
                    raise CarlGeoError(
                        f"spatial masking found no valid block: grid {self.height}x{self.width}, block {h}x{w}, "
                        f"min_keep {self.min_keep}; lower min_keep or the mask scales")

    def __call__(self, batch_size: int, step: int = 0, generator: torch.Generator | None = None) -> SpatialMasks:
        """Masks for a batch.

        Args:
            batch_size: B.
            step: seeds the block sizes (same sizes for every rank at a given step, as upstream).
            generator: for the block positions; default: a generator seeded with ``step``.
        """
        sizes = torch.Generator().manual_seed(int(step))
        p_size = self.block_size(sizes, self.pred_mask_scale, self.aspect_ratio)
        e_size = self.block_size(sizes, self.enc_mask_scale, (1.0, 1.0))
        gen = generator if generator is not None else torch.Generator().manual_seed(int(step) + 1_000_003)
        enc, pred = [], []
        self.relaxed = 0
        for _ in range(batch_size):
            targets, complements = [], []
            for _ in range(self.npred):
                idx, comp, _ = self._place(p_size, gen, None, is_target=True)
                targets.append(idx)
                complements.append(comp)
            idx, _, relaxed = self._place(e_size, gen, complements, is_target=False)
            self.relaxed += int(relaxed)
            pred.append(targets)
            enc.append(idx)
        k_enc = min(len(e) for e in enc)
        k_pred = min(len(p) for ps in pred for p in ps)
        return SpatialMasks(
            enc=torch.stack([e[:k_enc] for e in enc]),
            pred=[torch.stack([ps[j][:k_pred] for ps in pred]) for j in range(self.npred)],
        )


class SpectralMasking:
    """Contiguous band-block masks, one independent mask per row (token column).

    Args:
        pred_mask_scale: fraction of the bands in each masked block (C >= 20).
        npred: masked blocks per row (C >= 20; one block below 20 bands, as upstream).
        min_keep: fraction of the bands a block must leave (at least 3 bands, as upstream).
    """

    def __init__(self, pred_mask_scale: Sequence[float] = (0.15, 0.3), npred: int = 2, min_keep: float = 0.2) -> None:
        self.pred_mask_scale = _check_range("pred_mask_scale", pred_mask_scale, 0.0, 1.0)
        if npred < 1:
            raise CarlGeoError("npred must be >= 1")
        if not 0 <= min_keep < 1:
            raise CarlGeoError(f"min_keep is a fraction of the bands in [0, 1), got {min_keep}")
        self.npred, self.min_keep = npred, float(min_keep)

    def min_kept(self, n_bands: int) -> int:
        """A masked block must leave more than this many bands."""
        return max(int(self.min_keep * n_bands), 3)

    def block(self, n_bands: int, generator: torch.Generator) -> tuple[int, int]:
        """(block length, number of blocks) for ``n_bands`` bands."""
        if n_bands < MIN_SSL_BANDS:
            raise CarlGeoError(f"CARL-SSL spectral masking needs at least {MIN_SSL_BANDS} bands per image, got "
                               f"{n_bands}; leave such sensors out of pre-training")
        r = torch.rand(1, generator=generator).item()
        if n_bands < 20:  # multispectral: mask little (upstream)
            length, npred = int(r * 2 + 2), 1
        else:
            lo, hi = self.pred_mask_scale
            length, npred = int(lo * n_bands + r * (hi - lo) * n_bands), self.npred
        length = min(max(length, 1), n_bands - self.min_kept(n_bands) - 1)
        return length, npred

    def __call__(self, n_rows: int, n_bands: int | Tensor, step: int = 0,
                 generator: torch.Generator | None = None, truncate: bool = True) -> SpectralMasks:
        """Masks for ``n_rows`` token columns.

        Args:
            n_rows: N rows (B * tokens per image).
            n_bands: C, or (N,) real band counts per row (padded batches: real bands first).
            step: seeds the draws (as upstream's per-call counter).
            generator: overrides the step-seeded generator.
            truncate: cut context masks to the smallest count (upstream); else pad them and mark
                the padding in ``enc_valid`` (for rows of different band counts).
        """
        gen = generator if generator is not None else torch.Generator().manual_seed(int(step))
        counts = torch.as_tensor(n_bands, dtype=torch.int64).expand(n_rows).clone()
        c_max = int(counts.max())
        length, npred = self.block(int(counts.min()), gen)
        tops = (torch.rand(n_rows, npred, generator=gen) * (counts - length + 1).unsqueeze(1)).long()
        pred = tops.unsqueeze(-1) + torch.arange(length)  # (N, npred, h)
        keep = torch.arange(c_max).unsqueeze(0) < counts.unsqueeze(1)  # (N, C) real bands
        keep[torch.arange(n_rows).repeat_interleave(npred * length), pred.flatten()] = False
        kept = keep.sum(1)
        k = int(kept.min()) if truncate else int(kept.max())
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
        valid = keep.gather(1, order)
        return SpectralMasks(enc=order, enc_valid=valid, pred=[pred[:, j].contiguous() for j in range(npred)],
                             all_valid=bool(valid.all()))
