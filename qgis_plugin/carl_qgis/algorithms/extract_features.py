"""Processing algorithm "CARL extract features" (``carl:extractfeatures``): a D-band embedding
raster (CARL's per-pixel features) from any CARL model file, via
:func:`carl_geo.inference.predict_raster` with ``output="embeddings"``."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterRasterDestination,
)

from carl_qgis.algorithms.base import (
    CarlAlgorithm,
    choice_parameter,
    nodata_args,
    predict_to_file,
    ran_on,
)
from carl_qgis.algorithms.published_weights import PUBLISHED_CHOICE, published_weights_path

DTYPES = ("float32", "float16")


class ExtractFeaturesAlgorithm(CarlAlgorithm):
    """Input raster (C bands) + CARL weights -> embedding raster (D bands, input grid)."""

    DTYPE = "DTYPE"
    PUBLISHED_BACKBONE = "PUBLISHED_BACKBONE"

    def name(self) -> str:
        return "extractfeatures"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("CARL extract features")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Computes CARL's camera-agnostic per-pixel features (an embedding raster with D bands, on the input "
            "grid) from any raster with band wavelengths. Use it with a backbone weights file or any CARL model "
            "file; the features feed clustering, similarity search or your own classifiers. Or tick 'Use the "
            "published CARL-SSL backbone': the pretrained checkpoint is downloaded once (1.33 GB) and verified.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_input_raster()
        self.add_model_file(self.tr("CARL model or backbone weights file"), optional=True)
        self.addParameter(QgsProcessingParameterBoolean(self.PUBLISHED_BACKBONE, self.tr(PUBLISHED_CHOICE), False))
        self.add_wavelength_parameters()
        self.add_tiling_parameters()
        self.add_device_parameter()
        self.add_precision_parameter()
        self.addParameter(choice_parameter(self.DTYPE, self.tr("Feature data type"), DTYPES, "float32"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("CARL features")))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        self.require_dependencies()
        layer, src = self.input_raster(parameters, context)
        if self.parameterAsBool(parameters, self.PUBLISHED_BACKBONE, context):
            if self.parameterAsFile(parameters, self.MODEL, context):
                raise QgsProcessingException("Choose either a model file or the published CARL-SSL backbone, not both.")
            model_path = published_weights_path(feedback)
        elif not self.parameterAsFile(parameters, self.MODEL, context):
            raise QgsProcessingException("Choose a CARL model file, or tick 'Use the published CARL-SSL backbone'.")
        else:
            model_path = self.model_path(parameters, context)
        wl_args = self.wavelength_args(parameters, context, layer)
        tiling = self.tiling_args(parameters, context)
        dtype = self.parameterAsEnumString(parameters, self.DTYPE, context) or "float32"
        dst = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)

        result = predict_to_file(model_path, src, dst, feedback, output="embeddings", embedding_dtype=dtype,
                                 **nodata_args(layer, feedback), **wl_args, **tiling,
                                 cancelled="CARL extract features was cancelled; no output was written.")
        feedback.pushInfo(f"Wrote {result['path']}: {result['count']} feature bands in {result['seconds']:.1f} s "
                          f"({ran_on(result)})")
        return {self.OUTPUT: dst}
