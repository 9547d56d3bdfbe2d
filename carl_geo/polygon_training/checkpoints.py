"""Which model state a polygon-training run keeps: the average of the model states at the validation checks of
the last quarter of the budget (:class:`WeightAverage`, the default), or its best validation checkpoint of the
second half (:class:`BestCheckpoint`, ``keep="best"``).

Averaging the weights at the end of the schedule (tail averaging, as in stochastic weight averaging, Izmailov et
al. 2018) needs no validation score. The held-out mIoU of single checkpoints swings by 0.05-0.10 from one check
to the next (NC), and the best of a few validation polygons was a poor one as often as a good one: NC seeds 0-3
0.253 / 0.304 / 0.308 / 0.268 with the best validation checkpoint, 0.315 / 0.275 / 0.323 / 0.327 with the
average; Sentinel-2 seed 0 0.196 and 0.252 (:data:`~carl_geo.polygon_training.recipe.AVERAGE_FROM_SHARE` has
the whole measurement).

For ``keep="best"``: validation on held-out polygons is noisy (a few polygons,
:data:`~carl_geo.polygon_training.polygons.VAL_CHIPS` chips per check), and a lucky score early in training used
to win: on the NC scene a run kept step 120 of 280 (validation mIoU 0.327, held-out map 0.238). So checkpoints
only count from ``from_share`` of the budget on (the learning rate has then decayed from its peak), and early
stopping compares only those. NC, seeds 0 / 1 / 2, held-out mIoU: 0.238 / 0.324 / 0.249 before, 0.310 / 0.322 /
0.306 with this rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class _FromShare:
    """What both keepers share: only states at or after ``from_share`` of the budget (or the run's last) count."""

    from_share: float

    def counts(self, share: float, last: bool = False) -> bool:
        """True where a state at ``share`` of the step / time budget (0..1), or the run's last one, counts."""
        return last or share >= self.from_share


@dataclass
class BestCheckpoint(_FromShare):
    """The best-scoring model state among validations made at or after ``from_share`` of the budget.

    Attributes:
        patience: counted validations without improvement after which :meth:`update` asks to stop.
        from_share: share of the step / time budget (0..1) before which validations are only logged.
        min_gain: a score must beat the best by more than this to count as better.
        score / step / state: the kept validation score, its step and a copy of the model's state_dict
            (None until a validation counted).
        stale: counted validations since the kept one.
    """

    patience: int
    min_gain: float = 1e-4
    score: float | None = None
    step: int = 0
    stale: int = 0
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, score: float, step: int, share: float, model: torch.nn.Module, last: bool = False) -> bool:
        """Record a validation ``score`` (higher is better) at ``step``; True when the run should stop early.

        Before ``from_share`` (and not ``last``) nothing is kept and nothing counts towards ``patience``."""
        if not self.counts(share, last):
            return False
        if self.score is None or score > self.score + self.min_gain:
            self.score, self.step, self.stale = score, step, 0
            self.state = {n: v.detach().clone() for n, v in model.state_dict().items()}
        else:
            self.stale += 1
        return self.stale >= self.patience

    @property
    def is_new(self) -> bool:
        """The last :meth:`update` kept its model (the step to mark "best" in a log)."""
        return self.state is not None and self.stale == 0


@dataclass
class WeightAverage(_FromShare):
    """The running mean of the model states recorded at or after ``from_share`` of the budget.

    Floating-point parameters and buffers (BatchNorm running statistics included) are averaged; integer buffers
    (BatchNorm's batch counter) keep their latest value.

    Attributes:
        from_share: share of the step / time budget (0..1) before which states are not recorded.
        steps: the steps of the averaged states.
        state: the mean state_dict (None until a state was recorded).
    """

    steps: list[int] = field(default_factory=list)
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, step: int, share: float, model: torch.nn.Module, last: bool = False) -> bool:
        """Add the model's state at ``step`` to the average where it counts; True when it was added."""
        if not self.counts(share, last):
            return False
        current = model.state_dict()
        if self.state is None:
            self.state = {n: v.detach().clone() for n, v in current.items()}
        else:
            w = 1.0 / (len(self.steps) + 1)
            for n, v in current.items():
                if v.is_floating_point():
                    self.state[n].lerp_(v.detach(), w)
                else:
                    self.state[n].copy_(v.detach())
        self.steps.append(step)
        return True
