"""Processing algorithm "Download CARL-SSL weights" (``carl:downloadweights``): fetch and verify the
published checkpoint into carl_geo's cache (usable in models and batch runs)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
)

from carl_qgis.algorithms.base import CarlAlgorithm
from carl_qgis.algorithms.published_weights import published_weights_path


class DownloadWeightsAlgorithm(CarlAlgorithm):
    """No input; output: the path of the verified checkpoint."""

    FORCE = "FORCE"
    PATH = "PATH"

    def name(self) -> str:
        return "downloadweights"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Download CARL-SSL weights")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "Downloads the published CARL-SSL checkpoint (Zenodo record 18671944, 1.33 GB) into carl_geo's cache "
            "folder (CARL_GEO_HOME, default ~/.cache/carl_geo) and checks it: size, SHA-256, and every tensor name "
            "and shape against the published layout. An interrupted download resumes where it stopped; Cancel "
            "deletes the partial file. Nothing is downloaded when a verified copy is present.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterBoolean(self.FORCE, self.tr("Download again even if present"), False))
        self.addOutput(QgsProcessingOutputFile(self.PATH, self.tr("CARL-SSL checkpoint")))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        self.require_dependencies()
        path = published_weights_path(feedback, force=self.parameterAsBool(parameters, self.FORCE, context))
        feedback.pushInfo(f"CARL-SSL weights ready: {path}")
        return {self.PATH: path}
