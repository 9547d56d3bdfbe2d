"""The model polygon training keeps: a per-pixel head on pixel features, fused with CARL.

:class:`PixelClassifier` maps a normalised image (B, C, H, W) and its wavelengths (µm) to per-pixel class
log-probabilities (B, K, H, W) at the image's own resolution:

1. pixel features (F channels): the bands and their window means (:class:`ContextFeatures`, optional) and
   the class probabilities of a CARL segmenter (optional; the CARL model is camera agnostic);
2. heads on each pixel's features: :class:`PixelMLP` and / or :class:`~carl_geo.models.tree_ensemble.TreeEnsemble`
   (a random forest as tensors), or none (CARL alone);
3. late fusion: ``p = w * p_carl + (1 - w) * mean(p_heads)`` (the ensemble of CARL, a forest and an MLP is
   ``w = 1/3`` with two heads).

The heads read band values in the order of the training bands, so they need the training bands (in any order, and
with centres that may differ slightly), or densely sampled bands the training bands are interpolated from (spectral
resampling of hyperspectral bands: :mod:`~carl_geo.models.band_matching`). With other
bands (another camera of the family, a subset) the model takes its band-agnostic path: the labelled training
pixels it carries (:class:`~carl_geo.models.band_adapter.ExemplarBank`) are interpolated in wavelength onto the
new bands and a forest on their context features is fitted once for that band set (seconds), fused with the CARL
part (which is wavelength conditioned) as the heads are. Bands outside the stored range, or a model without a
bank, map with the CARL part alone. :meth:`PixelClassifier.band_path` says which path a band set takes, and the
predictor prints a one-line notice for the other two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError
from carl_geo.models.band_adapter import ExemplarBank
from carl_geo.models.band_matching import as_permutation, band_weights, match_bands
from carl_geo.models.carl import check_inputs
from carl_geo.models.context_features import ContextFeatures
from carl_geo.models.pixel_mlp import PixelMLP, head_in_features, head_kind, mean_probabilities
from carl_geo.models.segmentation import CARLSegmenter
from carl_geo.models.tree_ensemble import TreeEnsemble

#: Floor of the probabilities before the log (the predictor's softmax gives the probabilities back).
PROB_FLOOR = 1e-6


HEAD_TYPES = {"mlp": PixelMLP, "forest": TreeEnsemble}


class PixelClassifier(nn.Module):
    """Per-pixel head on bands, window context and CARL class probabilities, fused with CARL.

    Args:
        carl: the CARL segmenter (its probabilities are a feature and the band-agnostic fallback).
        wavelengths: (C,) µm of the training bands, in the order the heads read them.
        context: bands + window means of principal components, or None (the heads read no band values).
        carl_inputs: the heads also read CARL's K class probabilities.
        heads: :class:`PixelMLP` (logits) and / or :class:`TreeEnsemble` (probabilities) modules, all reading the
            same features; empty: CARL alone.
        carl_weight: w in [0, 1] of the late fusion ``w * p_carl + (1 - w) * mean(p_heads)``.
        bank: labelled training pixels by wavelength for other band sets (the band-agnostic path), or None
            (other bands: CARL alone).

    ``forward(img (B, C, H, W) normalised, wavelengths (C,) | (B, C) µm) -> (B, K, H, W)`` log-probabilities.
    """

    def __init__(self, carl: CARLSegmenter, wavelengths: Sequence[float], context: ContextFeatures | None = None,
                 carl_inputs: bool = False, heads: Sequence[PixelMLP | TreeEnsemble] = (),
                 carl_weight: float = 0.0, bank: ExemplarBank | None = None) -> None:
        super().__init__()
        if not 0.0 <= float(carl_weight) <= 1.0:
            raise CarlGeoError(f"carl_weight must be in [0, 1], got {carl_weight}")
        if not heads:
            carl_weight = 1.0  # CARL alone
        if heads and context is None and not carl_inputs:
            raise CarlGeoError("a pixel head needs features: context, CARL probabilities or both")
        self.carl = carl
        self.num_classes = carl.num_classes
        self.register_buffer("wavelengths", torch.as_tensor([float(w) for w in wavelengths], dtype=torch.float32))
        self.context = context
        self.carl_inputs = bool(carl_inputs)
        self.heads = nn.ModuleList(heads)
        self.carl_weight = float(carl_weight)
        if bank is not None and (not self.heads or bank.num_classes != self.num_classes):
            raise CarlGeoError("an exemplar bank goes with pixel heads and the model's classes")
        self.bank = bank
        if context is not None and context.n_bands != len(wavelengths):
            raise CarlGeoError(f"context features for {context.n_bands} bands, {len(wavelengths)} wavelengths given")
        want = self.feature_channels
        for head in self.heads:
            got = head_in_features(head)
            if got != want:
                raise CarlGeoError(f"the head reads {got} features, the pixel features have {want}")

    @property
    def backbone(self) -> nn.Module:
        """The CARL backbone (per-pixel embeddings come from it)."""
        return self.carl.backbone

    @property
    def min_overlap(self) -> int:
        """Tile overlap (px) the predictor should use: twice the window features' reach, so that every pixel lies
        that far inside the tile that weighs most in the blend."""
        return 2 * self.context.halo if self.context is not None and self.heads else 0

    @property
    def feature_channels(self) -> int:
        """F: context channels + K when the head reads CARL's probabilities."""
        return (self.context.out_channels if self.context is not None else 0) + (self.num_classes if self.carl_inputs else 0)

    def config(self) -> dict[str, Any]:
        """Plain dict (JSON types) that rebuilds this model's shape with :func:`build_pixel_classifier`."""
        heads = [{"type": head_kind(h), "kwargs": h.config()} for h in self.heads]
        return {"wavelengths": [float(w) for w in self.wavelengths.tolist()],
                "context": self.context.config() if self.context is not None else None,
                "carl_inputs": self.carl_inputs, "heads": heads, "carl_weight": self.carl_weight,
                "bank": self.bank.config() if self.bank is not None else None}

    def band_order(self, wavelengths: Tensor | Sequence[float]) -> list[int] | None:
        """Indexes that put the given bands (µm) in the training order, or None when they are not the training
        bands (then the band-agnostic path or the CARL part predicts). The same bands with slightly other centres
        (another unit of the sensor, a nominal table) are the training bands: :func:`~carl_geo.models.band_matching.
        match_bands`."""
        return match_bands(self.wavelengths.tolist(), _first_row(wavelengths))

    def band_weights(self, wavelengths: Tensor | Sequence[float]) -> np.ndarray | None:
        """(C_train, C_given) weights that give the training bands from the given bands (µm): a permutation for the
        training bands, spectral interpolation for densely sampled (hyperspectral) bands with other centres
        (:func:`~carl_geo.models.band_matching.band_weights`); None when the heads cannot read these bands."""
        return band_weights(self.wavelengths.tolist(), _first_row(wavelengths))

    def uses_head(self, wavelengths: Tensor | Sequence[float]) -> bool:
        """True when these bands reach the heads (the training bands in any order, or bands the training bands are
        interpolated from); False: another path."""
        return not self.heads or self.band_weights(wavelengths) is not None

    def band_path(self, wavelengths: Tensor | Sequence[float]) -> str:
        """Which part maps these bands (µm): ``"heads"`` (the training bands, any order, centres within
        :func:`~carl_geo.models.band_matching.match_bands`' shifts, or a model without heads), ``"resampled"``
        (the heads, on the training bands interpolated from densely sampled given bands), ``"adapted"`` (other
        bands within the training pixels' range: the band-agnostic path) or ``"carl"`` (the CARL part alone)."""
        if not self.heads or self.band_order(wavelengths) is not None:
            return "heads"
        if self.band_weights(wavelengths) is not None:
            return "resampled"
        wl = _first_row(wavelengths)
        return "adapted" if self.bank is not None and self.bank.covers(wl) else "carl"

    def adapter(self, wavelengths: Tensor | Sequence[float]) -> nn.Module | None:
        """The band-agnostic head fitted for these bands (µm, in the image's order; cached per band set), or None
        when they take another path (:meth:`band_path`)."""
        if self.bank is None or self.uses_head(wavelengths):
            return None
        return self.bank.adapt(_first_row(wavelengths))

    def pixel_features(self, img: Tensor, p_carl: Tensor) -> Tensor:
        """(B, F, H, W) features of an image in the training band order, with CARL's probabilities."""
        parts = []
        if self.context is not None:
            parts.append(self.context(img))
        if self.carl_inputs:
            parts.append(p_carl)
        return torch.cat(parts, dim=1)

    def head_probabilities(self, feats: Tensor) -> Tensor:
        """(B, F, H, W) features -> (B, K, H, W) mean class probabilities of the heads."""
        b, f, h, w = feats.shape
        flat = feats.permute(0, 2, 3, 1).reshape(-1, f)
        prob = mean_probabilities(self.heads, flat)
        return prob.reshape(b, h, w, -1).permute(0, 3, 1, 2)

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        wl = check_inputs(img, wavelengths, band_mask)
        return self.fuse(img, wl, self.carl(img, wl, band_mask), band_mask)

    def fuse(self, img: Tensor, wavelengths: Tensor, carl_logits: Tensor, band_mask: Tensor | None = None) -> Tensor:
        """Everything after the CARL segmenter: ``carl_logits`` (B, K, H, W), what ``self.carl(img, wavelengths,
        band_mask)`` returned (or an int8 run of it, :mod:`carl_geo.inference.int8`), with the image (B, C, H, W,
        normalised) and its checked wavelengths (µm) -> (B, K, H, W) log-probabilities of the fused model."""
        p_carl = carl_logits.float().softmax(1)
        weights = None if not self.heads or band_mask is not None else self.band_weights(wavelengths)
        if weights is None:
            adapter = None if band_mask is not None else self.adapter(wavelengths)
            if adapter is None:
                return p_carl.clamp_min(PROB_FLOOR).log()
            p_head = adapter.to(img.device)(img.float())
        else:
            order = as_permutation(weights)
            if order is None:  # the training bands interpolated from the given ones
                img = torch.einsum("tc,bchw->bthw", torch.as_tensor(weights, dtype=torch.float32,
                                                                    device=img.device), img.float())
            elif order != list(range(len(order))):
                img = img[:, order]
            p_head = self.head_probabilities(self.pixel_features(img.float(), p_carl))
        p = self.carl_weight * p_carl + (1.0 - self.carl_weight) * p_head
        return p.clamp_min(PROB_FLOOR).log()


