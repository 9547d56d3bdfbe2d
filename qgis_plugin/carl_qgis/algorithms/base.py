"""What the CARL Processing algorithms share: dependency gate, common parameters, input
checks, the child-process runner for the heavy work and error translation.

QGIS's own process imports only carl_geo's torch-free modules (choice names, settings, wavelength text);
training, prediction, feature extraction, class polygons and the weights download run in a child process of
the plugin's environment (:mod:`carl_qgis.child`), so torch and the GEOS / PROJ / GDAL copies inside the
shapely, pyproj and rasterio wheels never meet QGIS's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProviderRegistry,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from carl_qgis import deps
from carl_qgis.compat import FLAG_CAN_CANCEL, NUMBER_INTEGER, PARAM_ADVANCED

AUTO = "auto"


def _library_module(name: str) -> Any:
    """A torch-free carl_geo module (settings, choice names), or None while carl_geo is not installed."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - not installed yet, or broken: the dependency message says what to do
        return None


def _library_values() -> tuple[Any, Any]:
    """carl_geo's prediction defaults (``PredictSettings()``) and the settings module, read once when
    the plugin loads; None, None before "Install CARL dependencies" has run."""
    settings = _library_module("carl_geo.inference.settings")
    return (settings.PredictSettings() if settings is not None else None), settings


_DEFAULTS, _SETTINGS = _library_values()
#: Devices offered (carl_geo.inference.settings.DEVICES without Apple's mps, which QGIS builds lack).
DEVICES = tuple(d for d in (_SETTINGS.DEVICES if _SETTINGS else ("auto", "cpu", "cuda")) if d != "mps")
#: Prediction precisions offered (auto: bf16 on a CPU with AMX, else fp32; int8: CPU, needs onnxruntime; bf16 / fp16:
#: autocast). "auto" is last, so that the indexes of the others (saved in users' models) stay what they were.
PRECISIONS = tuple(_SETTINGS.PRECISIONS) if _SETTINGS else ("fp32", "int8", "bf16", "fp16", "auto")
#: The library's defaults (``carl_geo.inference.settings.PredictSettings``); the literals only show
#: before carl_geo is installed, when no algorithm can run anyway.
#: Tile size 0 / overlap -1 in the dialog: from the model's patch size (PredictSettings.tiling, 256 / 16 px
#: for CARL's patch 8), the library's default (its None).
DEFAULT_TILE_SIZE = (_DEFAULTS.tile_size or 0) if _DEFAULTS else 0
DEFAULT_OVERLAP = (-1 if _DEFAULTS.overlap is None else _DEFAULTS.overlap) if _DEFAULTS else -1
DEFAULT_BATCH_SIZE = _DEFAULTS.batch_size if _DEFAULTS and isinstance(_DEFAULTS.batch_size, int) else 4
DEFAULT_PRECISION = _DEFAULTS.precision if _DEFAULTS else "auto"


def config_names() -> list[str]:
    """Backbone sizes offered (``carl_geo.models.names.CONFIG_NAMES``)."""
    names = _library_module("carl_geo.models.names")
    return list(names.CONFIG_NAMES) if names is not None else ["tiny", "published"]


def training_modes() -> list[str]:
    """Polygon-training modes offered (``carl_geo.models.names.TRAINING_MODE_NAMES``)."""
    names = _library_module("carl_geo.models.names")
    return list(getattr(names, "TRAINING_MODE_NAMES", ())) or ["auto", "chips", "pixels"]


def kept_model_choices() -> list[str]:
    """What polygon training may keep (``carl_geo.models.names.SELECT_NAMES``: auto or a candidate's name)."""
    names = _library_module("carl_geo.models.names")
    return list(getattr(names, "SELECT_NAMES", ())) or ["auto"]


