"""The CARL part of a polygon-trained model: a :class:`~carl_geo.models.CARLSegmenter` trained from scratch (or a
head on a frozen pretrained backbone) on the scene's chips, by the batch source and the training loop.

Its per-pixel class probabilities are a feature of the pixel heads (:mod:`~carl_geo.polygon_training.heads`), and
it is the wavelength-conditioned part of the kept model: with other bands than the training ones the map comes from
it, fused with a forest fitted on the training pixels the model carries (:mod:`carl_geo.models.band_adapter`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from carl_geo.models import CARL, CARLSegmenter, get_config, load_bundle
from carl_geo.models.config import scratch_variant
from carl_geo.polygon_training.batches import ChipBatches
from carl_geo.polygon_training.loop import LoopHooks, LoopResult, train_loop
from carl_geo.polygon_training.recipe import TrainingRecipe
from carl_geo.polygon_training.scene import TrainingScene

#: Head settings per backbone config (a narrow decoder keeps the tiny model fast on a CPU).
HEAD_KWARGS = {"tiny": {"progressive": {"width": 32}, "upernet": {"width": 32}}, "published": {}}
HEAD_KWARGS["tiny_polygons"] = HEAD_KWARGS["tiny"]


def backbone_patch(weights: Path | None) -> int | None:
    """Patch size of a pretrained backbone file (None: training from scratch)."""
    if weights is None:
        return None
    return int(load_bundle(weights).backbone.patch_size)


def build_carl(k: int, recipe: TrainingRecipe, weights: Path | None) -> tuple[CARLSegmenter, bool]:
    """A fresh segmenter, or a frozen pretrained backbone + new head; returns (model, frozen)."""
    head = recipe.head
    head_kwargs = dict(HEAD_KWARGS.get(recipe.config, {}).get(head, {}))
    group = recipe.max_bands
    if weights is None:
        base = get_config(recipe.config)
        patch = int(recipe.patch_size or base.patch_size)
        cfg = scratch_variant(base, patch)  # the registered "tiny_polygons" is this of "tiny" at patch 4
        if head == "progressive":
            head_kwargs.setdefault("n_up", max(0, round(math.log2(patch))))
        return CARLSegmenter(CARL(cfg), k, head, head_kwargs, max_bands=group,
                             pixelwise=recipe.mode == "pixels"), False
    backbone = load_bundle(weights).backbone
    for p in backbone.parameters():
        p.requires_grad_(False)
    if head == "progressive":
        head_kwargs.setdefault("n_up", max(0, round(math.log2(backbone.patch_size))))
    return CARLSegmenter(backbone, k, head, head_kwargs, max_bands=group), True


def train_carl(scene: TrainingScene, recipe: TrainingRecipe, weights: Path | None, device: torch.device, *,
               progress: Callable[[int, int], Any] | None = None, log: Callable[[str], None] | None = None,
               hooks: LoopHooks | None = None) -> tuple[CARLSegmenter, LoopResult]:
    """Build the CARL segmenter for ``recipe`` (resolved) and train it on ``scene``'s training polygons.

    Returns the trained model (eval mode, on ``device``) and what the loop did."""
    say = log or (lambda _m: None)
    torch.manual_seed(recipe.seed)
    model, frozen = build_carl(scene.n_classes, recipe, weights)
    model.to(device)
    batches = ChipBatches(scene, recipe)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"training {'a head on a frozen backbone' if frozen else f'{recipe.config} CARL end to end'} "
        f"({n_params / 1e6:.2f} M trainable parameters, patch {model.backbone.patch_size}) on {device}: up to "
        f"{recipe.max_steps} steps of {batches.describe()}"
        + (f"; validation every {recipe.val_every} steps" if batches.validation else ""))
    result = train_loop(model, batches, recipe, scene.n_classes, device, frozen_backbone=frozen, progress=progress,
                        log=log, hooks=hooks)
    say(f"stopped after {result.steps} steps ({result.stop_reason}); kept {result.kept}")
    return model, result
