"""CARL-SSL predictors (student only): they predict the teacher's features of masked tokens.

Parameter names and shapes equal upstream's ``SpectralPredictor`` / ``SpatialPredictor`` so
that the published checkpoint's ``model.spectral_predictor.*`` / ``model.spatial_predictor.*``
load with ``strict=True``. Blocks are pre-norm transformer blocks without layer scale,
``nn.LayerNorm`` with eps 1e-5, q/k/v/proj attention and a GELU MLP (``fc1``, ``fc2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError
from carl_geo.models.spectral_encoder import Attention, Mlp, WavelengthEncoding
from carl_geo.ssl.masking import apply_masks


@dataclass
class PredictorConfig:
    """Upstream ``spec_predictor_kwargs`` / ``spat_predictor_kwargs``.

    Attributes:
        predictor_embed_dim: width of the predictor blocks.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``predictor_embed_dim``.
        pos_enc_sigma: wavelength-encoding scale (spectral predictor only).
    """

    predictor_embed_dim: int = 384
    depth: int = 3
    num_heads: int = 6
    mlp_ratio: float = 4.0
    pos_enc_sigma: float = 3.0


class PredictorBlock(nn.Module):
    """Pre-norm block. Self-attention: ``x + attn(norm1(x))``; cross-attention: the queries attend
    to ``context`` with one ``norm1`` on queries, keys and values (as upstream)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        kv = h if context is None else self.norm1(context)
        x = x + self.attn(h, kv, kv)
        return x + self.mlp(self.norm2(x))


def _init_linear_and_norm(module: nn.Module, std: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SpectralPredictor(nn.Module):
    """Predicts the teacher's band tokens of masked bands from the student's spectral queries.

    Args:
        embed_dim: D_spec of the spectral encoder.
        n_queries: Q of the spectral encoder.
        config: predictor settings.
    """

    def __init__(self, embed_dim: int, n_queries: int, config: PredictorConfig) -> None:
        super().__init__()
        d = config.predictor_embed_dim
        # registration order = upstream state-dict order
        self.predictor_embed = nn.Linear(embed_dim, d) if embed_dim != d else nn.Identity()
        self.positional_embedding = WavelengthEncoding(d, config.pos_enc_sigma)
        self.queries_pos_enc = nn.Parameter(torch.zeros(1, n_queries, d))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.predictor_blocks = nn.ModuleList(
            PredictorBlock(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.predictor_norm = nn.LayerNorm(d)
        self.predictor_proj = nn.Linear(d, embed_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.queries_pos_enc, std=0.02)
        _init_linear_and_norm(self, 0.02)

    def forward(self, queries: Tensor, wavelengths: Tensor, pred_masks: Sequence[Tensor]) -> Tensor:
        """queries (R, Q, D_spec) of R token columns, their wavelengths (R, C) µm, and npred masks
        (R, h) of masked band indices -> predictions (npred*R, h, D_spec), mask-major."""
        x = self.predictor_embed(queries) + self.queries_pos_enc
        pos = apply_masks(self.positional_embedding(wavelengths), pred_masks)  # (npred*R, h, d)
        pred = self.mask_token + pos
        x = x.repeat(len(pred_masks), 1, 1)
        for blk in self.predictor_blocks:
            pred = blk(pred, torch.cat([x, pred], dim=1))
        return self.predictor_proj(self.predictor_norm(pred))


def sincos_2d(embed_dim: int, grid_size: int) -> Tensor:
    """Upstream's fixed 2-D sin-cos embedding (grid_size**2, D), rows in (row, col) order: the
    first D/2 channels encode the column, the last D/2 the row (MAE's ``get_2d_sincos_pos_embed``)."""
    if embed_dim % 4:
        raise CarlGeoError(f"predictor_embed_dim must be a multiple of 4, got {embed_dim}")
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid_size, dtype=torch.float64),
                                torch.arange(grid_size, dtype=torch.float64), indexing="ij")

    def enc(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([enc(cols), enc(rows)], dim=1).float()


class SpatialPredictor(nn.Module):
    """Predicts the teacher's spatial features of target blocks from the student's context tokens.

    Args:
        embed_dim: D_spat of the spatial encoder.
        grid_size: tokens per side of the (square) training grid, image_size // patch_size.
        config: predictor settings.
    """

    def __init__(self, embed_dim: int, grid_size: int, config: PredictorConfig) -> None:
        super().__init__()
        d = config.predictor_embed_dim
        self.grid_size = grid_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.predictor_pos_embed = nn.Parameter(sincos_2d(d, grid_size).unsqueeze(0), requires_grad=False)
        self.predictor_embed = nn.Linear(embed_dim, d)
        self.predictor_blocks = nn.ModuleList(
            PredictorBlock(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.predictor_norm = nn.LayerNorm(d)
        self.predictor_proj = nn.Linear(d, embed_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        _init_linear_and_norm(self, 0.02)
        with torch.no_grad():  # upstream: rescale residual projections by depth
            for layer_id, blk in enumerate(self.predictor_blocks, start=1):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))

    def forward(self, context: Tensor, enc_mask: Tensor, pred_masks: Sequence[Tensor]) -> Tensor:
        """context (B, K_ctx, D_spat) at grid indices ``enc_mask`` (B, K_ctx), npred target masks
        (B, K_pred) -> predictions (npred*B, K_pred, D_spat), mask-major."""
        b, n_ctx = context.shape[:2]
        pos = self.predictor_pos_embed.expand(b, -1, -1)
        x = self.predictor_embed(context) + apply_masks(pos, [enc_mask])
        pred = self.mask_token + apply_masks(pos, pred_masks)
        x = torch.cat([x.repeat(len(pred_masks), 1, 1), pred], dim=1)
        for blk in self.predictor_blocks:
            x = blk(x)
        return self.predictor_proj(self.predictor_norm(x[:, n_ctx:]))
