"""Configuration of a CARL backbone, convertible to and from the upstream ``model_kwargs``.

The upstream project (github IMSY-DKFZ/CARL) describes a model with a nested dict
(``configs/config_ssl.yaml``: ``patch_size``, ``spec_encoder_kwargs``, ``spat_encoder_kwargs``).
:class:`CARLConfig` holds the same facts as a typed dataclass; :meth:`CARLConfig.from_upstream`
and :meth:`CARLConfig.to_upstream` convert between the two so that every upstream config builds
an identical carl_geo model.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from carl_geo.errors import CarlGeoError


@dataclass
class SpectralEncoderConfig:
    """Spectral encoder: attention over the band tokens of one patch.

    Attributes:
        embed_dim: width D_spec of band tokens and queries.
        depth: number of blocks; even indices are self-attention among band tokens,
            odd indices cross-attention from the queries to the band tokens.
        num_heads: attention heads.
        n_queries: number of learned spectral queries.
        pos_enc_sigma: scale of the random Fourier wavelength encoding (wavelengths in µm).
        mlp_ratio: hidden width of the MLPs relative to ``embed_dim``.
        qkv_bias: bias in the q/k/v projections.
        layer_scale: initial value of the layer-scale gammas.
    """

    embed_dim: int = 384
    depth: int = 8
    num_heads: int = 6
    n_queries: int = 8
    pos_enc_sigma: float = 3.0
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_scale: float = 1e-5


@dataclass
class SpatialEncoderConfig:
    """Spatial encoder: a timm EVA02 / ViT trunk applied to the grid of patch tokens.

    Attributes:
        model_name: timm architecture name (a ``timm/`` prefix and a ``.tag`` are accepted; the
            tag only selects the weights of a pretrained initialisation, see
            :mod:`carl_geo.models.timm_weights`).
        depth: number of transformer blocks kept (the first ``depth``); ``None`` keeps all.
        model_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. ``embed_dim``,
            ``num_heads`` for narrowed test models, drop rates).
    """

    model_name: str = "eva02_base_patch14_224"
    depth: int | None = 8
    model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class CARLConfig:
    """Full CARL backbone configuration.

    Attributes:
        patch_size: side p of the square per-band patch embedding (pixels).
        spectral: spectral encoder settings.
        spatial: spatial encoder settings.
    """

    patch_size: int = 8
    spectral: SpectralEncoderConfig = field(default_factory=SpectralEncoderConfig)
    spatial: SpatialEncoderConfig = field(default_factory=SpatialEncoderConfig)

    @classmethod
    def from_upstream(cls, model_kwargs: dict[str, Any]) -> "CARLConfig":
        """Build from an upstream ``model_kwargs`` dict (keys ``patch_size``,
        ``spec_encoder_kwargs``, ``spat_encoder_kwargs``; other keys are ignored)."""
        spec = dict(model_kwargs.get("spec_encoder_kwargs", {}))
        spat = copy.deepcopy(dict(model_kwargs.get("spat_encoder_kwargs", {})))
        known_spec = set(SpectralEncoderConfig.__dataclass_fields__)
        unknown = set(spec) - known_spec
        if unknown:
            raise CarlGeoError(f"unsupported spec_encoder_kwargs: {sorted(unknown)}")
        return cls(
            patch_size=int(model_kwargs.get("patch_size", 8)),
            spectral=SpectralEncoderConfig(**spec),
            spatial=SpatialEncoderConfig(
                model_name=spat.get("model_name", SpatialEncoderConfig.model_name),
                depth=spat.get("depth"),
                model_kwargs=dict(spat.get("model_kwargs") or {}),
            ),
        )

    def to_upstream(self) -> dict[str, Any]:
        """The upstream ``model_kwargs`` layout of this config."""
        return {
            "patch_size": self.patch_size,
            "spec_encoder_kwargs": asdict(self.spectral),
            "spat_encoder_kwargs": {
                "model_name": self.spatial.model_name,
                "depth": self.spatial.depth,
                "model_kwargs": copy.deepcopy(self.spatial.model_kwargs),
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (safe to store in a ``weights_only`` checkpoint or JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CARLConfig":
        """Inverse of :meth:`to_dict`."""
        return cls(
            patch_size=int(d["patch_size"]),
            spectral=SpectralEncoderConfig(**d["spectral"]),
            spatial=SpatialEncoderConfig(**d["spatial"]),
        )


def published_config() -> CARLConfig:
    """The published CARL-SSL backbone: spectral 384 wide, depth 8, 6 heads, 8 queries,
    patch 8; spatial EVA02-base (768 wide, 12 heads) truncated to 8 blocks. ~72 M parameters."""
    return CARLConfig()


def tiny_config() -> CARLConfig:
    """A small CARL for tests and CPU demos: spectral 64 wide, depth 4, 4 heads, 4 queries,
    patch 8; spatial EVA02 narrowed to 128 wide, 2 heads, 2 blocks (~0.7 M parameters).
    Same architecture family as the upstream parity fixture ``fixtures_tiny.pt``.

    Its layer-scale gammas start at 1.0 (upstream starts at 1e-5 because it initialises the
    spectral blocks from DINOv2): a tiny model is trained from scratch, and with 1e-5 its
    randomly initialised spectral blocks would barely react to the input."""
    return CARLConfig(
        patch_size=8,
        spectral=SpectralEncoderConfig(embed_dim=64, depth=4, num_heads=4, n_queries=4, layer_scale=1.0),
        spatial=SpatialEncoderConfig(
            model_name="eva02_base_patch14_224",
            depth=2,
            model_kwargs={"embed_dim": 128, "num_heads": 2},
        ),
    )


#: Spatial-encoder settings of a backbone trained from scratch on small chips (polygon training). The
#: EVA02 trunk's absolute position embedding and its RoPE are both rescaled to the token grid of each
#: input, so a model trained on small chips would see different positional codes on the predictor's
#: larger tiles; without them the prediction does not depend on the tile size.
SCRATCH_SPATIAL_KWARGS: dict[str, Any] = {"use_abs_pos_emb": False, "use_rot_pos_emb": False}


def scratch_variant(config: CARLConfig, patch_size: int | None = None) -> CARLConfig:
    """``config`` as polygon training builds it from scratch: no position embeddings
    (:data:`SCRATCH_SPATIAL_KWARGS`) and, when given, another patch size (pixels). Returns a copy."""
    cfg = copy.deepcopy(config)
    cfg.spatial.model_kwargs.update(SCRATCH_SPATIAL_KWARGS)
    if patch_size is not None:
        cfg.patch_size = int(patch_size)
    return cfg


def tiny_polygons_config() -> CARLConfig:
    """The tiny CARL as polygon training builds it (:func:`scratch_variant` of :func:`tiny_config`,
    patch 4; the training recipe may choose another patch size)."""
    return scratch_variant(tiny_config(), patch_size=4)


#: Named configurations; the names are also in :data:`carl_geo.models.names.CONFIG_NAMES` (torch-free).
CONFIGS = {"published": published_config, "tiny": tiny_config, "tiny_polygons": tiny_polygons_config}


def get_config(name: str) -> CARLConfig:
    """A named config (:data:`CONFIGS`): ``"published"``, ``"tiny"`` or ``"tiny_polygons"``."""
    try:
        return CONFIGS[name]()
    except KeyError:
        raise CarlGeoError(f"unknown CARL config {name!r}; choose one of {sorted(CONFIGS)}") from None
