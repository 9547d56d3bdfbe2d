"""The "Install CARL dependencies" dialog: choose online/offline and the PyTorch build, then watch
the installation (progress bar, live log, Cancel). The work is :class:`carl_qgis.installer.Installer`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from carl_qgis import environment
from carl_qgis.gui.background import BackgroundJob

INTRO = ("CARL needs PyTorch and a few other Python packages. They are installed into a private folder of "
         "this plugin with QGIS's own Python; nothing else on this computer changes, and a cancelled or failed "
         "installation leaves the previous one working.")


def run_installation(plan: Any, progress: Callable[[float, str], Any], line: Callable[[str], Any],
                     is_cancelled: Callable[[], bool]) -> Any:
    """Run ``plan`` with :class:`carl_qgis.installer.Installer` (the dialog's default worker)."""
    from carl_qgis.installer import Installer

    installer = Installer(plan, progress=progress, line=line, is_cancelled=is_cancelled)
    try:
        return installer.run()
    finally:
        line(f"log file: {installer.log_path}")


class InstallerDialog(QDialog):
    """Args:
        base: the private folder (default :func:`carl_qgis.environment.base_dir`).
        make_plan: ``make_plan(wheelhouse, torch_preference) -> InstallPlan`` (default
            :func:`carl_qgis.installer.default_plan` with QGIS's proxy).
        run: the worker (default :func:`run_installation`).
        on_installed: called with the InstallResult after a successful installation.
    """

    def __init__(self, parent: QWidget | None = None, base: Path | None = None,
                 make_plan: Callable[[str | None, str], Any] | None = None,
                 run: Callable[..., Any] = run_installation,
                 on_installed: Callable[[Any], Any] | None = None) -> None:
        super().__init__(parent)
        self.base = base or environment.base_dir()
        self._make_plan = make_plan or self._default_plan
        self._run = run
        self._on_installed = on_installed
        self.job: BackgroundJob | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.setWindowTitle("Install CARL dependencies")
        self.setMinimumWidth(640)

        layout = QVBoxLayout(self)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        layout.addWidget(intro)

        form = QFormLayout()
        from carl_qgis.deps import qgis_python

        self.python_label = QLabel(qgis_python())
        form.addRow("QGIS's Python:", self.python_label)
        self.folder_label = QLabel(str(self.base))
        self.folder_label.setWordWrap(True)
        form.addRow("Install folder:", self.folder_label)
        self.current_label = QLabel(self._current_text())
        form.addRow("Installed now:", self.current_label)
        self.torch_combo = QComboBox()
        for key, text in self._torch_options():
            self.torch_combo.addItem(text, key)
        form.addRow("PyTorch:", self.torch_combo)
        layout.addLayout(form)

        self.online = QRadioButton("Download from the internet (pypi.org, download.pytorch.org; about 1-3 GB)")
        self.offline = QRadioButton("Offline: install from a folder of wheel files (.whl)")
        self.online.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.online)
        group.addButton(self.offline)
        layout.addWidget(self.online)
        row = QHBoxLayout()
        row.addWidget(self.offline)
        self.wheelhouse_edit = QLineEdit()
        self.wheelhouse_edit.setPlaceholderText("folder with torch-*.whl, carl_geo's dependencies, ...")
        row.addWidget(self.wheelhouse_edit, 1)
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        row.addWidget(self.browse_button)
        layout.addLayout(row)
        self.wheelhouse_edit.textEdited.connect(lambda _t: self.offline.setChecked(True))

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setMinimumHeight(160)
        layout.addWidget(self.log_view, 1)

        buttons = QHBoxLayout()
        self.install_button = QPushButton("Install")
        self.install_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.log_button = QPushButton("Open log folder")
        self.log_button.clicked.connect(self._open_logs)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.install_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.log_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)

    # -- set-up ---------------------------------------------------------------------------------
    @staticmethod
    def _torch_options() -> list[tuple[str, str]]:
        from carl_qgis.torch_choice import choose_torch

        try:
            auto = choose_torch("auto")
            auto_text = f"Automatic: {auto.label} ({auto.reason})"
        except Exception as e:  # noqa: BLE001 - detection must not break the dialog
            auto_text = f"Automatic (GPU detection failed: {e})"
        return [("auto", auto_text), ("cpu", "CPU only (smaller download, works everywhere)"),
                ("cuda", "NVIDIA CUDA (needs an NVIDIA GPU and a recent driver)")]

    def _current_text(self) -> str:
        record = environment.read_current(self.base)
        if not record or environment.current_env(self.base) is None:
            return "nothing yet"
        return (f"torch {record.get('torch')} ({record.get('torch_build')}), carl_geo {record.get('carl_geo')} "
                f"(installed {record.get('installed')})")

    def _default_plan(self, wheelhouse: str | None, torch_preference: str) -> Any:
        from carl_qgis.installer import default_plan
        from carl_qgis.network import qgis_proxy_url

        return default_plan(wheelhouse=wheelhouse, torch_preference=torch_preference, base=self.base,
                            proxy=qgis_proxy_url())

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of wheel files", self.wheelhouse_edit.text())
        if folder:
            self.wheelhouse_edit.setText(folder)
            self.offline.setChecked(True)

    def _open_logs(self) -> None:
        folder = self.base / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # -- running --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the installation with the dialog's choices (in a background thread)."""
        from carl_qgis.installer import InstallFailed

        wheelhouse = self.wheelhouse_edit.text().strip() if self.offline.isChecked() else None
        if self.offline.isChecked() and not (wheelhouse and os.path.isdir(wheelhouse)):
            self._set_status("Choose an existing folder of wheel files for the offline installation.", error=True)
            return
        try:
            plan = self._make_plan(wheelhouse, self.torch_combo.currentData())
        except InstallFailed as e:
            self._set_status(str(e), error=True)
            return
        self.log_view.clear()
        self.progress.setValue(0)
        self._set_running(True)
        self._set_status("Installing…")
        run = self._run

        def work(post: Callable[[str, Any], None], cancelled: Callable[[], bool]) -> Any:
            return run(plan, lambda p, t: post("progress", (p, t)), lambda line: post("line", line), cancelled)

        self.job = BackgroundJob(work, self._on_event, self._on_done)
        self.job.start()

    @property
    def running(self) -> bool:
        """An installation started from this dialog is running."""
        return self.job is not None and self.job.running

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self._set_status("Cancelling…")
            self.cancel_button.setEnabled(False)
            self.job.cancel()

    def _on_event(self, kind: str, value: Any) -> None:
        if kind == "progress":
            percent, text = value
            self.progress.setValue(int(round(percent)))
            self.status.setText(f"{text[:1].upper()}{text[1:]}…")
        elif kind == "line":
            self.log_view.appendPlainText(str(value))

    def _on_done(self, result: Any, error: BaseException | None) -> None:
        from carl_qgis.installer import InstallCancelled

        self._set_running(False)
        self.result, self.error = result, error
        if error is None:
            from carl_qgis.activation import use_installed_environment

            note = use_installed_environment(self.base)
            _refresh_provider()
            self.progress.setValue(100)
            v = getattr(result, "versions", {}) or {}
            self._set_status(f"Installed: torch {v.get('torch')}, {v.get('build', 'build unknown')} (CUDA available: "
                             f"{v.get('cuda')}), carl_geo {v.get('carl_geo')}. The CARL algorithms are ready."
                             + (f" {note}" if note else ""))
            self.current_label.setText(self._current_text())
            if self._on_installed is not None:
                self._on_installed(result)
        elif isinstance(error, InstallCancelled):
            self._set_status("Cancelled. The previous installation is unchanged.", error=True)
        else:
            self._set_status(f"Installation failed: {error}", error=True)

    def _set_running(self, running: bool) -> None:
        self.install_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.close_button.setEnabled(not running)
        self.torch_combo.setEnabled(not running)
        self.online.setEnabled(not running)
        self.offline.setEnabled(not running)
        self.wheelhouse_edit.setEnabled(not running)
        self.browse_button.setEnabled(not running)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020;" if error else "")

    def reject(self) -> None:  # Esc / window close: never leave a running installation behind
        if self.job is not None and self.job.running:
            self.cancel()
            return
        super().reject()


def _refresh_provider() -> None:
    """Rebuild the CARL algorithms (their sensor presets come from the newly installed carl_geo)."""
    try:
        from qgis.core import QgsApplication

        provider = QgsApplication.processingRegistry().providerById("carl")
        if provider is not None:
            provider.refreshAlgorithms()
    except Exception:  # noqa: BLE001 - a refresh problem must not hide a successful installation
        pass