def _first_row(wavelengths: Tensor | Sequence[float]) -> list[float]:
    """The wavelengths (µm) of the first image of a (C,) or (B, C) list."""
    wl = torch.as_tensor(wavelengths, dtype=torch.float32)
    return wl.reshape(-1, wl.shape[-1])[0].tolist()


def build_pixel_classifier(carl: CARLSegmenter, config: dict[str, Any]) -> PixelClassifier:
    """An empty :class:`PixelClassifier` of the shape ``config`` (:meth:`PixelClassifier.config`) around ``carl``;
    load the state dict into it afterwards."""
    try:
        ctx = ContextFeatures(**config["context"]) if config.get("context") else None
        heads = []
        for head in config.get("heads") or []:
            if head["type"] not in HEAD_TYPES:
                raise CarlGeoError(f"unknown pixel head type {head['type']!r}")
            heads.append(HEAD_TYPES[head["type"]](**head["kwargs"]))
        bank = ExemplarBank(**config["bank"]) if config.get("bank") else None
        return PixelClassifier(carl, config["wavelengths"], context=ctx, carl_inputs=bool(config.get("carl_inputs")),
                               heads=heads, carl_weight=float(config.get("carl_weight", 0.0)), bank=bank)
    except (KeyError, TypeError) as e:
        raise CarlGeoError(f"malformed pixel classifier settings ({type(e).__name__}: {e})") from None


def is_segmentation_module(module: nn.Module) -> bool:
    """A module with classes: a :class:`CARLSegmenter` or a :class:`PixelClassifier`."""
    return isinstance(module, (CARLSegmenter, PixelClassifier))
