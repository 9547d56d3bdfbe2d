"""The "CARL" Processing provider (id ``carl``)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from carl_qgis.algorithms import ALGORITHMS

ICON = Path(__file__).with_name("icon.svg")


class CarlProvider(QgsProcessingProvider):
    """Registers "CARL segment raster", "CARL extract features" and "CARL train from polygons"."""

    def id(self) -> str:
        return "carl"

    def name(self) -> str:
        return "CARL"

    def longName(self) -> str:  # noqa: N802 (Qt API)
        return "CARL: camera-agnostic deep learning for multi- and hyperspectral rasters"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def svgIconPath(self) -> str:  # noqa: N802
        return str(ICON)

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"
