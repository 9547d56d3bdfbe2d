"""The CARL part of a polygon-trained model: a :class:`~carl_geo.models.CARLSegmenter` trained from scratch (or a
head on a frozen pretrained backbone) on the scene's chips, by the batch source and the training loop.

Its per-pixel class probabilities are a feature of the pixel heads (:mod:`~carl_geo.polygon_training.heads`), and
it is the wavelength-conditioned part of the kept model: with other bands than the training ones the map comes from
it, fused with a forest fitted on the training pixels the model carries (:mod:`carl_geo.models.band_adapter`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from carl_geo.models import CARL, CARLSegmenter, get_config, load_bundle
from carl_geo.models.config import scratch_variant
from carl_geo.polygon_training.batches import ChipBatches
from carl_geo.polygon_training.loop import LoopHooks, LoopResult, RunDeadline, train_loop
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


@dataclass
class RunBudget:
    """The whole run's wall-time budget, which the loop leaves room in for the work after it.

    Attributes:
        finish_by: ``time.perf_counter()`` by which the run should end.
        minutes: that budget in minutes (for messages).
        after_loop: ``after_loop(model) -> seconds`` the work after the loop will take with this model (measured).
    """

    finish_by: float
    minutes: float
    after_loop: Callable[[CARLSegmenter], float]


#: However long the work after the loop, the loop keeps at least this share of its own time budget.
MIN_LOOP_SHARE = 0.5


def run_deadline(model: CARLSegmenter, recipe: TrainingRecipe, budget: RunBudget, say: Callable[[str], None]
                 ) -> RunDeadline:
    """The loop's end under ``budget``: the run's end less the work after the loop, measured now with ``model``;
    never before :data:`MIN_LOOP_SHARE` of the loop's own time budget (with a notice that the run will take longer).
    A notice says when it ends the loop before its own budget."""
    after = budget.after_loop(model)
    now = time.perf_counter()
    own = now + 60 * recipe.max_minutes if recipe.max_minutes else math.inf
    floor = now + MIN_LOOP_SHARE * (own - now) if math.isfinite(own) else now
    deadline = RunDeadline(budget.finish_by, after, floor, f"time budget of {budget.minutes:g} min for the whole run")
    if budget.finish_by - after < floor:
        say(f"note: pixel features and heads take about {after / 60:.1f} min with this model on this machine: the "
            f"run will take longer than its {budget.minutes:g} min budget (a GPU, or a smaller labelled window, is "
            "faster)")
    elif deadline.at() < own:
        say(f"note: the CARL model trains for {(deadline.at() - now) / 60:.1f} min, leaving {after / 60:.1f} min of "
            f"the {budget.minutes:g}-min run for pixel features and heads")
    return deadline


def train_carl(scene: TrainingScene, recipe: TrainingRecipe, weights: Path | None, device: torch.device, *,
               progress: Callable[[int, int], Any] | None = None, log: Callable[[str], None] | None = None,
               hooks: LoopHooks | None = None, budget: RunBudget | None = None,
               image: np.ndarray | None = None) -> tuple[CARLSegmenter, LoopResult]:
    """Build the CARL segmenter for ``recipe`` (resolved) and train it on ``scene``'s training polygons; with a
    run ``budget``, the loop ends early enough for the work after it (measured with this model) to fit.
    ``image``: ``scene.normalized()`` if the caller holds it (the chips then share it, :class:`ChipBatches`).

    Returns the trained model (eval mode, on ``device``) and what the loop did."""
    say = log or (lambda _m: None)
    torch.manual_seed(recipe.seed)
    model, frozen = build_carl(scene.n_classes, recipe, weights)
    model.to(device)
    deadline = run_deadline(model, recipe, budget, say) if budget is not None else None
    batches = ChipBatches(scene, recipe, image)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"training {'a head on a frozen backbone' if frozen else f'{recipe.config} CARL end to end'} "
        f"({n_params / 1e6:.2f} M trainable parameters, patch {model.backbone.patch_size}) on {device}: up to "
        f"{recipe.max_steps} steps of {batches.describe()}"
        + (f"; validation every {recipe.val_every} steps" if batches.validation else ""))
    result = train_loop(model, batches, recipe, scene.n_classes, device, frozen_backbone=frozen, progress=progress,
                        log=log, hooks=hooks, run_deadline=deadline)
    say(f"stopped after {result.steps} steps ({result.stop_reason}); kept {result.kept}")
    return model, result
