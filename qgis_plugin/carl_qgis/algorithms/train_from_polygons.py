"""Processing algorithm "CARL train from polygons" (``carl:trainfrompolygons``): train a land-cover model from
labelled polygons with :func:`carl_geo.polygon_training.train_from_polygons`, then classify the whole raster
with :func:`carl_geo.inference.predict_raster`; both run in a child process (:mod:`carl_qgis.child`)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsFeatureSource,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingUtils,
    QgsProject,
    QgsVectorFileWriter,
)

from carl_qgis.algorithms.base import (
    AUTO,
    DEVICES,
    CarlAlgorithm,
    choice_parameter,
    config_names,
    import_carl,
    kept_model_choices,
    layer_file,
    nodata_args,
    predict_to_file,
    ran_on,
    recipe_default,
    run_child,
    set_advanced,
    training_modes,
)
from carl_qgis.algorithms.published_weights import PUBLISHED_CHOICE, published_weights_path
from carl_qgis.compat import NUMBER_DOUBLE, NUMBER_INTEGER, PARAM_HIDDEN, SOURCE_POLYGON
from carl_qgis.styling import style_on_load

#: Share of the progress bar used by training; the rest is the prediction of the whole raster.
TRAIN_SHARE = 85.0
#: Fields that GIS formats add as feature ids (never a class).
GENERATED_ID_FIELDS = ("fid", "ogc_fid")
#: Folder beside the saved project where models are kept when no model file was chosen.
MODELS_FOLDER = "carl_models"
#: Project entry (scope, key) listing the models trained in the project, newest first.
PROJECT_MODELS = ("carl_qgis", "models")


def kept_model_path(chosen: str | None, raster_name: str) -> str:
    """Where the model goes: the chosen file, else (no file, or Processing's temporary output) a new file in
    :data:`MODELS_FOLDER` beside the saved project (in the home folder when the project is not saved yet)."""
    temp = QgsProcessingUtils.tempFolder()
    if chosen and not os.path.abspath(chosen).startswith(os.path.abspath(temp) + os.sep):
        return chosen
    home = QgsProject.instance().homePath() or str(Path.home())
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in raster_name)[:40] or "model"
    folder = Path(home) / MODELS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}.pt")


def remember_model(path: str) -> None:
    """Add ``path`` to the project's list of trained models (:data:`PROJECT_MODELS`; 'CARL segment raster' offers
    the newest)."""
    project = QgsProject.instance()
    models, _ok = project.readListEntry(*PROJECT_MODELS)
    models = [path] + [m for m in (models or []) if m != path]
    project.writeEntry(*PROJECT_MODELS, models[:20])


def project_models() -> list[str]:
    """The models trained in the current project that still exist, newest first."""
    models, _ok = QgsProject.instance().readListEntry(*PROJECT_MODELS)
    return [m for m in (models or []) if os.path.isfile(m)]


def export_labels(source: QgsFeatureSource, field: str, folder: str) -> Path:
    """Write the polygons (only the label field) to a GeoPackage in ``folder``.

    The training API reads a vector *file*; exporting also covers memory layers, layer filters and
    "selected features only".

    Raises:
        QgsProcessingException: the field is missing or the file cannot be written.
    """
    index = source.fields().lookupField(field)
    if index < 0:
        names = ", ".join(source.fields().names())
        raise QgsProcessingException(f"The polygon layer has no field {field!r}; its fields are: {names}.")
    fields = QgsFields()
    fields.append(source.fields().at(index))
    path = Path(folder) / "carl_training_polygons.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "labels"
    writer = QgsVectorFileWriter.create(str(path), fields, source.wkbType(), source.sourceCrs(),
                                        QgsCoordinateTransformContext(), options)
    if writer.hasError() != QgsVectorFileWriter.WriterError.NoError:
        raise QgsProcessingException(f"Could not write the training polygons to {path}: {writer.errorMessage()}")
    n = 0
    for feature in source.getFeatures():
        if not feature.hasGeometry():
            continue
        out = QgsFeature(fields)
        out.setGeometry(feature.geometry())
        out.setAttributes([feature.attribute(index)])
        if not writer.addFeature(out):
            raise QgsProcessingException(f"Could not write the training polygons to {path}: {writer.errorMessage()}")
        n += 1
    del writer  # closes the file
    if n == 0:
        raise QgsProcessingException("The polygon layer has no features; draw or select training polygons first.")
    return path


class TrainFromPolygonsAlgorithm(CarlAlgorithm):
    """Raster + labelled polygons -> model file + classified raster."""

    POLYGONS = "POLYGONS"
    FIELD = "FIELD"
    WEIGHTS = "WEIGHTS"
    PUBLISHED_BACKBONE = "PUBLISHED_BACKBONE"
    CONFIG = "CONFIG"
    EPOCHS = "EPOCHS"  # deprecated (hidden): an old epoch was 64 chips
    MAX_STEPS = "MAX_STEPS"
    MAX_MINUTES = "MAX_MINUTES"
    MODE = "MODE"
    CHIP_SIZE = "CHIP_SIZE"
    TRAIN_BATCH_SIZE = "TRAIN_BATCH_SIZE"
    VAL_FRACTION = "VAL_FRACTION"
    SELECT = "SELECT"
    SEED = "SEED"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OVERALL_ACCURACY = "OVERALL_ACCURACY"
    MEAN_IOU = "MEAN_IOU"

    def name(self) -> str:
        return "trainfrompolygons"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("CARL train from polygons")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Trains a land-cover model from polygons you digitised over a raster (one class per polygon, read from "
            "a field): a small CARL network, then per-pixel heads on window context and CARL's class "
            "probabilities. The log shows every candidate model scored on held-out polygons (a random forest on "
            "the bands, a forest with window context, CARL alone, CARL + forest, CARL + MLP, their ensemble) and "
            "which one is kept; the model file is saved and the whole raster is classified at pixel resolution. "
            "Give pretrained backbone weights, or tick 'Use the published CARL-SSL backbone' (downloaded once, "
            "1.33 GB), to train only CARL's head; without them the small 'tiny' network is trained end to end.\n\n"
            "Training steps and time: 0 = automatic (a few minutes on a CPU, less for a small labelled area; the CARL "
            "model kept is the average of "
            "the last quarter's checkpoints). Training mode auto: image chips for multispectral rasters, single "
            "pixels for hyperspectral rasters with small polygons. Model to keep auto: the CARL ensemble, unless "
            "another candidate is clearly better on the held-out polygons. Without a model file name the model is "
            "kept in the project's folder (carl_models/), and 'CARL segment raster' offers it next time. Training "
            "and classification run in a separate process: if they fail, QGIS keeps running and the log names the "
            "process's log file.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_input_raster()
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.POLYGONS, self.tr("Training polygons"), [SOURCE_POLYGON]))
        self.addParameter(QgsProcessingParameterField(
            self.FIELD, self.tr("Class field"), parentLayerParameterName=self.POLYGONS))
        self.add_wavelength_parameters()
        self.add_model_file(self.tr("Pretrained backbone weights (optional)"), self.WEIGHTS, optional=True)
        self.addParameter(QgsProcessingParameterBoolean(self.PUBLISHED_BACKBONE, self.tr(PUBLISHED_CHOICE), False))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_STEPS, self.tr("Training steps at most (0 = automatic)"), NUMBER_INTEGER, 0,
            minValue=0, maxValue=100000))
        self.addParameter(set_advanced(choice_parameter(self.DEVICE, self.tr("Device"), DEVICES, AUTO)))
        epochs = QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs (deprecated: use training steps)"),
                                              NUMBER_INTEGER, 0, minValue=0, maxValue=10000)
        epochs.setFlags(epochs.flags() | PARAM_HIDDEN)
        self.addParameter(epochs)
        self.add_precision_parameter(advanced=True)
        advanced = [
            choice_parameter(self.MODE, self.tr("Training mode"), training_modes(), "auto"),
            QgsProcessingParameterNumber(self.MAX_MINUTES, self.tr("Training time at most, minutes (0 = automatic)"),
                                         NUMBER_DOUBLE, 0.0, minValue=0.0, maxValue=10000.0),
            choice_parameter(self.CONFIG, self.tr("Network size (without pretrained weights)"),
                             config_names(), "tiny"),
            QgsProcessingParameterNumber(self.CHIP_SIZE, self.tr("Training chip size in pixels (0 = automatic)"),
                                         NUMBER_INTEGER, 0, minValue=0, maxValue=1024),
            QgsProcessingParameterNumber(self.TRAIN_BATCH_SIZE, self.tr("Training batch size (0 = automatic)"),
                                         NUMBER_INTEGER, 0, minValue=0, maxValue=1024),
            QgsProcessingParameterNumber(self.VAL_FRACTION, self.tr("Share of polygons held out"),
                                         NUMBER_DOUBLE, recipe_default("val_fraction", 0.25), minValue=0.0,
                                         maxValue=0.9),
            choice_parameter(self.SELECT, self.tr("Model to keep"), kept_model_choices(), "auto"),
            QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), NUMBER_INTEGER,
                                         recipe_default("seed", 0), minValue=0),
        ]
        for param in advanced:
            self.addParameter(set_advanced(param))
        self.add_tiling_parameters(advanced=True)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_MODEL, self.tr("Model file"), fileFilter="CARL model (*.pt)", optional=True,
            createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Classification")))
        self.addOutput(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, self.tr("Validation overall accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.MEAN_IOU, self.tr("Validation mean IoU")))

    def postProcessAlgorithm(self, context: QgsProcessingContext,  # noqa: N802 (Qt API; runs in the main thread)
                             feedback: QgsProcessingFeedback) -> dict[str, Any]:
        trained = getattr(self, "_trained_model", None)
        if trained:
            remember_model(trained)
        return {}

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        self.require_dependencies()
        layer, src = self.input_raster(parameters, context)
        source = self.parameterAsSource(parameters, self.POLYGONS, context)
        if source is None:
            raise QgsProcessingException("Training polygons: no valid polygon layer was given.")
        field = self.parameterAsString(parameters, self.FIELD, context)
        wl_args = self.wavelength_args(parameters, context, layer)
        tiling = self.tiling_args(parameters, context)
        weights = self.parameterAsFile(parameters, self.WEIGHTS, context) or None
        if weights and not Path(weights).is_file():
            raise QgsProcessingException(f"Pretrained weights file not found: {weights}")
        if self.parameterAsBool(parameters, self.PUBLISHED_BACKBONE, context):
            if weights:
                raise QgsProcessingException("Choose either a pretrained weights file or the published CARL-SSL "
                                             "backbone, not both.")
            weights = published_weights_path(feedback)
        max_steps = self.parameterAsInt(parameters, self.MAX_STEPS, context) or None
        epochs = self.parameterAsInt(parameters, self.EPOCHS, context) or None
        if epochs and not max_steps:  # models saved before training steps existed
            max_steps = import_carl("carl_geo.polygon_training.recipe").steps_for_epochs(epochs, None)
            feedback.pushInfo(f"'Epochs' is deprecated: training for at most {max_steps} steps")
        if field.lower() in GENERATED_ID_FIELDS:
            raise QgsProcessingException(f"The class field {field!r} of layer '{source.sourceName()}' is the feature "
                                         "id that GeoPackage adds, not a class: choose the field that holds each "
                                         "polygon's class.")
        model_out = kept_model_path(self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context), layer.name())
        dst = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        polygons_file = layer_file(self.parameterAsVectorLayer(parameters, self.POLYGONS, context))
        protect = [["polygon layer file", polygons_file], ["pretrained weights file", weights]]
        workdir = tempfile.mkdtemp(prefix="carl_train_", dir=QgsProcessingUtils.tempFolder())
        try:
            labels = export_labels(source, field, workdir)
            feedback.pushInfo(f"Training on {src} ({layer.bandCount()} bands) with {source.featureCount()} "
                              f"polygons, class field {field!r}")
            nodata = nodata_args(layer, feedback)  # the layer's own no data value, for training and the map
            # the model file is written atomically: on error or cancel, nothing (new) is there
            args = {"raster": src, "labels": str(labels), "label_field": field, "out": model_out, "weights": weights,
                    "config": self.parameterAsEnumString(parameters, self.CONFIG, context) or "tiny",
                    "max_steps": max_steps,
                    "max_minutes": self.parameterAsDouble(parameters, self.MAX_MINUTES, context) or None,
                    "mode": self.parameterAsEnumString(parameters, self.MODE, context) or "auto",
                    "chip_size": self.parameterAsInt(parameters, self.CHIP_SIZE, context) or None,
                    "batch_size": self.parameterAsInt(parameters, self.TRAIN_BATCH_SIZE, context) or None,
                    "val_fraction": self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
                    "select": self.parameterAsEnumString(parameters, self.SELECT, context) or "auto",
                    "seed": self.parameterAsInt(parameters, self.SEED, context), "device": tiling["device"],
                    "protect": [p for p in protect if p[1]], "protect_rasters": [["input raster", src]],
                    "later_outputs": [["classification", dst]], **wl_args, **nodata}
            try:
                trained = run_child("train", args, feedback, start=0.0, span=TRAIN_SHARE,
                                    cancelled="CARL training was cancelled; no model was written.")
            except QgsProcessingException as e:  # name the user's layer, not the exported copy
                raise QgsProcessingException(str(e).replace(str(labels), f"layer '{source.sourceName()}'")) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if feedback.isCanceled():
            raise QgsProcessingException("CARL training was cancelled after the model was saved to "
                                         f"{trained['model_path']}; no classification was written.")
        report = trained["report"]
        feedback.pushInfo(f"Model saved to {trained['model_path']}: {report.get('kept', 'carl')}; held-out overall "
                          f"accuracy {report.get('overall_accuracy', float('nan')):.3f}, mean IoU "
                          f"{report.get('mean_iou', float('nan')):.3f}")
        if report.get("warning"):
            feedback.reportError(report["warning"], fatalError=False)
        for name, iou in (report.get("per_class_iou") or {}).items():
            feedback.pushInfo(f"  IoU {name}: {'n/a' if iou is None else f'{iou:.3f}'}")

        result = predict_to_file(trained["model_path"], src, dst, feedback, output="classes", start=TRAIN_SHARE,
                                 span=100.0 - TRAIN_SHARE, protect=[("polygon layer file", polygons_file)],
                                 **nodata, **wl_args, **tiling,
                                 cancelled=f"Classification cancelled; the trained model was kept at "
                                           f"{trained['model_path']}.")
        feedback.pushInfo(f"Wrote the class map {result['path']} in {result['seconds']:.1f} s ({ran_on(result)})")
        style_on_load(context, dst, result["class_names"], [tuple(c) for c in result["colors"]],
                      values=result["class_values"])
        self._trained_model = str(trained["model_path"])
        return {self.OUTPUT_MODEL: str(trained["model_path"]), self.OUTPUT: dst,
                self.OVERALL_ACCURACY: float(report.get("overall_accuracy", float("nan"))),
                self.MEAN_IOU: float(report.get("mean_iou", float("nan")))}
