"""The QGIS plugin object: registers the Processing provider, adds the Plugins > CARL menu
("Install CARL dependencies…", "Download CARL-SSL weights…") and reports missing dependencies
with a button that opens the installer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsMessageLog

from carl_qgis import deps
from carl_qgis.compat import MESSAGE_CRITICAL, MESSAGE_WARNING, QAction
from carl_qgis.provider import CarlProvider

LOG_TAG = "CARL"
MENU = "&CARL"
#: QgsSettings key: the installer dialog was opened once by itself (first run without dependencies).
FIRST_RUN_KEY = "carl_qgis/installer_offered"
ICON = Path(__file__).with_name("icon.svg")


class CarlPlugin:
    """Created by :func:`carl_qgis.classFactory`. QGIS calls :meth:`initProcessing` (also in
    ``qgis_process``), then :meth:`initGui` in the desktop application, and :meth:`unload`."""

    _dependency_message_shown = False  # one message per QGIS session, however often the plugin reloads

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: CarlProvider | None = None
        self.actions: list[Any] = []
        self.dialogs: list[Any] = []  # keep open dialogs alive
        self._installer: Any = None  # the installer dialog last opened (shown again while it installs)

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
                                     MESSAGE_WARNING)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        add = getattr(self.iface, "addPluginToMenu", None)
        if add is None:
            return
        from qgis.PyQt.QtGui import QIcon

        parent = self.iface.mainWindow() if hasattr(self.iface, "mainWindow") else None
        for text, slot in (("Install CARL dependencies…", self.show_installer),
                           ("Download CARL-SSL weights…", self.show_weights_download)):
            action = QAction(QIcon(str(ICON)), text, parent)
            action.triggered.connect(slot)
            add(MENU, action)
            self.actions.append(action)
        self.offer_installer_once()

    def offer_installer_once(self) -> Any:
        """First run without the dependencies: open the installer dialog by itself, once per profile
        (afterwards the message bar button and the menu stay). Returns the dialog or None."""
        from qgis.core import QgsSettings

        settings = QgsSettings()
        if deps.status().ok or str(settings.value(FIRST_RUN_KEY, False)).lower() in ("true", "1"):
            return None
        settings.setValue(FIRST_RUN_KEY, True)
        try:
            return self.show_installer()
        except Exception as e:  # noqa: BLE001 - never break QGIS start-up
            QgsMessageLog.logMessage(f"could not open the installer: {e}", LOG_TAG, MESSAGE_WARNING)
            return None

    def unload(self) -> None:
        remove = getattr(self.iface, "removePluginMenu", None)
        for action in self.actions:
            if remove is not None:
                remove(MENU, action)
            action.deleteLater()
        self.actions = []
        self._installer = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    # -- dialogs ------------------------------------------------------------------------------------
    def _parent(self) -> Any:
        return self.iface.mainWindow() if self.iface is not None and hasattr(self.iface, "mainWindow") else None

    def show_installer(self) -> Any:
        """Open the "Install CARL dependencies" dialog (non-modal); returns it. While an installation runs, the
        dialog that runs it is shown again (not a fresh "Ready." one that could start a second installation)."""
        from carl_qgis.gui.installer_dialog import InstallerDialog

        running = self._installer if self._installer is not None and self._installer.running else None
        if running is not None:
            running.show()
            running.raise_()
            running.activateWindow()
            return running
        dialog = InstallerDialog(self._parent(), on_installed=lambda _result: self._dependencies_installed())
        self._installer = dialog
        return self._show(dialog)

    def show_weights_download(self) -> Any:
        """Open the "Download CARL-SSL weights" dialog (non-modal); returns it."""
        from carl_qgis.gui.weights_dialog import WeightsDialog

        status = deps.status()
        dialog = WeightsDialog(self._parent(), missing=None if status.ok else status.message,
                               open_installer=self.show_installer)
        return self._show(dialog)

    def _show(self, dialog: Any) -> Any:
        self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]
        dialog.show()
        dialog.raise_()
        return dialog

    def _dependencies_installed(self) -> None:
        bar = getattr(self.iface, "messageBar", None)
        if bar is not None:
            try:
                bar().clearWidgets()
            except Exception:  # noqa: BLE001
                pass

    # -- start-up check -------------------------------------------------------------------------------
    def report_dependencies(self) -> deps.DependencyStatus:
        """Check carl_geo/torch once; if missing, show one message (message bar with an "Install…"
        button + log) that says how to install them. Never installs anything unasked, never raises."""
        status = deps.status()
        update = deps.update_message() if status.ok else ""
        if update and not CarlPlugin._dependency_message_shown:
            CarlPlugin._dependency_message_shown = True
            QgsMessageLog.logMessage(update, LOG_TAG, MESSAGE_WARNING)
        if not status.ok and not CarlPlugin._dependency_message_shown:
            CarlPlugin._dependency_message_shown = True
            QgsMessageLog.logMessage(status.message, LOG_TAG, MESSAGE_CRITICAL)
            bar = getattr(self.iface, "messageBar", None)
            if bar is not None:
                try:
                    self._push_message(bar(), status.message)
                except Exception as e:  # noqa: BLE001 - a message must never break QGIS start-up
                    QgsMessageLog.logMessage(f"could not show the message bar: {e}", LOG_TAG, MESSAGE_WARNING)
        return status

    def _push_message(self, bar: Any, text: str) -> None:
        """The message with an "Install CARL dependencies…" button (QGIS's message bar), or plain text."""
        if not hasattr(bar, "createMessage"):
            bar.pushMessage("CARL", text, level=MESSAGE_CRITICAL, duration=0)
            return
        from qgis.PyQt.QtWidgets import QPushButton

        widget = bar.createMessage("CARL", text)
        button = QPushButton("Install CARL dependencies…", widget)
        button.clicked.connect(self.show_installer)
        widget.layout().addWidget(button)
        bar.pushWidget(widget, MESSAGE_CRITICAL, 0)
