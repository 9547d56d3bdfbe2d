"""Run a long job in a thread and hand its events to the Qt main thread (no cross-thread Qt calls).

The worker posts ``(kind, value)`` events into a queue; a QTimer in the main thread drains it, so
widgets are only touched from the main thread, with Qt5 and Qt6 alike.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from qgis.PyQt.QtCore import QCoreApplication, QTimer

_DONE = "__done__"


class BackgroundJob:
    """``work(post, cancelled) -> result`` in a daemon thread.

    Args:
        work: the job; ``post(kind, value)`` sends an event, ``cancelled()`` says whether to stop.
        on_event: ``on_event(kind, value)`` in the main thread, for every posted event.
        on_done: ``on_done(result, error)`` in the main thread when ``work`` returned or raised.
    """

    def __init__(self, work: Callable[[Callable[[str, Any], None], Callable[[], bool]], Any],
                 on_event: Callable[[str, Any], None], on_done: Callable[[Any, BaseException | None], None],
                 interval_ms: int = 100) -> None:
        self._work, self._on_event, self._on_done = work, on_event, on_done
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._cancel = threading.Event()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._drain)
        self._thread: threading.Thread | None = None
        self.finished = False

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.finished

    def start(self) -> None:
        def run() -> None:
            try:
                result = self._work(self._post, self._cancel.is_set)
                self._queue.put((_DONE, (result, None)))
            except BaseException as e:  # noqa: BLE001 - handed to on_done in the main thread
                self._queue.put((_DONE, (None, e)))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._timer.start()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float = 600.0) -> bool:
        """Process Qt events until the job has finished (tests, scripts); False on timeout."""
        end = time.time() + timeout
        while not self.finished and time.time() < end:
            QCoreApplication.processEvents()
            time.sleep(0.02)
        return self.finished

    def _post(self, kind: str, value: Any) -> None:
        self._queue.put((kind, value))

    def _drain(self) -> None:
        while True:
            try:
                kind, value = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == _DONE:
                self._timer.stop()
                self.finished = True
                self._on_done(*value)
                return
            self._on_event(kind, value)
