"""k-nearest-neighbour evaluation of frozen CARL features (classification tasks).

Features are the globally average-pooled spatial features (B, D) of the frozen backbone on the
evaluation pipeline (image resized to ``image_size``), L2-normalised. Each query's class scores
are the neighbours' labels weighted by ``exp(cosine / T)`` (DINO's weighted k-NN, T = 0.07; the vote of
:mod:`carl_geo.ssl.knn`);
``k`` is chosen on the validation split among ``ks`` and the test split is scored once.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

from carl_geo.datasets.geobench.augment import eval_transform
from carl_geo.models.carl import CARL
from carl_geo.ssl.knn import knn_scores, pooled_features

DEFAULT_KS = (5, 10, 20)
TEMPERATURE = 0.07


@torch.no_grad()
def extract_features(backbone: CARL, loader: DataLoader, image_size: int, device: torch.device,
                     bf16: bool = False) -> tuple[Tensor, Tensor]:
    """Pooled, L2-normalised features (N, D) float32 and labels (N,) / (N, K) of a loader, on CPU."""
    backbone.eval().to(device)
    feats, labels = [], []
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    for batch in loader:
        batch = eval_transform({k: v.to(device) for k, v in batch.items()}, image_size)
        with ctx:
            feats.append(pooled_features(backbone, batch["image"], batch["wavelengths"], batch.get("band_mask")).cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(feats), torch.cat(labels)


def _metrics(scores: Tensor, y: Tensor, num_classes: int, multilabel: bool) -> dict[str, float]:
    if multilabel:
        return {"F1": float(MultilabelF1Score(num_classes, average="micro")(scores, y.long())),
                "Accuracy": float(MultilabelAccuracy(num_classes, average="micro")(scores, y.long())),
                "MicroAP": float(MultilabelAveragePrecision(num_classes, average="micro")(scores, y.long()))}
    preds = scores.argmax(1)
    return {"Accuracy": float(MulticlassAccuracy(num_classes, average="micro")(preds, y.long())),
            "F1": float(MulticlassF1Score(num_classes, average="macro")(preds, y.long()))}


def run_knn(backbone: CARL, loaders: dict[str, DataLoader], num_classes: int, multilabel: bool, image_size: int,
            device: torch.device, bf16: bool = False, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """k-NN evaluation: returns ``{"k": chosen k, "val_<m>": ..., "test_<m>": ...}`` (metrics in [0, 1];
    Accuracy/F1/MicroAP as in :class:`~carl_geo.trainers.CARLClassificationTask`; ``k`` is chosen
    by validation accuracy, or micro AP for multi-label)."""
    feats = {s: extract_features(backbone, dl, image_size, device, bf16) for s, dl in loaders.items()}
    (tr_f, tr_y), (va_f, va_y), (te_f, te_y) = feats["train"], feats["valid"], feats["test"]
    key = "MicroAP" if multilabel else "Accuracy"
    best: tuple[float, int, dict[str, float]] | None = None
    for k in ks:
        m = _metrics(knn_scores(tr_f, tr_y, va_f, k, num_classes, multilabel), va_y, num_classes, multilabel)
        if best is None or m[key] > best[0]:
            best = (m[key], k, m)
    assert best is not None
    _, k, val = best
    test = _metrics(knn_scores(tr_f, tr_y, te_f, k, num_classes, multilabel), te_y, num_classes, multilabel)
    return {"k": k, **{f"val_{n}": v for n, v in val.items()}, **{f"test_{n}": v for n, v in test.items()}}
