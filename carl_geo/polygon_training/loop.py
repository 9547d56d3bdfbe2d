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
class RunDeadline:
    """The end of the training loop under a whole-run time budget: ``finish_by - after_s * slowdown``, never before
    ``floor``. ``slowdown`` (:func:`slowdown`) compares the recent validations with the first ones (the validation
    chips are the same work every time), so a machine that gets busier during the run reserves proportionally
    more time for the work after the loop, which it measured at the start.

    Attributes:
        finish_by: ``time.perf_counter()`` by which the whole run should end.
        after_s: seconds the work after the loop takes, measured before the loop.
        floor: ``time.perf_counter()`` before which the loop never ends for this reason.
        reason: the stop reason when this deadline ends the loop.
    """

    finish_by: float
    after_s: float
    floor: float
    reason: str

    def at(self, slowdown: float = 1.0) -> float:
        return max(self.floor, self.finish_by - self.after_s * max(1.0, slowdown))


#: Validations compared at each end by :func:`slowdown`, and the largest factor it gives.
SLOWDOWN_WINDOW = 3
MAX_SLOWDOWN = 2.0


def slowdown(val_seconds: list[float]) -> float:
    """How much slower the machine runs now than at the start of the loop: the median of the last
    :data:`SLOWDOWN_WINDOW` validations' seconds over the median of the first ones (1 until there are twice as many;
    within 1..:data:`MAX_SLOWDOWN`). Medians, because one validation's time jitters: the last over the fastest
    one ended a published-backbone run 40 s early."""
    n = SLOWDOWN_WINDOW
    if len(val_seconds) < 2 * n:
        return 1.0
    return min(MAX_SLOWDOWN, max(1.0, float(np.median(val_seconds[-n:]) / np.median(val_seconds[:n]))))


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
               log: Callable[[str], None] | None = None, hooks: LoopHooks | None = None,
               run_deadline: RunDeadline | None = None) -> LoopResult:
    """Train ``model`` (B, C, H, W) + wavelengths -> (B, K, H, W) logits on ``batches`` for the recipe's budget and
    load the kept state into it.

    Args:
        recipe: resolved (``max_steps``, ``val_every``, ``keep``, ...).
        k: classes.
        frozen_backbone: keep ``model.backbone`` in eval mode (its weights do not train).
        progress: ``progress(done, total)``; returning False raises :class:`~carl_geo.errors.Cancelled`.
        log: receives one line per validation check.
        hooks: experiment callbacks.
        run_deadline: the end of the loop under a whole-run budget, where it comes before the loop's own time
            budget (:class:`RunDeadline`).

    A time budget is a deadline: the loop stops after the step whose successor (with the closing validation)
    would end past it, instead of overrunning it by a step and a validation (seconds with a published backbone).
    """
    r, say, hooks = recipe, log or (lambda _m: None), hooks or LoopHooks()
    total = int(r.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
    start = time.perf_counter()
    own = start + 60 * r.max_minutes if r.max_minutes else None
    val_times: list[float] = []  # seconds of each validation (the same chips every time)

    def deadline_now() -> tuple[float | None, str]:
        """The loop's deadline now and its stop reason: its own time budget, or the run's where that is earlier."""
        own_reason = f"time budget of {r.max_minutes:g} min" if r.max_minutes else ""
        if run_deadline is None:
            return own, own_reason
        at = run_deadline.at(slowdown(val_times))
        return (at, run_deadline.reason) if own is None or at < own else (own, own_reason)

    def share_at(i: int) -> float:
        """Share of the budget spent after ``i`` steps: steps, or time when a time budget runs out first."""
        share = i / total
        deadline = deadline_now()[0]
        if deadline is not None:
            share = max(share, (time.perf_counter() - start) / max(1e-9, deadline - start))
        return min(1.0, share)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: warmup_cosine_at(share_at(i), r.warmup, 1 / total))
    cw = _class_weights(batches.train_mask.numpy(), k).to(device) if r.class_weights else None
    cadence = ValidationCadence(total, int(r.val_every))
    keeper = BestCheckpoint(patience=r.patience, from_share=MIN_STEP_SHARE) if r.keep == "best" else None
    average = WeightAverage(from_share=AVERAGE_FROM_SHARE) if r.keep == "average" else None
    step, shown, losses = 0, 0, []
    step_times: list[float] = []  # seconds of the recent steps (no validation)
    timed = own is not None or run_deadline is not None
    stop_reason = "step budget"
    while step < total:
        t_step = time.perf_counter()
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
        step_times = [*step_times[-4:], time.perf_counter() - t_step]  # a step's hook is part of the step
        share_now = share_at(step)
        shown = max(shown, min(total, round(share_now * total))) if timed else step
        if progress is not None and progress(shown, total) is False:
            raise Cancelled(f"training cancelled after {step} of {total} steps; nothing was written")
        # out of time when a validation due now, the next step and the closing validation would end past the
        # deadline: this step is then the last (its validation the closing one)
        due = cadence.due(share_now)
        deadline, time_reason = deadline_now()
        val_s = val_times[-1] if val_times else 0.0
        out_of_time = deadline is not None and (time.perf_counter() + float(np.median(step_times))
                                                + (2 if due else 1) * val_s > deadline)
        last = step == total or out_of_time
        if due or last:
            line = f"step {step}/{total}  loss {float(np.mean(losses[-int(r.val_every):])):.4f}"
            stop, score = False, None
            if batches.validation:
                t_val = time.perf_counter()
                score = validation_miou(model, batches, k, device)
                val_times.append(time.perf_counter() - t_val)
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
        if out_of_time and step < total:
            stop_reason = time_reason
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
