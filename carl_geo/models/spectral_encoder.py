"""CARL's spectral encoder: wavelength-encoded band tokens, learned queries, and blocks that
alternate self-attention among the band tokens with cross-attention from the queries.

Module and parameter names follow the upstream implementation so that its state dict loads
with ``strict=True`` (``queries``, ``queries_pos_enc``, ``blocks.{i}.{norm1,attn.{q,k,v,proj},
ls1.gamma,norm2,mlp.{fc1,fc2},ls2.gamma}``, ``norm``, ``positional_embedding.dims``).

Shapes: N = number of token columns (B * h * w for a batch of images), C = bands,
D = ``embed_dim``, Q = ``n_queries``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from carl_geo.errors import CarlGeoError
from carl_geo.models.config import SpectralEncoderConfig
from carl_geo.models.timm_weights import TIMM, create_pretrained, normalize_source

#: timm DINOv2 weights upstream copies into a spectral encoder of this width (its first ``depth`` blocks).
DINOV2_BY_WIDTH = {384: "vit_small_patch14_dinov2.lvd142m", 768: "vit_base_patch14_dinov2.lvd142m"}

#: Size (bytes) of the MLP hidden activation of one chunk of token columns in CPU inference
#: (:meth:`SpectralEncoder.chunk_columns`): about 1700 band tokens of the published config.
CPU_CHUNK_BYTES = 10 * 2**20


class WavelengthEncoding(nn.Module):
    """Random Fourier encoding of wavelengths (µm), deterministic across runs.

    ``dims`` = 2π·σ·randn(D/2) from a generator seeded 0, each value repeated twice;
    the encoding of w is sin(w·dims) on even channels and cos(w·dims) on odd channels.
    The global torch RNG is left untouched.
    """

    def __init__(self, embed_dim: int, sigma: float) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.sigma = sigma
        self.register_buffer("dims", wavelength_frequencies(embed_dim, sigma), persistent=True)

    def forward(self, wavelengths: Tensor) -> Tensor:
        """(..., C) wavelengths in µm -> (..., C, D) encoding."""
        if self.sigma == 0:
            return wavelengths.new_zeros(*wavelengths.shape, self.embed_dim)
        angles = wavelengths.unsqueeze(-1) * self.dims
        out = torch.empty_like(angles)
        out[..., 0::2] = torch.sin(angles[..., 0::2])
        out[..., 1::2] = torch.cos(angles[..., 1::2])
        return out


def wavelength_frequencies(embed_dim: int, sigma: float) -> Tensor:
    """The upstream's deterministic frequencies (D,) for :class:`WavelengthEncoding`."""
    gen = torch.Generator().manual_seed(0)
    half = 2 * torch.tensor(math.pi) * (torch.randn(embed_dim // 2, generator=gen) * sigma)
    return half.repeat_interleave(2)[:embed_dim].contiguous()


def sincos_1d(embed_dim: int, length: int, theta: float = 10000.0) -> Tensor:
    """Fixed 1-D sin-cos position encoding (length, D): sin on the first D/2 channels,
    cos on the last D/2 (MAE convention), computed in float64 then cast to float32."""
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / theta**omega
    out = torch.arange(length, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([out.sin(), out.cos()], dim=1).float()


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections (self- or cross-attention).

    ``attn_mask``: optional boolean (N, 1, 1, C_k) mask, True where a key may be attended.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise CarlGeoError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        n, length, dim = q.shape
        qh, kh, vh = self._heads(self.q(q)), self._heads(self.k(k)), self._heads(self.v(v))
        if qh.device.type == "cpu" and (qh.dtype in LOW_PRECISION or not torch.is_grad_enabled()):
            out = small_attention(qh, kh, vh, attn_mask)
        else:
            out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


#: Dtypes in which CPU attention over band tokens always runs as :func:`small_attention`; fp32 uses it without
#: autograd (inference): fp32 CPU training keeps the fused kernel, whose training runs the benchmarks measured (the
#: same gradients to 1e-6, but a 6-epoch test run took another path).
LOW_PRECISION = (torch.bfloat16, torch.float16)


def small_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """softmax(q k^T / sqrt(d)) v over (N, heads, L, d) tensors, as two batched matrix products.

    The same function as ``F.scaled_dot_product_attention``, for the short sequences of the spectral encoder
    (L = bands or queries, a few to a few hundred) on a CPU, in any dtype: there PyTorch's fused CPU kernel spends
    its time per (column, head) pair. The two products made the whole published forward faster (paired rounds with
    ``benchmarks/timing.py``, 13 bands, 2 cores, 2026-12-06): in bf16 1.15x (median of 5 rounds, range 0.89-1.36,
    2 x 128 px), in fp32 1.10x at 2 x 128 px (7 rounds, 0.95-1.29) and at 4 x 256 px (3 rounds, 1.08-1.10), the
    outputs within 4e-6 of the fused kernel's. GPUs keep the fused kernel, and so does fp32 training.
    ``attn_mask``: boolean, True where a
    key may be attended."""
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return torch.matmul(scores.softmax(-1), v)


class Mlp(nn.Module):
    """Two-layer GELU MLP (``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class SpectralBlock(nn.Module):
    """Pre-norm transformer block with layer scale.

    Self-attention blocks update the band tokens; cross-attention blocks update the queries
    from the band tokens (one ``norm1`` is applied to queries, keys and values, as upstream).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 layer_scale: float, cross: bool) -> None:
        super().__init__()
        self.cross = cross
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim, layer_scale)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale)

    def forward(self, x: Tensor, context: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """x: (N, L, D) tokens to update; context: (N, C, D) band tokens (cross blocks only)."""
        h = self.norm1(x)
        kv = h if context is None else self.norm1(context)
        x = x + self.ls1(self.attn(h, kv, kv, attn_mask))
        return x + self.ls2(self.mlp(self.norm2(x)))


class SpectralEncoder(nn.Module):
    """Turns the C band tokens of each patch into Q query embeddings.

    Args:
        config: the spectral encoder settings.
        init: ``None``/``"random"`` (random weights), ``"timm"`` (upstream's initialisation: the
            first ``depth`` blocks of timm's DINOv2 of the same width, see :func:`load_dinov2_blocks`)
            or a local timm DINOv2 weights file.
    """

    def __init__(self, config: SpectralEncoderConfig, init: str | None = None) -> None:
        super().__init__()
        c = config
        self.embed_dim = c.embed_dim
        self.n_queries = c.n_queries
        self.queries = nn.Parameter(torch.zeros(1, c.n_queries, c.embed_dim))
        self.queries_pos_enc = nn.Parameter(
            sincos_1d(c.embed_dim, c.n_queries).unsqueeze(0), requires_grad=False
        )
        self.blocks = nn.ModuleList(
            SpectralBlock(c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.layer_scale, cross=i % 2 == 1)
            for i in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.positional_embedding = WavelengthEncoding(c.embed_dim, c.pos_enc_sigma)
        self._init_weights()
        source = normalize_source(init)
        if source is not None:
            load_dinov2_blocks(self, source)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.queries, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, tokens: Tensor, wavelengths: Tensor, band_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Encode band tokens.

        Args:
            tokens: (B*h*w, C, D) band tokens; rows ordered as (b, h, w).
            wavelengths: (B, C) wavelengths in µm; each sample's encoding is repeated for its
                h*w token columns.
            band_mask: optional (B, C) bool, True for real bands. Masked (padded) bands take
                no part in attention, so a padded sample's output equals its unpadded output.

        Returns:
            dict with ``queries`` (B*h*w, Q, D) after the final norm and ``spectral_tokens``
            (B*h*w, C, D).
        """
        n = tokens.shape[0]
        b = wavelengths.shape[0]
        if n % b:
            raise CarlGeoError(f"{n} token columns are not a multiple of the batch size {b}")
        repeats = n // b
        pos = self.positional_embedding(wavelengths)  # (B, C, D), broadcast over each sample's h*w columns
        x = (tokens.view(b, repeats, *tokens.shape[1:]) + pos.unsqueeze(1)).view(tokens.shape)

        attn_mask = None
        if band_mask is not None:
            attn_mask = band_mask.bool()[:, None, None, :]  # (B, 1, 1, C)
            if repeats > 1:
                attn_mask = attn_mask.repeat_interleave(repeats, dim=0)

        queries = (self.queries + self.queries_pos_enc).expand(n, -1, -1)
        step = self.chunk_columns(x)
        if step >= n:
            queries, x = self._blocks(queries, x, attn_mask)
        else:  # columns are independent: same result, a cache-sized working set (see chunk_columns)
            parts = [self._blocks(queries[s:s + step], x[s:s + step],
                                  None if attn_mask is None else attn_mask[s:s + step])
                     for s in range(0, n, step)]
            queries = torch.cat([q for q, _ in parts])
            x = torch.cat([t for _, t in parts])
        return {"queries": self.norm(queries), "spectral_tokens": x}

    def _blocks(self, queries: Tensor, x: Tensor, attn_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Run every block on (n, Q, D) queries and (n, C, D) band tokens of the same n columns."""
        for blk in self.blocks:
            if blk.cross:
                queries = blk(queries, x, attn_mask)
            else:
                x = blk(x, None, attn_mask)
        return queries, x

    def chunk_columns(self, tokens: Tensor) -> int:
        """How many token columns of ``tokens`` (N, C, D) go through the blocks at a time.

        In CPU inference (no autograd, not compiling) the columns are taken in chunks whose widest
        activation (the MLP's hidden layer, C * 4D floats per column) fits :data:`CPU_CHUNK_BYTES`:
        the same numbers, but the working set stays in cache and the allocator can reuse its memory
        instead of mapping fresh pages for every layer (published config, 13 bands, 2 cores: the
        whole forward 1.34-1.36x upstream's speed on the predictor's CPU batch of 4 x 256 px, 1.01-1.14x
        on 2 x 128 px, where both are bound by the matrix products; ``benchmarks/bench_vs_upstream.py``).
        Elsewhere (GPU, training, ``torch.compile`` / ONNX export) all N columns at once."""
        n, c, _ = tokens.shape
        if tokens.device.type != "cpu" or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return n
        hidden = self.blocks[0].mlp.fc1.out_features if len(self.blocks) else self.embed_dim
        per_column = c * hidden * tokens.element_size()
        return max(1, min(n, CPU_CHUNK_BYTES // max(per_column, 1)))


def load_dinov2_blocks(encoder: SpectralEncoder, source: str) -> list[str]:
    """Copy the first ``len(encoder.blocks)`` transformer blocks of timm's DINOv2 of the encoder's
    width (:data:`DINOV2_BY_WIDTH`) into ``encoder``, as upstream's ``initialize_weights``: each
    fused ``attn.qkv`` is split into ``attn.q``/``attn.k``/``attn.v`` (cross-attention blocks get
    the same weights as self-attention ones); norms, projections, MLPs and layer-scale gammas are
    copied as they are. Queries, the final norm and the wavelength encoding keep their own values.

    Args:
        encoder: the spectral encoder to initialise (in place).
        source: ``"timm"`` or a local weights file of that DINOv2 (see
            :mod:`carl_geo.models.timm_weights`).

    Returns:
        the encoder keys that were set.

    Raises:
        ValueError: no DINOv2 of this width, or its weights do not fit (heads, MLP ratio).
        FileNotFoundError: the weights cannot be found or fetched.
    """
    name = DINOV2_BY_WIDTH.get(encoder.embed_dim)
    if name is None:
        raise CarlGeoError(f"no DINOv2 weights for a {encoder.embed_dim}-wide spectral encoder (upstream copies "
                         f"them only for widths {sorted(DINOV2_BY_WIDTH)}); use random initialisation")
    dino = create_pretrained(name, source)
    d = encoder.embed_dim
    state: dict[str, Tensor] = {}
    for key, value in dino.state_dict().items():
        parts = key.split(".")
        if parts[0] != "blocks" or int(parts[1]) >= len(encoder.blocks):
            continue
        if parts[2:4] == ["attn", "qkv"]:
            for i, qkv in enumerate("qkv"):
                state[".".join([*parts[:3], qkv, parts[4]])] = value[i * d:(i + 1) * d]
        else:
            state[key] = value
    own = encoder.state_dict()
    unknown = sorted(k for k in state if k not in own or own[k].shape != state[k].shape)
    if unknown:
        raise CarlGeoError(f"the DINOv2 weights {name} ({'timm' if source == TIMM else source}) do not fit this "
                         f"spectral encoder: {unknown[:3]} (heads or MLP ratio differ from DINOv2's)")
    encoder.load_state_dict(state, strict=False)
    return sorted(state)
