"""k-NN monitoring of representation quality during pre-training (upstream ``KNNValidator``).

Features: spatial features of the backbone averaged over the token grid (B, D), L2-normalised.
A bank is filled from a labelled split; each query is classified by its k most cosine-similar
bank entries, each voting for its class with weight ``exp(cosine / temperature)``
(upstream: k = 3, temperature = 0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from carl_geo.errors import CarlGeoError
from carl_geo.models.carl import CARL


def pooled_features(backbone: CARL, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
    """(B, C, H, W) image -> (B, D) L2-normalised mean spatial feature (float32)."""
    feats = backbone(img, wavelengths, band_mask).spatial.float().mean(dim=(-2, -1))
    return F.normalize(feats, dim=-1)


class KNNMonitor:
    """Feature bank + weighted k-NN vote.

    Args:
        k: neighbours per query (capped at the bank size).
        temperature: similarity temperature of the vote weights.
    """

    def __init__(self, k: int = 3, temperature: float = 0.1) -> None:
        if k < 1 or temperature <= 0:
            raise CarlGeoError("k must be >= 1 and temperature > 0")
        self.k, self.temperature = k, temperature
        self.clear()

    def clear(self) -> None:
        self._bank: list[Tensor] = []
        self._labels: list[Tensor] = []
        self.correct = 0
        self.total = 0

    def add_to_bank(self, features: Tensor, labels: Tensor) -> None:
        """features (B, D) normalised, labels (B,) int."""
        self._bank.append(features.detach())
        self._labels.append(labels.detach().long().reshape(-1))

    @property
    def bank_size(self) -> int:
        return sum(len(b) for b in self._bank)

    def predict(self, features: Tensor) -> Tensor:
        """(Q, D) normalised query features -> (Q,) predicted labels."""
        if not self._bank:
            raise RuntimeError("the k-NN bank is empty: fill it with add_to_bank() first")
        bank = torch.cat(self._bank).to(features.device, features.dtype)
        labels = torch.cat(self._labels).to(features.device)
        num_classes = int(labels.max()) + 1
        sim, idx = (features @ bank.T).topk(min(self.k, len(bank)), dim=-1)
        weights = (sim / self.temperature).exp()
        votes = torch.zeros(features.shape[0], num_classes, device=features.device, dtype=weights.dtype)
        votes.scatter_add_(1, labels[idx], weights)
        return votes.argmax(dim=-1)

    def update(self, features: Tensor, labels: Tensor) -> float:
        """Classify a query batch, accumulate, and return the batch accuracy."""
        correct = int((self.predict(features) == labels.to(features.device).long().reshape(-1)).sum())
        self.correct += correct
        self.total += len(features)
        return correct / max(len(features), 1)

    def compute(self) -> float:
        """Accuracy over all queries since :meth:`clear`."""
        return self.correct / self.total if self.total else float("nan")
