"""k-NN monitoring of representation quality during pre-training (upstream ``KNNValidator``).

Features: spatial features of the backbone averaged over the token grid (B, D), L2-normalised.
A bank is filled from a labelled split; each query is classified by its k most cosine-similar
bank entries, each voting for its class with weight ``exp(cosine / temperature)``
(upstream: k = 3, temperature = 0.1): the vote of :mod:`carl_geo.evaluation.knn`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from carl_geo.errors import CarlGeoError
from carl_geo.evaluation.knn import knn_scores, pooled_features  # noqa: F401  (pooled_features: re-exported)


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
        labels = torch.cat(self._labels)
        scores = knn_scores(torch.cat(self._bank), labels, features, self.k, int(labels.max()) + 1,
                            temperature=self.temperature)
        return scores.argmax(dim=-1)

    def update(self, features: Tensor, labels: Tensor) -> float:
        """Classify a query batch, accumulate, and return the batch accuracy."""
        correct = int((self.predict(features) == labels.to(features.device).long().reshape(-1)).sum())
        self.correct += correct
        self.total += len(features)
        return correct / max(len(features), 1)

    def compute(self) -> float:
        """Accuracy over all queries since :meth:`clear`."""
        return self.correct / self.total if self.total else float("nan")
