"""Segmentation scores from a confusion matrix (numpy only).

Convention: ``cm[i, j]`` counts pixels of reference class i predicted as class j.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int,
                     ignore_index: int | None = -1) -> np.ndarray:
    """(K, K) int64 confusion matrix of two label arrays of any equal shape.

    Pixels whose reference is ``ignore_index`` or outside 0..K-1 are skipped; predictions
    outside 0..K-1 are skipped too (they cannot be placed in the matrix).
    """
    t = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(y_pred).ravel().astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in size: {t.size} vs {p.size}")
    keep = (t >= 0) & (t < num_classes) & (p >= 0) & (p < num_classes)
    if ignore_index is not None:
        keep &= t != ignore_index
    return np.bincount(t[keep] * num_classes + p[keep], minlength=num_classes ** 2).reshape(num_classes, num_classes)


def overall_accuracy(cm: np.ndarray) -> float:
    """Correct pixels / all pixels (NaN for an empty matrix)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_iou(cm: np.ndarray) -> np.ndarray:
    """(K,) IoU = TP / (TP + FP + FN); NaN for a class absent from both reference and prediction."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean of :func:`per_class_iou` over the classes that occur (NaN ignored)."""
    iou = per_class_iou(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def segmentation_report(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """JSON-friendly dict: overall_accuracy, per_class_iou {name: iou or None}, mean_iou,
    confusion_matrix (list of lists), class_names, n_pixels."""
    iou = per_class_iou(cm)
    return {
        "overall_accuracy": overall_accuracy(cm),
        "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(class_names, iou)},
        "mean_iou": mean_iou(cm),
        "confusion_matrix": cm.astype(int).tolist(),
        "class_names": list(class_names),
        "n_pixels": int(cm.sum()),
    }


def format_report(report: dict[str, Any]) -> str:
    """Human-readable multi-line summary of :func:`segmentation_report`."""
    head = (f"overall accuracy {report['overall_accuracy']:.3f}   mean IoU {report['mean_iou']:.3f}"
            f"   ({report.get('n_pixels', 0)} pixels)")
    lines = [head]
    cm = np.asarray(report["confusion_matrix"])
    for i, name in enumerate(report["class_names"]):
        iou = report["per_class_iou"].get(name)
        lines.append(f"  {name:<20s} IoU {'  n/a' if iou is None else f'{iou:.3f}'}   reference px {int(cm[i].sum())}")
    return "\n".join(lines)
