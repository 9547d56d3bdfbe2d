"""The QGIS plugin object: registers the Processing provider and reports missing dependencies."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog

from carl_qgis import deps
from carl_qgis.provider import CarlProvider

LOG_TAG = "CARL"


class CarlPlugin:
    """Created by :func:`carl_qgis.classFactory`. QGIS calls :meth:`initProcessing` (also in
    ``qgis_process``), then :meth:`initGui` in the desktop application, and :meth:`unload`."""

    _dependency_message_shown = False  # one message per QGIS session, however often the plugin reloads
    _proj_warning_shown = False

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: CarlProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        """Register the provider (always: without carl_geo its algorithms say what to install)."""
        self.report_dependencies()
        if self.provider is not None:
            return
        provider = CarlProvider()
        if QgsApplication.processingRegistry().addProvider(provider):
            self.provider = provider
        else:  # another copy of the plugin already registered id "carl"; leave that one alone
            QgsMessageLog.logMessage("a Processing provider with id 'carl' is already registered", LOG_TAG,
                                     Qgis.Warning)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def report_dependencies(self) -> deps.DependencyStatus:
        """Check carl_geo/torch once; if missing, show one message (message bar + log) with the
        pip command for this QGIS's Python. Never installs anything, never raises."""
        status = deps.status()
        clash = deps.proj_clash_message()
        if clash and not CarlPlugin._proj_warning_shown:
            CarlPlugin._proj_warning_shown = True
            QgsMessageLog.logMessage(clash, LOG_TAG, Qgis.Warning)
        if not status.ok and not CarlPlugin._dependency_message_shown:
            CarlPlugin._dependency_message_shown = True
            QgsMessageLog.logMessage(status.message, LOG_TAG, Qgis.Critical)
            bar = getattr(self.iface, "messageBar", None)
            if bar is not None:
                try:
                    bar().pushMessage("CARL", status.message, level=Qgis.Critical, duration=0)
                except Exception as e:  # noqa: BLE001 - a message must never break QGIS start-up
                    QgsMessageLog.logMessage(f"could not show the message bar: {e}", LOG_TAG, Qgis.Warning)
        return status
