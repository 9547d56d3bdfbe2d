"""The CARL-SSL student (backbone + predictors), its masked forward pass and the teacher's targets.

The student is a :class:`~carl_geo.models.carl.CARL` with two extra sub-modules,
``spectral_predictor`` and ``spatial_predictor`` (upstream ``CARLSSLModel`` layout), so that its
state dict is the published ``model.*`` sub-tree and ``CARL.forward`` still works on it.

Shapes: B images of C bands, grid gh x gw = image_size/p per side, N = gh*gw tokens,
K_ctx context tokens, K_pred tokens per target block, D_spec / D_spat widths, Q queries.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from carl_geo.errors import CarlGeoError
from carl_geo.models.carl import CARL
from carl_geo.models.config import CARLConfig
from carl_geo.ssl.masking import SpatialMasks, SpectralMasks, apply_masks
from carl_geo.ssl.predictors import PredictorConfig, SpatialPredictor, SpectralPredictor


class CARLSSLModel(CARL):
    """CARL backbone with the SSL predictors.

    Args:
        config: backbone architecture.
        image_size: side of the square training crops (pixels, a multiple of the patch size); sets
            the spatial predictor's position grid.
        spectral_predictor, spatial_predictor: predictor settings.
        spatial_init, spectral_init: initial encoder weights (see :class:`~carl_geo.models.carl.CARL`).
    """

    def __init__(self, config: CARLConfig, image_size: int, spectral_predictor: PredictorConfig,
                 spatial_predictor: PredictorConfig, spatial_init: str | None = None,
                 spectral_init: str | None = None) -> None:
        super().__init__(config, spatial_init=spatial_init, spectral_init=spectral_init)
        if image_size % config.patch_size:
            raise CarlGeoError(f"image_size {image_size} must be a multiple of the patch size {config.patch_size}")
        self.image_size = image_size
        self.grid_size = image_size // config.patch_size
        self.spectral_predictor = SpectralPredictor(config.spectral.embed_dim, config.spectral.n_queries,
                                                    spectral_predictor)
        self.spatial_predictor = SpatialPredictor(self.embed_dim, self.grid_size, spatial_predictor)

    def backbone_state_dict(self) -> dict[str, Tensor]:
        """The backbone's tensors (no predictors): a plain :class:`CARL` state dict."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("spectral_predictor.",
                                                                                "spatial_predictor."))}


class StudentOutput(NamedTuple):
    """spatial: (npred*B, K_pred, D_spat) predictions; spectral: (npred_s*B, h, D_spec) predictions;
    spectral_rows: (B,) indices into the B*K_ctx context columns whose masked bands were predicted."""

    spatial: Tensor
    spectral: Tensor
    spectral_rows: Tensor


def _ln(x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:])


def encode_context(model: CARL, grid: Tensor, enc: Tensor) -> Tensor:
    """Spatial encoder on the context tokens only.

    ``grid`` (B, gh, gw, D_spat) holds the connector output at context positions (other positions
    are ignored), ``enc`` (B, K_ctx) the context indices. Equivalent to upstream's full-grid pass
    with an attention mask that hides non-context keys (every context token and the prefix tokens
    attend exactly to the prefix + context tokens), at the cost of K_ctx instead of N tokens.

    Returns:
        (B, K_ctx, D_spat) encoded context tokens (prefix tokens dropped).
    """
    enc_net = model.spatial_encoder
    out = enc_net.net._pos_embed(grid)
    x, rope = out if isinstance(out, tuple) else (out, None)
    npt = enc_net.num_prefix_tokens
    x = torch.cat([x[:, :npt], apply_masks(x[:, npt:], [enc])], dim=1)
    kwargs = {}
    if rope is not None:  # (N, R) grid embedding -> per-sample (B, 1, K_ctx, R), broadcast over heads
        kwargs["rope"] = rope[enc].unsqueeze(1)
    for block in enc_net.net.blocks:
        x = block(x, **kwargs)
    return x[:, npt:]


class StudentContext(NamedTuple):
    """The student's encodings of the visible tokens.

    Attributes:
        queries: (B*K_ctx, Q, D_spec) spectral-encoder queries of the context columns.
        spectral: (B, K_ctx, D_spat) connector output (CARL's ``spectral`` features) there.
        spatial: (B, K_ctx, D_spat) spatial-encoder output there (CARL's ``spatial`` features).
        wavelengths: (B*K_ctx, C) µm of every context column.
        masks: the spectral masks of the context columns.
    """

    queries: Tensor
    spectral: Tensor
    spatial: Tensor
    wavelengths: Tensor
    masks: SpectralMasks


