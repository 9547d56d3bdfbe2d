"""Stage 3 of polygon training: the training loop of the CARL model.

:func:`train_loop` runs AdamW with a linear warm-up and cosine decay, validates on held-out chips on one cadence
(:class:`ValidationCadence`), keeps the model state the recipe asks for (the average of the last quarter's
checkpoints, or the best validation checkpoint with early stopping, :mod:`~carl_geo.polygon_training.checkpoints`),
and stops at the step or time budget. One clock starts when the loop starts: the deadline and the schedule both
count from it, so a slow or busy machine still ends its run at a low learning rate.

Experiments plug in through :class:`LoopHooks` (e.g. score every check on a test reference) instead of editing the
loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from carl_geo.datasets.vector_labels import IGNORE_INDEX
from carl_geo.errors import Cancelled
from carl_geo.polygon_training.batches import ChipBatches
from carl_geo.polygon_training.checkpoints import BestCheckpoint, WeightAverage
from carl_geo.polygon_training.metrics import confusion_matrix, mean_iou
from carl_geo.polygon_training.recipe import AVERAGE_FROM_SHARE, MIN_STEP_SHARE, TrainingRecipe
from carl_geo.ssl.ema import cosine_decay


@dataclass
class ValidationCadence:
    """When the training loop validates: every ``every`` of ``total`` steps, or every ``every / total`` of a time
    budget when the clock runs ahead of the steps; one cadence either way. Validating by steps AND by time doubled
    the validations of a run whose clock and steps advance together, and so halved its patience: Sentinel-2 runs
    stopped early at 70 % and 90 % of their budget, at a learning rate still high (held-out mIoU 0.223 / 0.226;
    runs of the whole budget 0.25-0.26).

    Attributes:
        total: steps in the budget.
        every: steps between validations.
        next_share: share of the budget (0..1) at which the next validation is due.
    """

    total: int
    every: int
    next_share: float = field(init=False)

    def __post_init__(self) -> None:
        self.next_share = self.every / self.total

    def due(self, share: float) -> bool:
        """True when ``share`` (0..1: ``i / total`` after ``i`` steps, or the share of a time budget spent, whichever
        is further on) has reached the next validation; the one after that is then ``every / total`` further on."""
        if share < self.next_share - 0.5 / self.total:
            return False
        self.next_share = share + self.every / self.total
        return True


def warmup_cosine_at(share: float, warmup: float, first: float = 0.0, floor: float = 0.01) -> float:
    """LR factor at ``share`` (0..1) of the training budget: linear warm-up over the first ``warmup``
    share (starting at ``first``), then a cosine decay to ``floor`` at 1. A time budget makes the
    schedule follow the clock, so a slow or busy machine still ends its run at a low learning rate."""
    if share < warmup:
        return min(1.0, max(first, share / warmup))
    return cosine_decay((share - warmup) / max(1e-9, 1 - warmup), floor)


@dataclass
class LoopHooks:
    """Optional callbacks of :func:`train_loop`.

    Attributes:
        on_step: ``on_step(step, loss)`` after every optimiser step.
        on_check: ``on_check(step, share, validation_miou or None, model)`` at every validation check.
    """

    on_step: Callable[[int, float], None] | None = None
    on_check: Callable[[int, float, float | None, nn.Module], None] | None = None


@dataclass
class LoopResult:
    """What :func:`train_loop` did: ``steps`` run, why it stopped, which state it kept (text), the best step
    (``keep="best"``) or the averaged steps (``keep="average"``), and the seconds of the loop."""

    steps: int
    stop_reason: str
    kept: str
    best_step: int | None
    averaged_steps: list[int] | None
    seconds: float


@torch.no_grad()
def validation_miou(model: nn.Module, batches: ChipBatches, k: int, device: torch.device) -> float:
    """Mean IoU of ``model`` on the validation chips (all bands; band groups as at prediction)."""
    was_training = model.training
    model.eval()
    cm = np.zeros((k, k), dtype=np.int64)
    for x, y in batches.validation_batches():
        pred = model(x.to(device), batches.wavelengths.to(device)).argmax(1).cpu().numpy()
        cm += confusion_matrix(y.numpy(), pred, k)
    model.train(was_training)
    return float(np.nan_to_num(mean_iou(cm)))


def _class_weights(train: np.ndarray, k: int) -> torch.Tensor:
    """Inverse square-root frequency weights (mean 1) for the cross-entropy."""
    counts = np.bincount(train[train != IGNORE_INDEX], minlength=k).astype(np.float64)
    w = 1.0 / np.sqrt(np.maximum(counts, 1))
    w[counts == 0] = 0
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


def train_loop(model: nn.Module, batches: ChipBatches, recipe: TrainingRecipe, k: int, device: torch.device, *,
               frozen_backbone: bool = False, progress: Callable[[int, int], Any] | None = None,
               log: Callable[[str], None] | None = None, hooks: LoopHooks | None = None) -> LoopResult:
    """Train ``model`` (B, C, H, W) + wavelengths -> (B, K, H, W) logits on ``batches`` for the recipe's budget and
    load the kept state into it.

    Args:
        recipe: resolved (``max_steps``, ``val_every``, ``keep``, ...).
        k: classes.
        frozen_backbone: keep ``model.backbone`` in eval mode (its weights do not train).
        progress: ``progress(done, total)``; returning False raises :class:`~carl_geo.errors.Cancelled`.
        log: receives one line per validation check.
        hooks: experiment callbacks.
    """
    r, say, hooks = recipe, log or (lambda _m: None), hooks or LoopHooks()
    total = int(r.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    start = time.perf_counter()
    deadline = start + 60 * r.max_minutes if r.max_minutes else None

    def share_at(i: int) -> float:
        """Share of the budget spent after ``i`` steps: steps, or time when a time budget runs out first."""
        share = i / total
        if deadline is not None:
            share = max(share, (time.perf_counter() - start) / max(1e-9, deadline - start))
        return min(1.0, share)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: warmup_cosine_at(share_at(i), r.warmup, 1 / total))
    cw = _class_weights(batches.train_mask.numpy(), k).to(device) if r.class_weights else None
    cadence = ValidationCadence(total, int(r.val_every))
    keeper = BestCheckpoint(patience=r.patience, from_share=MIN_STEP_SHARE) if r.keep == "best" else None
    average = WeightAverage(from_share=AVERAGE_FROM_SHARE) if r.keep == "average" else None
    step, shown, losses = 0, 0, []
    stop_reason = "step budget"
    while step < total:
        model.train()
        if frozen_backbone:
            model.backbone.eval()
        x, y, wl = batches.next()
        logits = model(x.to(device), wl.to(device))
        loss = F.cross_entropy(logits, y.to(device), weight=cw, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        step += 1
        if hooks.on_step is not None:
            hooks.on_step(step, losses[-1])
        share_now = share_at(step)
        shown = max(shown, min(total, round(share_now * total))) if deadline is not None else step
        if progress is not None and progress(shown, total) is False:
            raise Cancelled(f"training cancelled after {step} of {total} steps; nothing was written")
        last = step == total or (deadline is not None and time.perf_counter() > deadline)
        if cadence.due(share_now) or last:
            line = f"step {step}/{total}  loss {float(np.mean(losses[-int(r.val_every):])):.4f}"
            stop, score = False, None
            if batches.validation:
                score = validation_miou(model, batches, k, device)
                line += f"  validation mIoU {score:.3f}"
                if keeper is not None:
                    stop = keeper.update(score, step, share_now, model, last=last)
                    line += ("  (best)" if keeper.is_new and keeper.step == step else
                             "" if keeper.counts(share_now, last) else "  (checkpoints count from half the budget)")
            if average is not None and average.update(step, share_now, model, last=last):
                line += "  (averaged)"
            if hooks.on_check is not None:
                hooks.on_check(step, share_now, score, model)
            say(line)
            if stop and not last:  # the last step ends the run anyway: its reason is the budget
                stop_reason = f"early stop: no better validation for {keeper.stale} checks"
                break
        if deadline is not None and time.perf_counter() > deadline:
            stop_reason = f"time budget of {r.max_minutes:g} min"
            break
    if keeper is not None and keeper.state is not None:
        model.load_state_dict(keeper.state)
        kept = f"the model of step {keeper.step}"
    elif average is not None and average.state is not None:
        model.load_state_dict(average.state)
        kept = (f"the average of the models at steps {', '.join(map(str, average.steps))}"
                if len(average.steps) > 1 else f"the model of step {average.steps[0]}")
    else:
        kept = f"the model of step {step}"
    if progress is not None and shown < total:
        progress(total, total)
    model.eval()
    return LoopResult(steps=step, stop_reason=stop_reason, kept=kept,
                      best_step=keeper.step if keeper is not None and keeper.step else None,
                      averaged_steps=list(average.steps) if average is not None else None,
                      seconds=round(time.perf_counter() - start, 2))
