"""Teacher EMA and the learning-rate schedule of CARL-SSL (both functions of the optimiser step,
so a resumed run continues them exactly)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def ema_momentum(step: int, total_steps: int, start: float = 0.996, end: float = 0.99999) -> float:
    """Momentum of the teacher update after optimiser step ``step`` (0-based): rises linearly from
    ``start`` (step 0) to ``end`` (step ``total_steps``), as upstream's per-iteration schedule."""
    if total_steps <= 0:
        return end
    return start + min(step, total_steps) * (end - start) / total_steps


def teacher_pairs(student: nn.Module, teacher: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """(student, teacher) parameter lists matched by name (the student's predictors have no
    teacher counterpart). Raises ValueError if a teacher parameter has no student twin."""
    s = dict(student.named_parameters())
    t = dict(teacher.named_parameters())
    missing = sorted(set(t) - set(s))
    if missing:
        raise ValueError(f"teacher parameters without a student counterpart: {missing[:5]}")
    names = list(t)
    return [s[k] for k in names], [t[k] for k in names]


@torch.no_grad()
def ema_update(student_params: Sequence[Tensor], teacher_params: Sequence[Tensor], momentum: float) -> None:
    """``teacher = momentum * teacher + (1 - momentum) * student``, in place."""
    t = list(teacher_params)
    s = [p.detach().to(q.dtype) for p, q in zip(student_params, t, strict=True)]
    torch._foreach_mul_(t, momentum)
    torch._foreach_add_(t, s, alpha=1.0 - momentum)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Learning-rate factor: linear warm-up over ``warmup_steps`` (from 1/warmup to 1), then cosine
    decay to ``min_ratio`` (= min_lr / lr) at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    return cosine_decay(max(step - warmup_steps, 0) / span, min_ratio)


def cosine_decay(progress: float, min_ratio: float) -> float:
    """Cosine from 1 at ``progress`` 0 to ``min_ratio`` at ``progress`` >= 1."""
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
