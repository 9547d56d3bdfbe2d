"""Scene classification on the CARL backbone (upstream's linear probe: global average pool + linear)."""

from __future__ import annotations

from torch import Tensor, nn

from carl_geo.errors import CarlGeoError
from carl_geo.models.carl import CARL


class CARLClassifier(nn.Module):
    """CARL backbone + global average pooling of the spatial features + a linear layer.

    ``forward(img (B, C, H, W), wavelengths (C,) | (B, C) µm, band_mask=None) -> logits (B, K)``.
    """

    def __init__(self, backbone: CARL, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise CarlGeoError("num_classes must be >= 1")
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = nn.Linear(backbone.embed_dim, num_classes)

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        feats = self.backbone(img, wavelengths, band_mask).spatial  # (B, D, h, w)
        return self.head(feats.mean(dim=(-2, -1)))
