"""Processing algorithm "CARL segment raster" (``carl:segmentraster``): a class or probability
map from a CARL segmentation model file, computed tile by tile with
:func:`carl_geo.inference.predict_raster`."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterRasterDestination,
)

from carl_qgis.algorithms.base import (
    CarlAlgorithm,
    choice_parameter,
    nodata_args,
    predict_to_file,
    ran_on,
)
from carl_qgis.algorithms.class_polygons import (
    OUTPUT_POLYGONS,
    polygons_file,
    polygons_parameter,
    wants_polygons,
    write_class_polygons,
)
from carl_qgis.styling import style_on_load, style_polygons_on_load

OUTPUT_TYPES = ("classes", "probabilities")


class SegmentRasterAlgorithm(CarlAlgorithm):
    """Input raster (C bands) + model bundle -> class raster (1 band) or probabilities (K bands)."""

    OUTPUT_TYPE = "OUTPUT_TYPE"

    def name(self) -> str:
        return "segmentraster"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("CARL segment raster")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Classifies every pixel of a raster with a CARL segmentation model file (a carl_geo model bundle "
            "with its classes, colours and normalisation). CARL works with any number of bands: it needs the "
            "centre wavelength (µm) of each band, taken from the layer's metadata, from a sensor preset, or "
            "from an explicit list (advanced). The raster is processed in overlapping tiles, so it can be larger "
            "than memory.\n\nOutput 'classes' is a one-band class map (shown with the model's class names and "
            "colours); 'probabilities' has one band per class.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_input_raster()
        self.add_model_file(self.tr("CARL model file (segmentation bundle)"))
        from carl_qgis.algorithms.train_from_polygons import project_models

        trained = project_models()
        if trained:  # the newest model trained in this project
            self.parameterDefinition(self.MODEL).setDefaultValue(trained[0])
        self.add_wavelength_parameters()
        self.add_tiling_parameters()
        self.add_device_parameter()
        self.add_precision_parameter()
        self.addParameter(choice_parameter(self.OUTPUT_TYPE, self.tr("Output"), OUTPUT_TYPES, "classes"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Segmentation")))
        self.addParameter(polygons_parameter())

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        self.require_dependencies()
        layer, src = self.input_raster(parameters, context)
        model_path = self.model_path(parameters, context)
        wl_args = self.wavelength_args(parameters, context, layer)
        tiling = self.tiling_args(parameters, context)
        output = self.parameterAsEnumString(parameters, self.OUTPUT_TYPE, context) or "classes"
        dst = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if wants_polygons(parameters) and output != "classes":
            raise QgsProcessingException("Class polygons need the output 'classes'; choose it, or skip the polygons.")

        feedback.pushInfo(f"Input: {src} ({layer.bandCount()} bands, {layer.width()} x {layer.height()} px); "
                          f"model: {model_path}")
        polygons_path = polygons_file(self, parameters, context)
        result = predict_to_file(model_path, src, dst, feedback, output=output,
                                 **nodata_args(layer, feedback), **wl_args, **tiling,
                                 later_outputs=[["class polygons", polygons_path]] if polygons_path else [],
                                 cancelled="CARL segment raster was cancelled; no output was written.")
        names = result["class_names"]
        feedback.pushInfo(f"Wrote {result['path']}: {result['count']} band(s), {len(names)} classes "
                          f"({', '.join(names)}) in {result['seconds']:.1f} s ({ran_on(result)})")
        results = {self.OUTPUT: dst}
        if output == "classes":
            colors = [tuple(c) for c in result["colors"]]
            style_on_load(context, dst, names, colors, values=result["class_values"])
            polygons = write_class_polygons(self, parameters, context, feedback, dst, names, result["class_values"])
            if polygons is not None:
                style_polygons_on_load(context, polygons, names, colors)
                results[OUTPUT_POLYGONS] = polygons
        return results
