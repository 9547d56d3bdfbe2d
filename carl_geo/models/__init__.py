"""CARL models: the backbone, heads, configs and weight files (needs only torch and timm).

Names load on first use, so ``carl_geo.models.names`` (the torch-free lists of configs and heads
that the command line offers) can be imported without torch.
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    **{n: "carl_geo.models.bundle" for n in ("ModelBundle", "load_bundle", "make_bundle", "save_bundle")},
    **{n: "carl_geo.models.carl" for n in ("CARL", "CARLOutput")},
    **{n: "carl_geo.models.checkpoint" for n in ("CheckpointError", "load_carl", "read_checkpoint", "save_carl")},
    **{n: "carl_geo.models.config" for n in ("CARLConfig", "CONFIGS", "get_config", "published_config",
                                              "tiny_config")},
    **{n: "carl_geo.models.segmentation" for n in ("CARLEmbedder", "CARLSegmenter", "HEADS")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
