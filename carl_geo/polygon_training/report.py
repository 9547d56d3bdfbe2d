"""Confusion-matrix figure (PNG) for a training report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from carl_geo.io.output_paths import atomic_path


def confusion_png(cm: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike,
                  title: str = "validation confusion matrix") -> Path:
    """Write a (K, K) confusion matrix (rows: reference, columns: prediction) as a PNG.

    Cell colour is the row-normalised fraction (recall); the text is the pixel count.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.int64)
    k = len(class_names)
    rows = cm.sum(1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    size = 1.8 + 0.55 * k
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of reference row")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
