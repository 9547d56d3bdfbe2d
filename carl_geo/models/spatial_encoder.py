"""CARL's spatial encoder: a timm EVA02 (or ViT) trunk run on the grid of CARL tokens.

Built with ``timm.create_model(..., pretrained=False, dynamic_img_size=True)`` (carl_geo never
downloads timm weights) and truncated to the configured depth. As upstream, timm's own patch
embedding is bypassed: the (B, h, w, D) token grid enters ``_pos_embed`` (prefix token +
absolute position embedding resampled to the grid, plus RoPE for EVA), then the blocks; the
prefix tokens are dropped and no final norm is applied. The stored ``net.patch_embed.*`` and
``net.fc_norm.*`` weights exist only for state-dict compatibility.
"""

from __future__ import annotations

import timm
from torch import Tensor, nn

from carl_geo.models.config import SpatialEncoderConfig


def _timm_name(model_name: str) -> str:
    """``timm/eva02_base_patch14_224.mim_in22k`` -> ``eva02_base_patch14_224``."""
    name = model_name.split("/", 1)[1] if model_name.startswith("timm/") else model_name
    return name.split(".", 1)[0]


class SpatialEncoder(nn.Module):
    """timm trunk applied to a token grid.

    Attributes:
        net: the timm model (blocks truncated to ``config.depth``).
        embed_dim: output width D_spat.
        num_prefix_tokens: prefix (class/register) tokens the trunk prepends.
    """

    def __init__(self, config: SpatialEncoderConfig) -> None:
        super().__init__()
        kwargs = dict(config.model_kwargs)
        kwargs["dynamic_img_size"] = True
        net = timm.create_model(_timm_name(config.model_name), pretrained=False, **kwargs)
        if config.depth is not None:
            net.blocks = net.blocks[: config.depth]
        self.net = net
        self.embed_dim: int = net.embed_dim
        self.num_prefix_tokens: int = net.num_prefix_tokens

    def forward(self, grid: Tensor) -> Tensor:
        """(B, h, w, D) token grid -> (B, h*w, D) encoded tokens (prefix tokens removed)."""
        out = self.net._pos_embed(grid)
        x, rope = out if isinstance(out, tuple) else (out, None)
        kwargs = {"rope": rope} if rope is not None else {}
        for block in self.net.blocks:
            x = block(x, **kwargs)
        return x[:, self.num_prefix_tokens :, :]
