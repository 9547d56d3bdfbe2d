"""The one weighted k-nearest-neighbour vote of carl_geo (CARL-SSL's k-NN monitor and GEO-Bench's
k-NN protocol both use it).

Features are the spatial features of the backbone averaged over the token grid (B, D),
L2-normalised (:func:`pooled_features`); a query's class scores are its ``k`` most cosine-similar
bank entries' labels, each weighted by ``exp(cosine / temperature)`` (:func:`knn_scores`; DINO's
weighted k-NN, upstream's ``KNNValidator``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

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

