"""Model selection on the validation split, in memory.

Upstream keeps the best checkpoint by a validation metric (``ModelCheckpoint(mode="max")``) and
tests it. Writing a 72 M-parameter checkpoint per run only to reload a linear head is wasteful,
so :class:`KeepBestState` copies the trainable weights (the head in ``linear`` mode, everything
when fine-tuning) to CPU memory whenever the monitored metric improves, and
:meth:`KeepBestState.restore` puts them back before testing.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from carl_geo.errors import CarlGeoError


class KeepBestState(Callback):
    """Remember the weights of the best validation epoch.

    Args:
        monitor: logged metric to maximise (e.g. ``"val_Accuracy"``).

    Attributes:
        best_score: best value seen (``None`` before the first validation).
        best_epoch: its epoch (1-based).
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _changing_keys(module: LightningModule) -> set[str]:
        """State-dict keys that training can change: trainable parameters and all buffers outside a
        frozen backbone."""
        trainable = {n for n, p in module.named_parameters() if p.requires_grad}
        frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
        prefixes = {n.rsplit(".", 1)[0] + "." for n in frozen}
        buffers = {n for n, _ in module.named_buffers() if not any(n.startswith(p) for p in prefixes)}
        return trainable | buffers

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise CarlGeoError(f"model selection: metric {self.monitor!r} was not logged "
                               f"(logged: {', '.join(sorted(trainer.callback_metrics))})")
        score = float(value)
        if math.isnan(score):
            return
        if self.best_score is None or score > self.best_score:
            keys = self._changing_keys(pl_module)
            self.best_score, self.best_epoch = score, trainer.current_epoch + 1
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items() if k in keys}

    def restore(self, module: LightningModule) -> bool:
        """Load the best weights into ``module``; ``False`` when no validation ran."""
        if self._state is None:
            return False
        missing = set(self._state) - set(module.state_dict())
        if missing:
            raise RuntimeError(f"cannot restore best weights, unknown keys {sorted(missing)[:3]}")
        module.load_state_dict(self._state, strict=False)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}