def recipe_default(field: str, fallback: Any) -> Any:
    """The default of a :class:`carl_geo.polygon_training.recipe.TrainingRecipe` field (``fallback`` when carl_geo
    is not installed yet), so that the dialog offers the library's defaults."""
    recipe = _library_module("carl_geo.polygon_training.recipe")
    try:
        return getattr(recipe.TrainingRecipe(), field)
    except Exception:  # noqa: BLE001 - carl_geo missing or older: the plugin's own fallback
        return fallback


MODEL_FILE_FILTER = "CARL model files (*.pt *.pth *.ckpt *.safetensors *.bin);;All files (*.*)"


_PRESETS: list[str] | None = None


def sensor_presets() -> list[str]:
    """``["auto", <carl_geo.sensors preset names>...]``; only ``["auto"]`` when carl_geo is missing.

    QGIS builds every algorithm's parameters when the plugin loads, and ``import carl_geo`` costs
    seconds (torch, torchgeo), so unless carl_geo is already imported the names are read from
    ``carl_geo/sensors.py`` alone (it needs only numpy): the same table, loaded without the package.
    """
    global _PRESETS
    if _PRESETS is None:
        _PRESETS = [AUTO, *sorted(_sensor_table())]
    return list(_PRESETS)


def _sensor_table() -> dict[str, Any]:
    loaded = sys.modules.get("carl_geo.sensors")
    if loaded is not None:
        return loaded.SENSORS
    try:
        spec = importlib.util.find_spec("carl_geo")
    except Exception:  # noqa: BLE001 - a broken install: the dependency message says what to do
        return {}
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "sensors.py"
    name = "_carl_qgis_sensor_table"
    try:
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        try:
            module_spec.loader.exec_module(module)
        finally:
            del sys.modules[name]
        return module.SENSORS
    except Exception:  # noqa: BLE001 - e.g. sensors.py changed to need the package: import it
        try:
            return importlib.import_module("carl_geo.sensors").SENSORS
        except Exception:  # noqa: BLE001
            return {}


def reset_sensor_presets() -> None:
    """Forget the cached preset names (after "Install CARL dependencies" made carl_geo available)."""
    global _PRESETS
    _PRESETS = None


