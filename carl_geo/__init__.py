"""carl_geo: CARL (Camera-Agnostic Representation Learning) for remote sensing.

Public API (stable):

* models: :class:`CARL`, :class:`CARLConfig`, :func:`tiny_config`, :func:`published_config`,
  :class:`CARLSegmenter`, :class:`CARLEmbedder`, :func:`load_carl`, :func:`save_carl`,
  :class:`ModelBundle`, :func:`load_bundle`, :func:`save_bundle`, :class:`CheckpointError`;
* sensors: :func:`get_sensor`, :data:`SENSORS` (band wavelengths in µm);
* errors: :mod:`carl_geo.errors` (:class:`~carl_geo.errors.CarlGeoError` and its family);
* prediction: :func:`carl_geo.inference.predict_raster` with :class:`~carl_geo.inference.PredictSettings`.

Where things live (one folder per kind of code, torchgeo's layout; issue #19):

* ``models/``: the CARL backbone, heads, named configs and weight files (torch + timm only);
  ``models/names.py``: every registered choice as a torch-free name list / ``Literal`` type;
* ``datasets/``, ``datamodules/``, ``samplers/``, ``trainers/``: every torch Dataset (GEO-Bench's reader and
  upstream's pre-training corpora too), every LightningDataModule, every batch sampler, every
  LightningModule (the CARL-SSL and GEO-Bench ones too);
* ``ssl/``: the parts of CARL-SSL pre-training (masking, loss, EMA, predictors, the k-NN vote, export);
* ``inference/``: tiled prediction of rasters and DataArrays (``settings.py``: :class:`PredictSettings`
  of every prediction; ``engine.py``: tiles, batches, blending);
* ``polygon_training/``: a plain-torch loop that trains a model from an analyst's polygons
  (``carl-geo train``; formerly ``carl_geo.training``, still importable under that name);
* ``evaluation/``: the GEO-Bench runner, results and command line; ``weights/``: the published checkpoint;
  ``io/``: band metadata, wavelength text, output paths, I/O failures; ``sample_data/``: shipped scenes;
* one module per shared mechanism: ``errors.py`` (the error family), ``validation.py`` (input checks),
  ``transforms.py`` (the normalisation), ``devices.py`` (device choice), ``sensors.py`` (band presets),
  ``cli.py`` / ``cli_args.py`` / ``cli_runtime.py`` (the command line), ``lightning_cli.py`` (the one
  LightningCLI wrapper), ``ssl_cli.py`` (``carl-geo pretrain`` / ``export``).

Imports point one way (issue #29; ``tests/test_layout.py`` checks it), lowest first: the shared modules
(errors, validation, transforms, devices, sensors, io, weights, ...) < datasets < samplers < datamodules <
models < ssl < trainers < polygon_training / inference < evaluation < the command-line modules.

Names load on first use, so ``import carl_geo`` (and the ``carl-geo`` command line) does not
import torch until a model is needed. CARL is registered with torchgeo's model API
(``torchgeo.models.get_model("carl")``) as soon as both carl_geo and ``torchgeo.models`` are
imported, in either order (:mod:`carl_geo._torchgeo_hook`); the model code itself needs only torch
and timm.
"""

from carl_geo._lazy import lazy_exports

__version__ = "0.1.0"

_MODELS = ("CARL", "CARLConfig", "CARLEmbedder", "CARLOutput", "CARLSegmenter", "CheckpointError", "ModelBundle",
           "get_config", "load_bundle", "load_carl", "make_bundle", "published_config", "read_checkpoint",
           "save_bundle", "save_carl", "tiny_config")
_EXPORTS = {**{n: "carl_geo.models" for n in _MODELS}, **{n: "carl_geo.sensors" for n in ("SENSORS", "Sensor",
                                                                                          "get_sensor")}}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)

from carl_geo._torchgeo_hook import install as _install_torchgeo_hook  # noqa: E402

_install_torchgeo_hook()
