"""CARL models: the backbone, heads, configs and weight files (needs only torch and timm)."""

from carl_geo.models.bundle import ModelBundle, load_bundle, make_bundle, save_bundle
from carl_geo.models.carl import CARL, CARLOutput
from carl_geo.models.checkpoint import CheckpointError, load_carl, read_checkpoint, save_carl
from carl_geo.models.config import CARLConfig, get_config, published_config, tiny_config
from carl_geo.models.segmentation import CARLEmbedder, CARLSegmenter

__all__ = [
    "CARL", "CARLOutput", "CARLConfig", "CARLEmbedder", "CARLSegmenter", "CheckpointError", "ModelBundle",
    "get_config", "load_bundle", "load_carl", "make_bundle", "published_config", "read_checkpoint",
    "save_bundle", "save_carl", "tiny_config",
]
