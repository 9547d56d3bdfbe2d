"""Dense prediction on top of the CARL backbone.

:class:`CARLSegmenter` maps (B, C, H, W) + wavelengths to per-pixel class logits (B, K, H, W);
:class:`CARLEmbedder` maps them to per-pixel features (B, D, H, W). Both share the call
signature ``model(img, wavelengths)`` that the tiled predictor uses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError
from carl_geo.models.carl import CARL, check_inputs


class LinearHead(nn.Module):
    """Upstream's linear probe: a 1x1 convolution on the spatial features (B, D, h, w) -> (B, K, h, w)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, num_classes, kernel_size=1)

    def forward(self, feats: Tensor) -> Tensor:
        return self.conv(feats)


class ProgressiveHead(nn.Module):
    """A light decoder: 1x1 projection, then ``n_up`` x2 upsampling stages of 3x3 conv + BN + GELU,
    then a 1x1 classifier. Sharper boundaries than the linear head at patch size 8 (n_up = 3)."""

    def __init__(self, in_dim: int, num_classes: int, width: int = 64, n_up: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, width, kernel_size=1)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.GELU())
            for _ in range(n_up)
        )
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, feats: Tensor) -> Tensor:
        x = self.proj(feats)
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return self.classifier(x)


class UperNetHead(nn.Module):
    """UperNet (PSP + FPN fusion; ``segmentation_models_pytorch``'s ``UPerNetDecoder``) on a simple
    feature pyramid built from the one CARL feature map, as ViTDet does for plain ViTs.

    The spatial features (B, D, h, w) at the token grid (1/p of the image; 1/8 for p = 8) give four
    levels: x2 up (2x2 transposed conv to D/2 channels; 1/4), x1 (1/8), x1/2 and x1/4 (max
    pooling; 1/16, 1/32), each projected to ``width`` channels by a 1x1 conv. The decoder fuses
    them at the finest level (batch norm, as UperNet), a 1x1 conv classifies: (B, K, 2h, 2w).
    A training batch of one image is run as two copies (the pyramid-pooling branch's batch norm
    needs more than one value per channel).

    Not upstream's ViT-Adapter + UperNet (that needs compiled deformable attention); this one runs
    anywhere PyTorch does.

    Args:
        in_dim: D, channels of the CARL features.
        num_classes: K.
        width: channels of the pyramid levels and of the decoder (upstream's UperNet: 256; small
            values such as 32 keep CPU training fast).
    """

    def __init__(self, in_dim: int, num_classes: int, width: int = 256) -> None:
        super().__init__()
        from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder

        if width < 1:
            raise CarlGeoError(f"width must be >= 1, got {width}")
        self.up = nn.ConvTranspose2d(in_dim, in_dim // 2, kernel_size=2, stride=2)
        self.width = width
        self.lateral = nn.ModuleList(
            nn.Conv2d(c, width, kernel_size=1) for c in (in_dim // 2, in_dim, in_dim, in_dim)
        )
        # UPerNetDecoder reads levels [1/4, 1/8, 1/16, 1/32] after two unused (1, 1/2) entries
        self.decoder = UPerNetDecoder(encoder_channels=[width] * 6, encoder_depth=5, decoder_channels=width)
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def pyramid(self, feats: Tensor) -> list[Tensor]:
        """(B, D, h, w) -> [(B, width, 2h, 2w), (.., h, w), (.., ceil(h/2), ..), (.., ceil(h/4), ..)]."""
        levels = [self.up(feats), feats, F.max_pool2d(feats, 2, ceil_mode=True), F.max_pool2d(feats, 4, ceil_mode=True)]
        return [proj(x) for proj, x in zip(self.lateral, levels)]

    def forward(self, feats: Tensor) -> Tensor:
        single = self.training and feats.shape[0] == 1
        if single:
            feats = feats.expand(2, -1, -1, -1)
        fused = self.decoder([None, None, *self.pyramid(feats)])  # (B, width, 2h, 2w)
        out = self.classifier(fused)
        return out[:1] if single else out


HEADS = {"linear": LinearHead, "progressive": ProgressiveHead, "upernet": UperNetHead}


class CARLSegmenter(nn.Module):
    """CARL backbone + segmentation head.

    Args:
        backbone: a :class:`CARL` model.
        num_classes: K output classes.
        head: ``"linear"`` (1x1 conv, upstream's linear probe), ``"progressive"`` (light upsampling
            decoder) or ``"upernet"`` (:class:`UperNetHead`).
        head_kwargs: extra arguments of the head class (e.g. ``{"width": 64}``).
        max_bands: an image with more bands than this is first reduced to ``max_bands`` broader bands
            by averaging neighbouring bands in wavelength order (equal-count bins, see
            :mod:`carl_geo.models.spectral_binning`). A model trained on binned many-band rasters
            then sees at prediction what it saw in training, and the cost stays bounded. None: all bands.
        pixelwise: classify every pixel from its own spectrum: each pixel is one token (the backbone's
            patch size must be 1) and the spatial encoder sees that token alone, in training and at
            prediction alike. The model then uses no spatial context; polygon training chooses it where
            chip models overfit the few training fields (small polygons, many bands).

    ``forward(img (B, C, H, W), wavelengths (C,) | (B, C) µm, band_mask=None)`` returns logits
    (B, K, H, W), bilinearly upsampled from the (ceil(H/p), ceil(W/p)) grid and cropped to H x W.
    """

    def __init__(self, backbone: CARL, num_classes: int, head: str = "linear",
                 head_kwargs: dict[str, Any] | None = None, max_bands: int | None = None,
                 pixelwise: bool = False) -> None:
        super().__init__()
        if head not in HEADS:
            raise CarlGeoError(f"unknown head {head!r}; choose one of {sorted(HEADS)}")
        if num_classes < 1:
            raise CarlGeoError("num_classes must be >= 1")
        self.backbone = backbone
        self.num_classes = num_classes
        self.head_name = head
        self.head_kwargs = dict(head_kwargs or {})
        self.head = HEADS[head](backbone.embed_dim, num_classes, **self.head_kwargs)
        if max_bands is not None and int(max_bands) < 1:
            raise CarlGeoError(f"max_bands must be >= 1 or None, got {max_bands!r}")
        self.max_bands = int(max_bands) if max_bands is not None else None
        if pixelwise and backbone.patch_size != 1:
            raise CarlGeoError(f"a pixelwise segmenter needs a backbone with patch size 1, got {backbone.patch_size}")
        self.pixelwise = bool(pixelwise)

    def head_config(self) -> dict[str, Any]:
        """Plain dict that rebuilds this head: ``{"type", "num_classes", "kwargs", "max_bands", "pixelwise"}``."""
        return {"type": self.head_name, "num_classes": self.num_classes, "kwargs": dict(self.head_kwargs),
                "max_bands": self.max_bands, "pixelwise": self.pixelwise}

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        if self.max_bands is not None and img.shape[1] > self.max_bands and band_mask is None:
            from carl_geo.models.spectral_binning import bin_spectra

            img, wavelengths = bin_spectra(img, check_inputs(img, wavelengths), self.max_bands)
        if self.pixelwise:
            return self._per_pixel(img, wavelengths, band_mask)
        feats = self.backbone(img, wavelengths, band_mask).spatial
        return upsample_to(self.head(feats), img.shape[-2:], self.backbone.patch_size)

    #: Pixels per backbone call of a pixelwise model (bounds the memory of a large tile). Four 80 x 80 tiles of 200
    #: bands (24 bins), tiny model, one CPU thread: 16,384 pixels per call peaked 1.5 GB above the model, 4,096
    #: 0.56 GB and ran 1.4x faster per pixel.
    PIXEL_CHUNK = 4096

    def _per_pixel(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None) -> Tensor:
        """(B, C, H, W) -> (B, K, H, W), each pixel through the backbone as its own 1 x 1 image."""
        b, c, h, w = img.shape
        px = img.permute(0, 2, 3, 1).reshape(b * h * w, c, 1, 1)
        wl = wavelengths if wavelengths.dim() == 1 else wavelengths.repeat_interleave(h * w, dim=0)
        bm = None if band_mask is None else band_mask.repeat_interleave(h * w, dim=0)
        out = []
        for i in range(0, px.shape[0], self.PIXEL_CHUNK):
            j = i + self.PIXEL_CHUNK
            feats = self.backbone(px[i:j], wl if wl.dim() == 1 else wl[i:j], None if bm is None else bm[i:j]).spatial
            out.append(self.head(feats).reshape(-1, self.num_classes))
        return torch.cat(out).reshape(b, h, w, self.num_classes).permute(0, 3, 1, 2)


class CARLEmbedder(nn.Module):
    """Per-pixel CARL features: ``forward(img, wavelengths) -> (B, D, H, W)`` (bilinear upsampling
    of the spatial features; ``which="spectral"`` returns the connector output instead)."""

    def __init__(self, backbone: CARL, which: str = "spatial") -> None:
        super().__init__()
        if which not in ("spatial", "spectral"):
            raise CarlGeoError("which must be 'spatial' or 'spectral'")
        self.backbone = backbone
        self.which = which

    @property
    def out_channels(self) -> int:
        return self.backbone.embed_dim

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> Tensor:
        out = self.backbone(img, wavelengths, band_mask)
        return upsample_to(getattr(out, self.which), img.shape[-2:], self.backbone.patch_size)


def upsample_to(x: Tensor, size: tuple[int, int], patch_size: int) -> Tensor:
    """Upsample (B, K, h', w') so that each grid cell covers ``patch_size`` pixels (or the head's
    own resolution), then crop to ``size`` (the unpadded H, W)."""
    h, w = int(size[0]), int(size[1])
    ph, pw = -(-h // patch_size) * patch_size, -(-w // patch_size) * patch_size
    if x.shape[-2:] != (ph, pw):
        x = F.interpolate(x, size=(ph, pw), mode="bilinear", align_corners=False)
    return x[..., :h, :w]
