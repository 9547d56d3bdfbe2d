"""The CARL backbone (Camera-Agnostic Representation Learning, ICLR 2026).

Pipeline (shapes for a batch of B images with C bands, patch size p, h = ceil(H/p), w = ceil(W/p)):

1. per-band patch embedding: a shared Conv2d(1 -> D_spec, kernel = stride = p) on every band
   -> band tokens (B*h*w, C, D_spec);
2. spectral encoder: wavelength encoding added, Q learned queries cross-attend to the band
   tokens (alternating with self-attention among bands) -> (B*h*w, Q, D_spec);
3. sum over queries, ``layer_norm`` without affine weights, ``linear_connector``
   -> spectral features (B, h, w, D_spat);
4. spatial encoder (timm EVA02 trunk) -> spatial features (B, D_spat, h, w).

Module names equal the upstream ``CARLModel`` (``embedder``, ``spectral_tf``,
``linear_connector``, ``spatial_encoder.net``) so upstream state dicts load with ``strict=True``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from carl_geo.errors import InputError, WavelengthError
from carl_geo.models.config import CARLConfig
from carl_geo.models.spatial_encoder import SpatialEncoder
from carl_geo.models.spectral_encoder import SpectralEncoder
from carl_geo.validation import (  # noqa: F401 (MAX_WAVELENGTH_UM: public name kept here)
    MAX_WAVELENGTH_UM,
    PAD_WAVELENGTH_UM,
    as_wavelength_tensor,
    check_image,
    check_wavelength_tensor,
)



class CARLOutput(NamedTuple):
    """Output of :class:`CARL` (a tuple, like upstream's ``(spatial, spectral)``).

    Attributes:
        spatial: (B, D_spat, h, w) features after the spatial encoder.
        spectral: (B, D_spat, h, w) connector output (spectral features before the spatial encoder).
    """

    spatial: Tensor
    spectral: Tensor


def check_inputs(img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None,
                 weight_dtype: torch.dtype | None = None) -> Tensor:
    """Validate ``img`` (B, C, H, W) and ``wavelengths`` (C,) or (B, C) in µm
    (:mod:`carl_geo.validation`, the checks every entry point shares).

    Returns:
        wavelengths as a (B, C) tensor on ``img``'s device and dtype.

    Raises:
        InputError: ``img`` not a (B, C, H, W) float tensor with every axis >= 1, or not in
            ``weight_dtype`` outside autocast.
        WavelengthError: None / text / non-finite / non-positive / duplicated wavelengths, values
            that look like nanometres (> 100), wrong shape or count.
    """
    check_image(img, weight_dtype)
    b, c = img.shape[:2]
    wl = as_wavelength_tensor(wavelengths, img.device)
    if wl.ndim == 1:
        wl = wl.unsqueeze(0).expand(b, -1)
    if wl.ndim != 2 or wl.shape[0] != b:
        raise WavelengthError(f"wavelengths must be (C,) or (B, C) with B={b}, got shape {tuple(wl.shape)}")
    if wl.shape[1] != c:
        raise WavelengthError(
            f"image has {c} bands but {wl.shape[1]} wavelengths were given; pass one wavelength (µm) per band"
        )
    if band_mask is not None and tuple(band_mask.shape) != (b, c):
        raise InputError(f"band_mask must be (B, C) = ({b}, {c}), got {tuple(band_mask.shape)}")
    if not torch.compiler.is_compiling():
        check_wavelength_tensor(wl, band_mask)
    return wl.to(img.dtype if img.is_floating_point() else torch.float32)


def pad_bands(img: Tensor, wavelengths: Tensor, band_mask: Tensor | None, multiple: int
              ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Pad the band axis of (B, C, H, W) / (B, C) inputs to a multiple of ``multiple`` with masked bands.

    Returns the padded image, wavelengths and band mask (None when no padding was needed and none
    was given). Used to bucket band counts so that ``torch.compile`` sees few distinct shapes.
    """
    b, c = img.shape[:2]
    extra = (-c) % multiple
    if not extra:
        return img, wavelengths, band_mask
    img = F.pad(img, (0, 0, 0, 0, 0, extra))
    wavelengths = F.pad(wavelengths, (0, extra), value=PAD_WAVELENGTH_UM)
    if band_mask is None:
        band_mask = torch.ones(b, c, dtype=torch.bool, device=img.device)
    band_mask = F.pad(band_mask.bool(), (0, extra), value=False)
    return img, wavelengths, band_mask


class CARL(nn.Module):
    """CARL backbone: any number of bands with their wavelengths in, features out.

    Args:
        config: architecture (see :func:`carl_geo.models.config.published_config`,
            :func:`~carl_geo.models.config.tiny_config`).
        spatial_init, spectral_init: initial weights of the two encoders: ``None``/``"random"``
            (default), ``"timm"`` (upstream's: timm's pretrained EVA-02 trunk, DINOv2 blocks in the
            spectral encoder) or a local timm weights file; see :mod:`carl_geo.models.timm_weights`.
            Not stored with the model: a saved model keeps its trained weights.

    H and W need not be multiples of the patch size p: the image is padded at the bottom/right
    by edge replication to the next multiple of p, so the output grid is ceil(H/p) x ceil(W/p).
    (Upstream's strided convolution drops the trailing pixels instead; on inputs whose sides are
    multiples of p both agree exactly.)
    """

    #: If > 0, the band axis is padded (with masked bands) to a multiple of this value, so that a
    #: compiled model meets a handful of band counts instead of one graph per C. Off (0) by default.
    band_bucket: int = 0

    def __init__(self, config: CARLConfig | None = None, spatial_init: str | None = None,
                 spectral_init: str | None = None) -> None:
        super().__init__()
        self.config = config = config or CARLConfig()
        self.patch_size = config.patch_size
        self.spectral_tf = SpectralEncoder(config.spectral, init=spectral_init)
        self.embedder = nn.Conv2d(1, config.spectral.embed_dim, kernel_size=config.patch_size,
                                  stride=config.patch_size)
        self.spatial_encoder = SpatialEncoder(config.spatial, init=spatial_init)
        self.linear_connector = nn.Linear(config.spectral.embed_dim, self.spatial_encoder.embed_dim)

    @property
    def embed_dim(self) -> int:
        """Width D_spat of the output features."""
        return self.spatial_encoder.embed_dim

    def pad_to_patch(self, img: Tensor) -> Tensor:
        """Pad (B, C, H, W) at the bottom/right by edge replication to multiples of the patch size."""
        p = self.patch_size
        ph, pw = (-img.shape[-2]) % p, (-img.shape[-1]) % p
        if ph or pw:
            img = F.pad(img, (0, pw, 0, ph), mode="replicate")
        return img

    def embed_bands(self, img: Tensor) -> Tensor:
        """(B, C, H, W) -> band tokens (B*h*w, C, D_spec) (H, W multiples of p).

        Equivalent to upstream's Conv2d(1 -> D, kernel = stride = p) on every band, computed as one
        matrix product on the unfolded p x p patches: the patches are reordered to the token layout
        (B, h, w, C, p*p) before the product, so the D-wide output needs no transpose afterwards.
        """
        b, c, height, width = img.shape
        p = self.patch_size
        h, w = height // p, width // p
        patches = img.view(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b * h * w, c, p * p)
        weight = self.embedder.weight.view(self.embedder.out_channels, p * p)
        return torch.nn.functional.linear(patches, weight, self.embedder.bias)

    def forward(self, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> CARLOutput:
        """Encode an image.

        Args:
            img: (B, C, H, W) normalised image, any C >= 1, any H, W (padded internally to
                multiples of the patch size).
            wavelengths: (C,) or (B, C) band centre wavelengths in micrometres.
            band_mask: optional (B, C) bool, True for real bands, False for padding bands
                (see :func:`carl_geo.data.collate.pad_bands` style batching).

        Returns:
            :class:`CARLOutput` with ``spatial`` and ``spectral`` of shape (B, D_spat, h, w).
        """
        wl = check_inputs(img, wavelengths, band_mask, self.embedder.weight.dtype)
        if self.band_bucket > 0:
            img, wl, band_mask = pad_bands(img, wl, band_mask, self.band_bucket)
            if band_mask is None:  # same graph inputs whether or not this C needed padding
                band_mask = torch.ones(img.shape[:2], dtype=torch.bool, device=img.device)
        return self._encode(self.pad_to_patch(img), wl, band_mask)

    def compile_encoder(self, **compile_kwargs) -> "CARL":
        """``torch.compile`` the tensor work of the forward (:meth:`encode`), leaving input checks,
        band bucketing and patch padding in eager mode, so that with :attr:`band_bucket` set all band
        counts of a bucket share one graph. Returns self."""
        self._encode = torch.compile(self.encode, **compile_kwargs)
        return self

    def _encode(self, img: Tensor, wl: Tensor, band_mask: Tensor | None) -> CARLOutput:
        return self.encode(img, wl, band_mask)

    def encode(self, img: Tensor, wl: Tensor, band_mask: Tensor | None = None) -> CARLOutput:
        """The network proper, on checked inputs: ``img`` (B, C, H, W) with H, W multiples of the
        patch size, ``wl`` (B, C) µm, optional ``band_mask`` (B, C)."""
        b = img.shape[0]
        h, w = img.shape[-2] // self.patch_size, img.shape[-1] // self.patch_size

        queries = self.spectral_tf(self.embed_bands(img), wl, band_mask)["queries"]
        spec = queries.sum(dim=1)
        spec = F.layer_norm(spec, spec.shape[-1:])
        spec = self.linear_connector(spec).view(b, h, w, -1)  # (B, h, w, D_spat)

        spatial = self.spatial_encoder(spec)  # (B, h*w, D_spat)
        spatial = spatial.transpose(1, 2).reshape(b, -1, h, w)
        return CARLOutput(spatial=spatial, spectral=spec.permute(0, 3, 1, 2))
