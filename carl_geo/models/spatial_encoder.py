"""CARL's spatial encoder: a timm EVA02 (or ViT) trunk run on the grid of CARL tokens.

Built with ``timm.create_model(..., dynamic_img_size=True)`` and truncated to the configured depth.
Randomly initialised by default; ``init="timm"`` or a local weights file gives upstream's
initialisation, timm's pretrained weights (EVA-02-B MIM in22k for the published config), see
:mod:`carl_geo.models.timm_weights`. As upstream, timm's own patch
embedding is bypassed: the (B, h, w, D) token grid enters ``_pos_embed`` (prefix token +
absolute position embedding resampled to the grid, plus RoPE for EVA), then the blocks; the
prefix tokens are dropped and no final norm is applied. The stored ``net.patch_embed.*`` and
``net.fc_norm.*`` weights exist only for state-dict compatibility.
"""

from __future__ import annotations

import timm
from torch import Tensor, nn

from carl_geo.models.config import SpatialEncoderConfig
from carl_geo.models.timm_weights import create_pretrained, normalize_source


def _timm_name(model_name: str) -> str:
    """``timm/eva02_base_patch14_224.mim_in22k`` -> ``eva02_base_patch14_224``."""
    name = model_name.split("/", 1)[1] if model_name.startswith("timm/") else model_name
    return name.split(".", 1)[0]


class SpatialEncoder(nn.Module):
    """timm trunk applied to a token grid.

    Args:
        config: architecture.
        init: ``None``/``"random"`` (random weights), ``"timm"`` (timm's pretrained weights of
            ``config.model_name``, as upstream) or a local timm weights file.

    Attributes:
        net: the timm model (blocks truncated to ``config.depth``).
        embed_dim: output width D_spat.
        num_prefix_tokens: prefix (class/register) tokens the trunk prepends.
    """

    def __init__(self, config: SpatialEncoderConfig, init: str | None = None) -> None:
        super().__init__()
        kwargs = dict(config.model_kwargs)
        kwargs["dynamic_img_size"] = True
        source = normalize_source(init)
        if source is None:
            net = timm.create_model(_timm_name(config.model_name), pretrained=False, **kwargs)
        else:
            net = create_pretrained(config.model_name, source, **kwargs)
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
