"""carl_geo: CARL (Camera-Agnostic Representation Learning) for remote sensing.

Public API (stable):

* models: :class:`CARL`, :class:`CARLConfig`, :func:`tiny_config`, :func:`published_config`,
  :class:`CARLSegmenter`, :class:`CARLEmbedder`, :func:`load_carl`, :func:`save_carl`,
  :class:`ModelBundle`, :func:`load_bundle`, :func:`save_bundle`, :class:`CheckpointError`;
* sensors: :func:`get_sensor`, :data:`SENSORS` (band wavelengths in µm).

Importing carl_geo registers CARL with torchgeo's model API (``torchgeo.models.get_model``)
when torchgeo is installed; the model code itself needs only torch and timm.
"""

from carl_geo.models import (
    CARL,
    CARLConfig,
    CARLEmbedder,
    CARLOutput,
    CARLSegmenter,
    CheckpointError,
    ModelBundle,
    get_config,
    load_bundle,
    load_carl,
    make_bundle,
    published_config,
    read_checkpoint,
    save_bundle,
    save_carl,
    tiny_config,
)
from carl_geo.sensors import SENSORS, Sensor, get_sensor

__version__ = "0.1.0"

__all__ = [
    "CARL", "CARLConfig", "CARLEmbedder", "CARLOutput", "CARLSegmenter", "CheckpointError", "ModelBundle",
    "SENSORS", "Sensor", "get_config", "get_sensor", "load_bundle", "load_carl", "make_bundle",
    "published_config", "read_checkpoint", "save_bundle", "save_carl", "tiny_config",
]

from carl_geo.models.registry import register_with_torchgeo as _register  # noqa: E402

_register()