def import_carl(module: str) -> Any:
    """Import a carl_geo module; an ImportError (e.g. a dependency version that does not fit this
    Python) becomes a QgsProcessingException that names the problem and the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise QgsProcessingException(
            f"carl_geo is installed but {module} cannot be imported in QGIS's Python "
            f"({type(e).__name__}: {e}). A package it needs has a version that does not fit: run Plugins > CARL > "
            "Install CARL dependencies... again (it builds a fresh private environment).") from e


def parse_wavelengths(text: str) -> list[float] | None:
    """``"0.49, 0.56, 0.665"`` -> ``[0.49, 0.56, 0.665]`` µm (nm values such as ``"490, 560"`` are
    converted, as :func:`carl_geo.io.parse_wavelength_list` does); empty -> None.

    Raises:
        QgsProcessingException: an entry is not a number.
    """
    if not (text or "").strip():
        return None
    try:
        values = import_carl("carl_geo.io").parse_wavelength_list(text)
    except library_errors() as e:
        raise QgsProcessingException(
            f"Band wavelengths: {e}; give one centre wavelength in µm per band, separated by commas, "
            "e.g. 0.49, 0.56, 0.665") from None
    return values or None


def raster_file(layer: QgsRasterLayer | None, what: str = "Input raster") -> str:
    """The file (or GDAL dataset name) behind a raster layer, for rasterio.

    Raises:
        QgsProcessingException: no layer, or a layer that is not a GDAL file (memory, WMS,
            WCS, XYZ tiles, ...), with what to do instead.
    """
    if layer is None or not layer.isValid():
        raise QgsProcessingException(f"{what}: no valid raster layer was given.")
    provider = layer.providerType()
    if provider != "gdal":
        raise QgsProcessingException(
            f"{what}: layer '{layer.name()}' comes from the '{provider}' data provider, not from a file. "
            "CARL reads rasters from files: save it as a GeoTIFF first (right-click the layer > Export > "
            "Save As..., or Raster > Conversion > Translate) and run the algorithm on that file.")
    source = layer.source()
    parts = QgsProviderRegistry.instance().decodeUri("gdal", source)
    path = parts.get("path") or source
    if not os.path.exists(path):
        raise QgsProcessingException(
            f"{what}: layer '{layer.name()}' is not backed by a local file ({source}); "
            "save it as a GeoTIFF first and run the algorithm on that file.")
    return source if parts.get("layerName") or source.lower().startswith(("netcdf:", "hdf")) else path


def parse_bands(text: str) -> list[int | str] | None:
    """``"1, 2, 4"`` -> ``[1, 2, 4]`` (1-based band numbers); ``"B4,B3,B2"`` -> band names; empty -> None
    (the syntax of ``carl-geo --bands``: :func:`carl_geo.cli_args.band_items`)."""
    if not (text or "").strip():
        return None
    return import_carl("carl_geo.cli_args").band_items(text) or None


def check_band_count(layer: QgsRasterLayer, wavelengths: list[float] | None,
                     bands: list[int | str] | None = None) -> None:
    """Clear message when an explicit wavelength list does not match the (selected) bands."""
    if wavelengths is None:
        return
    if bands is not None and len(wavelengths) != len(bands):
        raise QgsProcessingException(
            f"{len(bands)} bands were selected but {len(wavelengths)} wavelengths were given; "
            "give one centre wavelength (µm) per selected band, in the same order.")
    if bands is None and len(wavelengths) != layer.bandCount():
        raise QgsProcessingException(
            f"Layer '{layer.name()}' has {layer.bandCount()} bands but {len(wavelengths)} wavelengths were given; "
            "give one centre wavelength (µm) per band, in band order.")


def set_advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """``param`` with the Advanced flag set (shown under "Advanced Parameters"); returns it."""
    param.setFlags(param.flags() | PARAM_ADVANCED)
    return param


def choice_parameter(name: str, description: str, options: Sequence[str],
                     default: str) -> QgsProcessingParameterEnum:
    """A single-choice enum whose value is the option text (``usesStaticStrings``)."""
    return QgsProcessingParameterEnum(name, description, options=list(options), defaultValue=default,
                                      usesStaticStrings=True)


def progress_bridge(feedback: QgsProcessingFeedback, start: float = 0.0,
                    span: float = 100.0) -> Callable[[int, int], bool]:
    """A carl_geo ``progress(done, total)`` callback that drives ``feedback`` and cancels.

    Maps ``done/total`` onto ``start .. start + span`` percent and returns False (cancel)
    once the user pressed Cancel.
    """

    def progress(done: int, total: int) -> bool:
        if total:
            feedback.setProgress(start + span * min(max(done / total, 0.0), 1.0))
        return not feedback.isCanceled()

    return progress


class CarlAlgorithm(QgsProcessingAlgorithm):
    """Base class: name/group boilerplate, dependency gate and shared parameters."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    SENSOR = "SENSOR"
    WAVELENGTHS = "WAVELENGTHS"
    BANDS = "BANDS"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    DEVICE = "DEVICE"
    PRECISION = "PRECISION"
    OUTPUT = "OUTPUT"

    def tr(self, text: str) -> str:
        return QCoreApplication.translate(type(self).__name__, text)

    def createInstance(self) -> CarlAlgorithm:  # noqa: N802 (Qt API)
        return type(self)()

    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802
        return ""

    def flags(self) -> Any:  # QgsProcessingAlgorithm.Flags (QGIS 3) / Qgis.ProcessingAlgorithmFlags (QGIS 4)
        return super().flags() | FLAG_CAN_CANCEL

    def canExecute(self) -> tuple[bool, str]:  # noqa: N802
        status = deps.status()
        return status.ok, status.message

    # -- shared parameters -------------------------------------------------------------
    def add_input_raster(self) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.INPUT, self.tr("Input raster (any number of bands)")))

    def add_model_file(self, description: str, name: str | None = None, optional: bool = False) -> None:
        """A CARL model / weights file parameter (``name`` defaults to :attr:`MODEL`)."""
        self.addParameter(QgsProcessingParameterFile(
            name or self.MODEL, description, fileFilter=MODEL_FILE_FILTER, optional=optional))

    def add_wavelength_parameters(self) -> None:
        self.addParameter(choice_parameter(
            self.SENSOR, self.tr("Band wavelengths: sensor preset ('auto' = from the layer's metadata or the model)"),
            sensor_presets(), AUTO))
        self.addParameter(set_advanced(QgsProcessingParameterString(
            self.WAVELENGTHS, self.tr("Band wavelengths in µm, comma-separated, one per band (overrides the preset)"),
            optional=True)))
        self.addParameter(set_advanced(QgsProcessingParameterString(
            self.BANDS, self.tr("Bands to use: numbers (1 = first) or names (e.g. B4, B3, B2), comma-separated "
                                "(default: all, or those the model was trained on)"), optional=True)))

    def add_tiling_parameters(self, batch_size: int = DEFAULT_BATCH_SIZE, advanced: bool = False) -> None:
        """Tile size, overlap and batch size of the tiled prediction (``advanced``: under Advanced Parameters)."""
        params = [
            QgsProcessingParameterNumber(
                self.TILE_SIZE, self.tr("Tile size in pixels (0 = from the model: 32 patches, 256 at patch 8)"),
                NUMBER_INTEGER, DEFAULT_TILE_SIZE, minValue=0, maxValue=8192),
            QgsProcessingParameterNumber(
                self.OVERLAP, self.tr("Tile overlap in pixels (-1 = from the model: 2 patches, 16 at patch 8)"),
                NUMBER_INTEGER, DEFAULT_OVERLAP, minValue=-1, maxValue=4096),
            QgsProcessingParameterNumber(
                self.BATCH_SIZE, self.tr("Batch size (tiles per forward pass)"), NUMBER_INTEGER,
                batch_size, minValue=1, maxValue=1024),
        ]
        for param in params:
            self.addParameter(set_advanced(param) if advanced else param)

    def add_device_parameter(self) -> None:
        self.addParameter(choice_parameter(self.DEVICE, self.tr("Device"), DEVICES, AUTO))

    def add_precision_parameter(self, advanced: bool = False) -> None:
        """Precision of the prediction (``auto``: CARL models in bf16 on a CPU with AMX units, 2.2-2.5x faster with the
        published backbone, else fp32; ``int8``: about 2x faster on a CPU with the published backbone, no faster
        with small models, small accuracy cost)."""
        param = choice_parameter(self.PRECISION, self.tr(
            "Precision (auto: CARL in bf16 on a CPU with AMX, else fp32; int8: faster on a CPU, needs onnxruntime; "
            "bf16/fp16: GPU)"), PRECISIONS, DEFAULT_PRECISION)
        self.addParameter(set_advanced(param) if advanced else param)

    # -- reading them ------------------------------------------------------------------
    def require_dependencies(self) -> None:
        status = deps.status()
        if not status.ok:
            raise QgsProcessingException(status.message)

    def input_raster(self, parameters: dict[str, Any],
                     context: QgsProcessingContext) -> tuple[QgsRasterLayer, str]:
        """The :attr:`INPUT` layer and the file behind it (see :func:`raster_file`)."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        return layer, raster_file(layer)

    def wavelength_args(self, parameters: dict[str, Any], context: QgsProcessingContext,
                        layer: QgsRasterLayer) -> dict[str, Any]:
        """``wavelengths``/``sensor``/``bands`` keyword arguments of the carl_geo APIs (``{}`` = auto:
        file metadata, then the model's wavelengths), checked against the layer."""
        args: dict[str, Any] = {}
        bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context))
        if bands is not None:
            args["bands"] = bands
        explicit = parse_wavelengths(self.parameterAsString(parameters, self.WAVELENGTHS, context))
        if explicit is not None:
            check_band_count(layer, explicit, bands)
            args["wavelengths"] = explicit
            return args
        sensor = self.parameterAsEnumString(parameters, self.SENSOR, context) or AUTO
        if sensor != AUTO:
            args["sensor"] = sensor
        return args

    def tiling_args(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context) or None
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        overlap = None if overlap < 0 else overlap
        if tile is not None and overlap is not None:
            try:
                import_carl("carl_geo.inference.settings").check_tiling(tile, overlap)
            except library_errors() as e:
                raise user_error(e) from e
        args = {"tile_size": tile, "overlap": overlap,
                "batch_size": self.parameterAsInt(parameters, self.BATCH_SIZE, context),
                "device": self.parameterAsEnumString(parameters, self.DEVICE, context) or AUTO}
        if self.parameterDefinition(self.PRECISION) is not None:
            args["precision"] = self.parameterAsEnumString(parameters, self.PRECISION, context) or DEFAULT_PRECISION
        return args

    def model_path(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        path = self.parameterAsFile(parameters, self.MODEL, context)
        if not path or not Path(path).is_file():
            raise QgsProcessingException(f"Model file not found: {path!r}; choose a CARL model file (.pt).")
        return path


def library_errors() -> tuple[type[BaseException], ...]:
    """What the algorithms turn into one-line Processing errors when they call carl_geo's torch-free helpers in
    QGIS's process: carl_geo's error family (:class:`carl_geo.errors.CarlGeoError`) and OSError."""
    return (import_carl("carl_geo.errors").CarlGeoError, OSError)


def user_error(exc: BaseException) -> QgsProcessingException:
    """A carl_geo error as an analyst-readable Processing error (first letter capitalised)."""
    text = str(exc) or type(exc).__name__
    return QgsProcessingException(text[0].upper() + text[1:])


#: Added to a wavelength error in the algorithm dialogs: where to fix it.
WAVELENGTH_HINT = (". In this algorithm: choose the sensor preset, or type one wavelength (µm) per band in 'Band "
                   "wavelengths' under Advanced Parameters (and pick bands with 'Bands to use' there).")


#: The library's setting names as the algorithm dialogs label them: the worker's error messages name these
#: (:func:`carl_geo.errors.set_interface`, interface ``"gui"``) instead of Python keywords.
GUI_LABELS = {
    "wavelengths": "Band wavelengths in µm",
    "sensor": "Band wavelengths: sensor preset",
    "bands": "Bands to use",
    "nodata": "Additional no data value (Layer Properties > Transparency)",
    "tile_size": "Tile size in pixels",
    "overlap": "Tile overlap in pixels",
    "batch_size": "Batch size",
    "device": "Device",
    "output": "Output",
    "max_steps": "Training steps at most",
    "max_minutes": "Training time at most, minutes",
    "val_fraction": "Share of polygons held out",
    "select": "Model to keep",
    "seed": "Random seed",
}


def run_child(job: str, args: dict[str, Any], feedback: QgsProcessingFeedback, *, start: float = 0.0,
              span: float = 100.0, cancelled: str = "Cancelled; nothing was written.") -> dict[str, Any]:
    """Run a carl_geo job in the child process (:func:`carl_qgis.child.run_job`) with progress mapped onto
    ``start .. start + span`` percent, its log lines and warnings in the algorithm's log and Cancel ending it.
    Its error is one QgsProcessingException line (``cancelled`` on a cancel; a crash names the child's log)."""
    from carl_qgis import child

    def progress(done: int, total: int) -> None:
        feedback.setProgress(start + span * min(max(done / max(1, total), 0.0), 1.0))

    push = getattr(feedback, "pushWarning", None) or (lambda message: feedback.reportError(message, False))

    def log(text: str) -> None:  # one log line per line (the evidence table arrives as one message)
        for line in text.splitlines() or [""]:
            feedback.pushInfo(line)

    try:
        return child.run_job(job, args, on_progress=progress, on_log=log,
                             on_warning=lambda text: push(f"Warning: {text}"), is_cancelled=feedback.isCanceled,
                             interface={"name": "gui", "labels": GUI_LABELS})
    except child.WorkerError as e:
        if e.cancelled:
            raise QgsProcessingException(cancelled) from None
        text = e.text[0].upper() + e.text[1:] if e.text else "The CARL worker failed"
        if "wavelength" in text.lower() and not e.crashed:
            text += WAVELENGTH_HINT
        if e.kind == "ModelTaskError":  # in QGIS, features come from another algorithm
            text = ("This model is a feature extractor (no classes): use it with 'CARL extract features', or choose a "
                    "model trained with 'CARL train from polygons' to classify")
        raise QgsProcessingException(text) from None


def layer_nodata(layer: Any) -> tuple[float | None, str]:
    """``(value, why)``: the no-data value a user set on a raster layer in QGIS (Layer Properties > Transparency >
    Additional no data value), one value on every band, which becomes the predictor's ``nodata`` when the file
    declares none of its own in use (the predictor takes one value: a file's own nodata is never dropped); else
    ``(None, why)`` with ``why`` saying why it is not used (``""`` when the layer has none)."""
    if layer is None or not layer.bandCount():
        return None, ""
    provider = layer.dataProvider()
    bands = range(1, layer.bandCount() + 1)
    ranges = [provider.userNoDataValues(band) for band in bands]
    if not any(ranges):
        return None, ""
    values = {float(r[0].min()) if len(r) == 1 and r[0].min() == r[0].max() else None for r in ranges}
    if len(values) != 1 or None in values:
        return None, "it is not one value on every band"
    own = any(provider.sourceHasNoDataValue(band) and provider.useSourceNoDataValue(band) for band in bands)
    if own:
        return None, "the file declares its own nodata, which stays (one value is taken)"
    return values.pop(), ""


def nodata_args(layer: Any, feedback: QgsProcessingFeedback) -> dict[str, float]:
    """``{"nodata": value}`` for the carl_geo call when the input ``layer`` has a usable no-data value of its own
    (:func:`layer_nodata`), else ``{}``; the log says which."""
    nodata, why = layer_nodata(layer)
    if nodata is not None:
        feedback.pushInfo(f"Input nodata: {nodata:g} (the layer's additional no data value)")
        return {"nodata": nodata}
    if why:
        feedback.pushInfo(f"The layer's additional no data value is not used: {why}.")
    return {}


def predict_to_file(model_path: str, src: str, dst: str, feedback: QgsProcessingFeedback, *, cancelled: str,
                    start: float = 0.0, span: float = 100.0, protect: Sequence[tuple[str, str | None]] = (),
                    **kwargs: Any) -> dict[str, Any]:
    """:func:`carl_geo.inference.predict_raster` of the model file in the child process (:func:`run_child`). The
    predictor writes atomically and refuses an output that is a file it reads (the input raster, a VRT's
    sources, the model file, and the files in ``protect``), so on cancel or error the file at ``dst`` (if any)
    is untouched (``nodata``: from :func:`nodata_args`). Returns the result: ``path``, ``count``, ``output``, ``seconds``, ``device``, ``precision`` (the
    one that ran: "auto" resolved) and the model's ``class_names``, ``colors``, ``class_values``."""
    args = {"model": model_path, "src": src, "dst": dst, "overwrite": True,
            "protect": [[label, path] for label, path in protect if path], **kwargs}
    return run_child("predict", args, feedback, start=start, span=span, cancelled=cancelled)


def ran_on(result: dict[str, Any]) -> str:
    """``bf16 on cpu``: the precision and device a prediction ran with (for the log line)."""
    return f"{result.get('precision', 'fp32')} on {result.get('device', 'cpu')}"


def layer_file(layer: Any) -> str | None:
    """The local file behind a (vector or raster) layer, or None."""
    if layer is None:
        return None
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path") or ""
    return path if path and os.path.exists(path) else None
