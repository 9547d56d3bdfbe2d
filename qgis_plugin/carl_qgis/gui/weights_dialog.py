"""The "Download CARL-SSL weights" dialog: progress in MB with speed and time left, Cancel (deletes
the partial file), resume of an interrupted download, verification. The work is
:func:`carl_geo.weights.download_weights`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qgis.PyQt.QtWidgets import (
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from carl_qgis.gui.background import BackgroundJob

MB = 1e6


def format_progress(done: int, total: int, seconds: float) -> str:
    """``"412.3 MB of 1330.0 MB, 8.2 MB/s, 1 min 52 s left"``."""
    rate = done / seconds if seconds > 0 else 0.0
    text = f"{done / MB:.1f} MB" + (f" of {total / MB:.1f} MB" if total else "")
    if rate > 0:
        text += f", {rate / MB:.1f} MB/s"
        if total and done < total:
            left = (total - done) / rate
            text += f", {int(left // 60)} min {int(left % 60)} s left" if left >= 60 else f", {int(left)} s left"
    return text


class WeightsDialog(QDialog):
    """Args:
        weights: the ``carl_geo.weights`` module (default: imported; the dialog says to install
            the dependencies first when that fails).
        spec_name: which published file (default ``carl_ssl``).
        missing: why carl_geo cannot be used (the dialog then only offers the installer).
        open_installer: called by the "Install CARL dependencies…" button shown when carl_geo is missing.
    """

    def __init__(self, parent: QWidget | None = None, weights: Any = None, spec_name: str = "carl_ssl",
                 missing: str | None = None, open_installer: Callable[[], Any] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Download CARL-SSL weights")
        self.setMinimumWidth(600)
        self.job: BackgroundJob | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._started = 0.0
        self._resumed = 0
        if weights is None and missing is None:
            try:
                from carl_qgis.algorithms.base import import_carl

                weights = import_carl("carl_geo.weights")
            except Exception as e:  # noqa: BLE001 - shown in the dialog
                missing = str(e)
        self.weights = weights
        layout = QVBoxLayout(self)
        self.info = QLabel()
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        form = QFormLayout()
        self.url_label = QLabel()
        self.path_label = QLabel()
        self.state_label = QLabel()
        for label in (self.url_label, self.path_label, self.state_label):
            label.setWordWrap(True)
        form.addRow("From:", self.url_label)
        form.addRow("To:", self.path_label)
        form.addRow("Now:", self.state_label)
        layout.addLayout(form)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        layout.addWidget(self.progress)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)

        if weights is None:
            self.info.setText("carl_geo is not installed in QGIS's Python yet, so the weights cannot be downloaded "
                              "and checked. Install the CARL dependencies first.")
            self.status.setText(str(missing or "")[:300])
            self.download_button.setEnabled(False)
            if open_installer is not None:
                install = QPushButton("Install CARL dependencies…")
                install.clicked.connect(lambda: (self.reject(), open_installer()))
                buttons.insertWidget(0, install)
            return
        self.spec = weights.get_weights_file(spec_name)
        self.info.setText(
            f"{self.spec.description}, {self.spec.size_hint}. Downloaded once into carl_geo's cache and checked "
            "before use (size, SHA-256, every tensor name and shape against the published layout). An interrupted "
            "download resumes where it stopped; Cancel deletes the partial file. Set CARL_GEO_HOME to use another "
            "folder.")
        self.url_label.setText(self.spec.url)
        self.refresh_state()

    def refresh_state(self) -> None:
        s = self.weights.status(self.spec)
        self.path_label.setText(s["path"])
        if s["present"]:
            problem = self.weights.quick_check(s["path"])
            state = f"present ({s['size'] / MB:.1f} MB)" + (f", but {problem}" if problem else "")
        elif s["partial_bytes"]:
            state = f"partial download of {s['partial_bytes'] / MB:.1f} MB: Download resumes it"
        else:
            state = "not downloaded yet"
        if self.weights.offline():
            state += "; downloads are turned off (CARL_GEO_OFFLINE)"
        self.state_label.setText(state)

    def start(self, force: bool = False) -> None:
        """Download (or resume) and verify, in a child process (:mod:`carl_qgis.child`: verifying loads the
        checkpoint with torch, which never enters QGIS's process), watched from a background thread."""
        from carl_qgis import child

        self._set_running(True)
        self.status.setText("Connecting…")
        self.status.setStyleSheet("")
        self._started = time.time()
        self._resumed = int(self.weights.status(self.spec)["partial_bytes"])

        def work(post: Callable[[str, Any], None], cancelled: Callable[[], bool]) -> Any:
            result = child.run_job("weights", {"force": bool(force)}, on_progress=lambda d, t: post("progress", (d, t)),
                                   on_log=lambda m: post("line", m), is_cancelled=cancelled)
            return result["path"]

        self.job = BackgroundJob(work, self._on_event, self._on_done)
        self.job.start()

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling…")
            self.job.cancel()

    def _on_event(self, kind: str, value: Any) -> None:
        if kind == "progress":
            done, total = value
            if total:
                self.progress.setValue(int(1000 * done / total))
            self.status.setText("Downloading: " + format_progress(done - self._resumed, total - self._resumed
                                                                  if total else 0, time.time() - self._started)
                                + (f" (resumed after {self._resumed / MB:.1f} MB)" if self._resumed else ""))
        elif kind == "line":
            self.state_label.setText(str(value))

    def _on_done(self, result: Any, error: BaseException | None) -> None:
        self._set_running(False)
        self.result, self.error = result, error
        if error is None:
            self.progress.setValue(1000)
            self.status.setText(f"Ready and verified: {result}. Choose 'Use the published CARL-SSL backbone' in "
                                "'CARL train from polygons' or 'CARL extract features'.")
        elif getattr(error, "cancelled", False) or isinstance(error, self.weights.DownloadCancelled):
            self.progress.setValue(0)
            self.status.setText("Cancelled; the partial file was deleted.")
            self.status.setStyleSheet("color: #b00020;")
        else:
            self.status.setText(f"Download failed: {error}")
            self.status.setStyleSheet("color: #b00020;")
        self.refresh_state()

    def _set_running(self, running: bool) -> None:
        self.download_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.close_button.setEnabled(not running)

    def reject(self) -> None:
        if self.job is not None and self.job.running:
            self.cancel()
            return
        super().reject()
