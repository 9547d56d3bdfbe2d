"""A per-pixel MLP head, how it is fitted, and the mean class probabilities of several pixel heads.

:class:`PixelMLP` maps (P, F) pixel features to (P, K) logits; :func:`fit_pixel_mlp` trains one on (N, F) features
and (N,) classes on the CPU (AdamW, one-cycle schedule, class-weighted cross-entropy; a few seconds for 40,000
pixels). Both the kept model's heads (:mod:`~carl_geo.polygon_training.heads`) and the band-agnostic path's
(:mod:`~carl_geo.models.band_adapter`) are fitted with it. :func:`mean_probabilities` averages the class
probabilities of MLPs (softmax of their logits) and forests (:class:`~carl_geo.models.tree_ensemble.TreeEnsemble`,
probabilities already).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError

#: MLP settings: two hidden layers of 128, dropout 0.2, 10 epochs of 256-pixel batches (at least 200 steps),
#: peak learning rate 2e-3. Measured on Sentinel-2 (context + CARL probabilities, 40,000 pixels): 10 epochs 0.368,
#: 30 epochs 0.340, 5 epochs 0.355 (more epochs learn the training polygons' noise).
MLP_HIDDEN, MLP_DEPTH, MLP_DROPOUT = 128, 2, 0.2
MLP_EPOCHS, MLP_MIN_STEPS, MLP_BATCH, MLP_LR, MLP_WEIGHT_DECAY = 10, 200, 256, 2e-3, 1e-3


class PixelMLP(nn.Module):
    """An MLP applied to every pixel: standardise the F features, ``depth`` x (Linear, GELU, Dropout), Linear.

    ``forward(x (P, F)) -> (P, K)`` logits. Buffers ``feat_mean`` / ``feat_std`` (F,) are set by training.
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, depth: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        if min(in_dim, num_classes, hidden, depth) < 1:
            raise CarlGeoError("an MLP head needs at least one input, class, hidden unit and layer")
        self.in_dim, self.num_classes, self.hidden, self.depth = int(in_dim), int(num_classes), int(hidden), int(depth)
        self.dropout = float(dropout)
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "num_classes": self.num_classes, "hidden": self.hidden, "depth": self.depth,
                "dropout": self.dropout}

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x.float() - self.feat_mean) / self.feat_std)


def fit_pixel_mlp(x: np.ndarray, y: np.ndarray, k: int, seed: int = 0) -> PixelMLP:
    """A :class:`PixelMLP` of K classes trained on (N, F) float features and (N,) int classes in 0..K-1 (the
    module's settings). Autograd is switched on here, so it may be called under ``torch.no_grad`` or
    ``torch.inference_mode`` (the predictor's); the same inputs, seed and thread count give the same weights."""
    if len(y) < 1:
        raise CarlGeoError("an MLP head needs at least one training pixel")
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        mlp = PixelMLP(xt.shape[1], k, MLP_HIDDEN, MLP_DEPTH, MLP_DROPOUT)
        mlp.feat_mean.copy_(xt.mean(0))
        mlp.feat_std.copy_(xt.std(0).nan_to_num(1.0).clamp_min(1e-6))
        counts = torch.bincount(yt, minlength=k).double()
        weight = torch.where(counts > 0, 1 / counts.clamp_min(1).sqrt(), torch.zeros_like(counts))
        weight = (weight / weight[counts > 0].mean()).float()
        steps = max(MLP_MIN_STEPS, MLP_EPOCHS * max(1, len(yt) // MLP_BATCH))
        opt = torch.optim.AdamW(mlp.parameters(), lr=MLP_LR / 2, weight_decay=MLP_WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, MLP_LR, total_steps=steps)
        mlp.train()
        for _ in range(steps):
            j = torch.randint(0, len(yt), (min(MLP_BATCH, len(yt)),), generator=gen)
            loss = F.cross_entropy(mlp(xt[j]), yt[j], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return mlp.eval()


def head_kind(head: nn.Module) -> str:
    """The kind of a pixel head as model configs store it: ``"mlp"`` for a :class:`PixelMLP`, ``"forest"`` for any
    other (a :class:`~carl_geo.models.tree_ensemble.TreeEnsemble`)."""
    return "mlp" if isinstance(head, PixelMLP) else "forest"


def head_in_features(head: nn.Module) -> int:
    """F, the number of features a pixel head reads."""
    return head.in_dim if isinstance(head, PixelMLP) else head.n_features


def mean_probabilities(heads: Sequence[nn.Module], x: Tensor) -> Tensor:
    """(P, F) features -> (P, K) mean class probabilities of ``heads`` (:class:`PixelMLP`: softmax of its logits;
    a forest: its probabilities), in ``x``'s floating dtype."""
    if not heads:
        raise CarlGeoError("no pixel heads to average")
    total = None
    for head in heads:
        p = head(x)
        p = (p.softmax(-1) if isinstance(head, PixelMLP) else p).to(x.dtype)
        total = p if total is None else total + p
    return total / len(heads)
