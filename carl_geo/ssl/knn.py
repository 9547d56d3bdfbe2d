"""The one weighted k-nearest-neighbour vote of carl_geo, and the k-NN monitor of pre-training
(upstream ``KNNValidator``). CARL-SSL's monitor (:class:`KNNMonitor`) and GEO-Bench's k-NN protocol
(:mod:`carl_geo.evaluation.geobench.knn`) both use the vote; it was ``carl_geo.evaluation.knn`` before
issue #29 (that name still imports).

Features are the spatial features of the backbone averaged over the token grid (B, D),
L2-normalised (:func:`pooled_features`); a query's class scores are its ``k`` most cosine-similar
bank entries' labels, each weighted by ``exp(cosine / temperature)`` (:func:`knn_scores`; DINO's
weighted k-NN, upstream's ``KNNValidator``). The monitor fills a bank from a labelled split and
classifies each query by the vote (upstream: k = 3, temperature = 0.1).
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


def knn_scores(bank: Tensor, bank_labels: Tensor, queries: Tensor, k: int, num_classes: int,
               multilabel: bool = False, temperature: float = 0.07, chunk: int = 1024) -> Tensor:
    """Class scores (Q, K) of ``queries`` (Q, D) from their ``k`` nearest ``bank`` (N, D) entries (cosine
    similarity of normalised features), each voting with weight ``exp(cosine / temperature)``; scores
    are the weighted label frequencies in [0, 1] (labels (N,) class indices, or (N, K) {0, 1} with
    ``multilabel``). ``k`` is capped at the bank size."""
    k = min(k, bank.shape[0])
    targets = bank_labels.float() if multilabel else F.one_hot(bank_labels.long(), num_classes).float()
    targets = targets.to(queries.device)
    bank = bank.to(queries.device, queries.dtype)
    out = []
    for start in range(0, queries.shape[0], chunk):
        sim, idx = (queries[start:start + chunk] @ bank.T).topk(k, dim=1)
        w = (sim.float() / temperature).exp()
        votes = (w.unsqueeze(-1) * targets[idx]).sum(1)
        out.append(votes / w.sum(1, keepdim=True))
    return torch.cat(out)


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
