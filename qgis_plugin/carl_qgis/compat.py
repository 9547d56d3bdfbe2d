"""QGIS 3 / QGIS 4 (Qt5 / Qt6) names in one place.

Qt6 and QGIS 4 removed the short enum forms (``Qt.AlignLeft``, ``Qgis.Warning``) and moved
several Processing enums to ``Qgis`` (QGIS 3.36+). Everything here is fully scoped and picks
the newest spelling that the running QGIS has, so the plugin runs on QGIS 3.22 ... 4.x.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    Qgis,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsUnitTypes,
    QgsWkbTypes,
)

try:  # Qt6 (QGIS 4): QAction lives in QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5 (QGIS 3)
    from qgis.PyQt.QtWidgets import QAction


def _pick(new_owner: Any, new_enum: str, new_name: str, old_owner: Any, old_enum: str, old_name: str) -> Any:
    """``new_owner.new_enum.new_name`` when this QGIS has it, else ``old_owner.old_enum.old_name``."""
    enum = getattr(new_owner, new_enum, None)
    if enum is not None and hasattr(enum, new_name):
        return getattr(enum, new_name)
    return getattr(getattr(old_owner, old_enum), old_name)


MESSAGE_INFO = Qgis.MessageLevel.Info
MESSAGE_WARNING = Qgis.MessageLevel.Warning
MESSAGE_CRITICAL = Qgis.MessageLevel.Critical
MESSAGE_SUCCESS = Qgis.MessageLevel.Success

FLAG_CAN_CANCEL = _pick(Qgis, "ProcessingAlgorithmFlag", "CanCancel", QgsProcessingAlgorithm, "Flag", "FlagCanCancel")
FLAG_NO_THREADING = _pick(Qgis, "ProcessingAlgorithmFlag", "NoThreading",
                          QgsProcessingAlgorithm, "Flag", "FlagNoThreading")
PARAM_ADVANCED = _pick(Qgis, "ProcessingParameterFlag", "Advanced", QgsProcessingParameterDefinition, "Flag",
                       "FlagAdvanced")
PARAM_HIDDEN = _pick(Qgis, "ProcessingParameterFlag", "Hidden", QgsProcessingParameterDefinition, "Flag",
                     "FlagHidden")
NUMBER_INTEGER = _pick(Qgis, "ProcessingNumberParameterType", "Integer", QgsProcessingParameterNumber, "Type",
                       "Integer")
NUMBER_DOUBLE = _pick(Qgis, "ProcessingNumberParameterType", "Double", QgsProcessingParameterNumber, "Type", "Double")
FILE_FOLDER = _pick(Qgis, "ProcessingFileParameterBehavior", "Folder", QgsProcessingParameterFile, "Behavior",
                    "Folder")
WKB_MULTIPOLYGON = _pick(Qgis, "WkbType", "MultiPolygon", QgsWkbTypes, "Type", "MultiPolygon")
AREA_SQUARE_METERS = _pick(Qgis, "AreaUnit", "SquareMeters", QgsUnitTypes, "AreaUnit", "AreaSquareMeters")
SOURCE_POLYGON = _pick(Qgis, "ProcessingSourceType", "VectorPolygon", QgsProcessing, "SourceType",
                       "TypeVectorPolygon")

__all__ = ["AREA_SQUARE_METERS", "FILE_FOLDER", "FLAG_CAN_CANCEL", "FLAG_NO_THREADING", "MESSAGE_CRITICAL",
           "MESSAGE_INFO", "MESSAGE_SUCCESS",
           "MESSAGE_WARNING", "NUMBER_DOUBLE", "NUMBER_INTEGER", "PARAM_ADVANCED", "PARAM_HIDDEN", "QAction", "SOURCE_POLYGON",
           "WKB_MULTIPOLYGON"]