def encode_student(model: CARL, img: Tensor, wavelengths: Tensor, enc: Tensor, spectral: SpectralMasks
                   ) -> StudentContext:
    """CARL on the visible part of an image: the context tokens ``enc`` (B, K_ctx) of the grid,
    and in each of their columns the context bands of ``spectral`` (masks for all B*N columns,
    rows in (b, token) order; for padded batches built from the real band counts, so padded bands
    are never context). With every token and band visible this is ``CARL.forward``.

    img: (B, C, H, W) with H, W multiples of the patch size; wavelengths: (B, C) µm.
    """
    b, c = img.shape[:2]
    gh, gw = img.shape[-2] // model.patch_size, img.shape[-1] // model.patch_size
    n = gh * gw
    k_ctx = enc.shape[1]
    tokens = model.embed_bands(img).view(b, n, c, -1)  # (B, N, C, D_spec)
    tokens = apply_masks(tokens, [enc]).flatten(0, 1)  # (B*K_ctx, C, D_spec)
    cols = (enc + torch.arange(b, device=enc.device).unsqueeze(1) * n).flatten()  # rows among the B*N columns
    spec = spectral.select(cols)
    wl_cols = wavelengths.repeat_interleave(k_ctx, dim=0)  # (B*K_ctx, C)
    valid = None if spec.all_valid else spec.enc_valid
    queries = model.spectral_tf(apply_masks(tokens, [spec.enc]), wl_cols.gather(1, spec.enc), valid)["queries"]
    readout = model.linear_connector(_ln(queries.sum(dim=1))).view(b, k_ctx, -1)
    grid = readout.new_zeros(b, n, readout.shape[-1])
    grid = grid.scatter(1, enc.unsqueeze(-1).expand_as(readout), readout).view(b, gh, gw, -1)
    return StudentContext(queries, readout, encode_context(model, grid, enc), wl_cols, spec)


def student_forward(model: CARLSSLModel, img: Tensor, wavelengths: Tensor, spatial: SpatialMasks,
                    spectral: SpectralMasks, generator: torch.Generator | None = None) -> StudentOutput:
    """Masked student pass (upstream ``forward_student``).

    Args:
        img: (B, C, S, S) image, S = ``model.image_size``.
        wavelengths: (B, C) µm.
        spatial: context/target masks on the N-token grid.
        spectral: band masks for the B*N token columns (see :func:`encode_student`).
        generator: picks the B context columns whose masked bands are predicted (upstream draws
            B of all B*K_ctx context columns at random).

    Steps: :func:`encode_student` -> (a) spectral predictor on the queries of B random context
    columns, (b) layer norm of the context features -> spatial predictor. Both predictions are
    layer-normalised (no affine), as the teacher targets.
    """
    b = img.shape[0]
    ctx = encode_student(model, img, wavelengths, spatial.enc, spectral)
    rows = torch.randperm(ctx.queries.shape[0], generator=generator)[:b].to(img.device)
    pred_spec = model.spectral_predictor(ctx.queries[rows], ctx.wavelengths[rows], [p[rows] for p in ctx.masks.pred])
    pred_spat = model.spatial_predictor(_ln(ctx.spatial), spatial.enc, spatial.pred)
    return StudentOutput(spatial=_ln(pred_spat), spectral=_ln(pred_spec), spectral_rows=rows)


@torch.no_grad()
def teacher_features(teacher: CARL, img: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None
                     ) -> tuple[Tensor, Tensor]:
    """Teacher pass on the whole image (upstream ``forward_teacher``), both outputs layer-normalised.

    Returns:
        spatial (B, N, D_spat) and band tokens (B*N, C, D_spec) after the spectral encoder.
    """
    b = img.shape[0]
    gh, gw = img.shape[-2] // teacher.patch_size, img.shape[-1] // teacher.patch_size
    out = teacher.spectral_tf(teacher.embed_bands(img), wavelengths, band_mask)
    spec = teacher.linear_connector(_ln(out["queries"].sum(dim=1))).view(b, gh, gw, -1)
    spatial = teacher.spatial_encoder(spec)
    return _ln(spatial), _ln(out["spectral_tokens"])


@torch.no_grad()
def teacher_targets(teacher: CARL, img: Tensor, wavelengths: Tensor, spatial: SpatialMasks,
                    spectral: SpectralMasks, spectral_rows: Tensor, band_mask: Tensor | None = None
                    ) -> tuple[Tensor, Tensor]:
    """Targets matching :func:`student_forward`'s predictions.

    Returns:
        spatial targets (npred*B, K_pred, D_spat) and spectral targets (npred_s*B, h, D_spec).
    """
    b, c = img.shape[:2]
    spat, band_tokens = teacher_features(teacher, img, wavelengths, band_mask)
    n = spat.shape[1]
    spat_t = apply_masks(spat, spatial.pred)
    band_tokens = apply_masks(band_tokens.view(b, n, -1), [spatial.enc])  # (B, K_ctx, C*D)
    band_tokens = band_tokens.view(-1, c, band_tokens.shape[-1] // c)[spectral_rows]  # (B, C, D)
    cols = (spatial.enc + torch.arange(b, device=spatial.enc.device).unsqueeze(1) * n).flatten()
    pred = [p[cols][spectral_rows] for p in spectral.pred]
    return spat_t, apply_masks(band_tokens, pred)
