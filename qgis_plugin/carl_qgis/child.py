"""Run carl_geo's heavy work in a child process (``python -m carl_geo.worker``), never in QGIS's own process.

QGIS loads its own GEOS, PROJ and GDAL; the plugin's environment brings torch and wheels of shapely, pyproj and
rasterio with their own copies of those libraries. Loaded into one process they clash (QGIS 3.22 died on signal 11
inside shapely, and aborted at exit with "double free or corruption" after pyproj was loaded). So training,
prediction and feature extraction run in a child process of the environment's own Python, which streams progress,
log lines and warnings back (:mod:`carl_geo.worker`'s protocol); Cancel ends the child (SIGTERM, then kill); a
crash of the child is one error line naming its log file, and QGIS keeps running.

:func:`run_job` has no QGIS dependency (callbacks in, a dict out); :func:`run_with_feedback` binds it to a
``QgsProcessingFeedback``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Environment variable naming the Python that runs the worker (default: the installed environment's, else the
#: Python QGIS runs).
PYTHON_VARIABLE = "CARL_QGIS_PYTHON"
#: ``1`` runs the jobs inside QGIS's process instead (where that is known to be safe, or for tests that patch
#: carl_geo in the running process); the default is the child process.
IN_PROCESS_VARIABLE = "CARL_QGIS_IN_PROCESS"
#: Seconds a cancelled child gets to clean up (remove its temporary files) before it is killed.
TERMINATE_GRACE_S = 20.0
#: Lines of the child's stderr kept for an error message.
TAIL_LINES = 12


class WorkerError(Exception):
    """The job failed: ``text`` is one line for the user; ``log`` the child's log file; ``kind`` the error's
    class in carl_geo (None for a crash or a cancel)."""

    def __init__(self, text: str, *, log: Path | None = None, cancelled: bool = False, crashed: bool = False,
                 status: int | None = None, kind: str | None = None) -> None:
        super().__init__(text)
        self.text, self.log, self.cancelled, self.crashed, self.status = text, log, cancelled, crashed, status
        #: the library's error class name (e.g. ``"ModelTaskError"``), so callers never match message words
        self.kind = kind


def worker_python() -> str:
    """The interpreter of the worker: ``$CARL_QGIS_PYTHON``, else the installed environment's
    (:mod:`carl_qgis.environment`), else the Python behind QGIS."""
    explicit = os.environ.get(PYTHON_VARIABLE)
    if explicit:
        return explicit
    from carl_qgis import deps, environment

    env = environment.current_env()
    if env is not None:
        return str(environment.env_python(env))
    return deps.qgis_python()


def child_environment() -> dict[str, str]:
    """The child's environment variables: QGIS's, without what would make the child load QGIS's Python or its
    Qt platform plugin settings."""
    env = dict(os.environ)
    for name in ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    try:  # QGIS's proxy (Settings > Options > Network) for the weights download
        from carl_qgis.network import qgis_proxy_url

        proxy = qgis_proxy_url()
    except Exception:  # noqa: BLE001 - outside QGIS: the environment's proxy variables apply
        proxy = None
    if proxy:
        env["HTTP_PROXY"] = env["HTTPS_PROXY"] = env["http_proxy"] = env["https_proxy"] = proxy
    return env


def log_folder() -> Path:
    """Where the worker logs go: ``<environment base>/logs``."""
    from carl_qgis import environment

    folder = environment.base_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def run_job(job: str, args: dict[str, Any], *, on_progress: Callable[[int, int], None] | None = None,
            on_log: Callable[[str], None] | None = None, on_warning: Callable[[str], None] | None = None,
            is_cancelled: Callable[[], bool] | None = None, python: str | None = None,
            log_path: Path | None = None, poll_s: float = 0.1,
            interface: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``job`` with ``args`` in ``python -m carl_geo.worker`` and relay its events. ``interface``
    (``{"name": "gui", "labels": {...}}``) makes the library's messages name the dialog's parameters.

    Returns:
        the job's result (the ``result`` event without its name).

    Raises:
        WorkerError: the job's own error line (bad input, file error), a cancel (``cancelled``), or the child
            ending without a result (``crashed``; the message names the exit code or signal and the log file).
    """
    if os.environ.get(IN_PROCESS_VARIABLE, "") not in ("", "0"):
        return run_in_process(job, args, on_progress=on_progress, on_log=on_log, on_warning=on_warning,
                              is_cancelled=is_cancelled, interface=interface)
    python = python or worker_python()
    log_path = log_path or log_folder() / f"worker-{job}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", errors="replace") as log_file:
        request = _request(job, args, interface)
        log_file.write(f"{python} -m carl_geo.worker\n{json.dumps(request, default=str)}\n")
        log_file.flush()
        try:
            proc = subprocess.Popen([python, "-m", "carl_geo.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log_file, env=child_environment(), cwd=str(log_path.parent),
                                    text=True, encoding="utf-8", errors="replace",
                                    creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except OSError as e:
            raise WorkerError(f"cannot start the CARL worker ({python}: {e.strerror or e}); run Plugins > CARL > "
                              "Install CARL dependencies...", log=log_path) from None
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request, default=str) + "\n")
            proc.stdin.close()
        except OSError:
            pass  # the child ended at once: its exit status and log tell why
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, name="carl-worker-reader", daemon=True)
        reader.start()
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        cancelled = False
        ended = False
        while not ended:
            if not cancelled and is_cancelled is not None and is_cancelled():
                cancelled = True
                _stop(proc)
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                ended = True
                continue
            try:
                event = json.loads(line)
            except ValueError:
                log_file.write(f"(stdout) {line}")
                continue
            kind = event.pop("event", None)
            if kind == "progress" and on_progress is not None:
                on_progress(int(event.get("done", 0)), int(event.get("total", 1)))
            elif kind == "log" and on_log is not None:
                on_log(str(event.get("text", "")))
            elif kind == "warning" and on_warning is not None:
                on_warning(str(event.get("text", "")))
            elif kind == "result":
                result = event
            elif kind == "error":
                error = event
        code = proc.wait()
        reader.join(timeout=5)
        if not reader.is_alive():  # the pipe is drained: close it here rather than leave it to the collector
            proc.stdout.close()
    if cancelled or (error is not None and error.get("cancelled")):
        raise WorkerError("cancelled; nothing was written", log=log_path, cancelled=True, status=code)
    if error is not None:
        text = str(error.get("text", "unknown error"))
        if error.get("bug"):
            text += f" (an internal error; the traceback is in {log_path})"
        raise WorkerError(text, log=log_path, status=int(error.get("status", code or 1)), kind=error.get("kind"))
    if result is None or code != 0:
        raise WorkerError(f"the CARL worker process stopped unexpectedly ({_describe_exit(code)}); QGIS is not "
                          f"affected. Its log: {log_path}", log=log_path, crashed=True, status=code)
    return result


def _request(job: str, args: dict[str, Any], interface: dict[str, Any] | None) -> dict[str, Any]:
    """The worker's job line (:mod:`carl_geo.worker`): job, args and, when given, the caller's interface."""
    return {"job": job, "args": args, **({"interface": interface} if interface else {})}


def run_in_process(job: str, args: dict[str, Any], *, on_progress: Callable[[int, int], None] | None = None,
                   on_log: Callable[[str], None] | None = None, on_warning: Callable[[str], None] | None = None,
                   is_cancelled: Callable[[], bool] | None = None,
                   interface: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`run_job` inside this process (:data:`IN_PROCESS_VARIABLE`): the same worker code and events, Cancel
    through the progress callback."""
    import importlib

    worker = importlib.import_module("carl_geo.worker")
    found: dict[str, dict[str, Any]] = {}

    class Relay(worker.Events):
        def send(self, event: str, **fields: Any) -> None:
            if event == "progress" and on_progress is not None:
                on_progress(int(fields["done"]), int(fields["total"]))
            elif event == "log" and on_log is not None:
                on_log(str(fields["text"]))
            elif event == "warning" and on_warning is not None:
                on_warning(str(fields["text"]))
            elif event in ("result", "error"):
                found[event] = fields

    request = _request(job, args, interface)
    status = worker.run(request, Relay(None, cancelled=is_cancelled))
    error = found.get("error")
    if error is not None:
        raise WorkerError(str(error.get("text")), cancelled=bool(error.get("cancelled")), status=status,
                          kind=error.get("kind"))
    return found.get("result", {})


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the worker removes its temporary files), then kill after :data:`TERMINATE_GRACE_S`."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
    except OSError:
        return

    def reap() -> None:
        try:
            proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()

    threading.Thread(target=reap, name="carl-worker-reaper", daemon=True).start()


def run_with_feedback(job: str, args: dict[str, Any], feedback: Any, *, start: float = 0.0,
                      span: float = 100.0, python: str | None = None) -> dict[str, Any]:
    """:func:`run_job` reporting to a ``QgsProcessingFeedback`` (progress mapped onto ``start .. start + span``
    percent, log lines as info, warnings in the warning colour, Cancel ending the child); errors become one
    ``QgsProcessingException`` line."""
    from qgis.core import QgsProcessingException

    def progress(done: int, total: int) -> None:
        feedback.setProgress(start + span * min(1.0, done / max(1, total)))

    def warning(text: str) -> None:
        push = getattr(feedback, "pushWarning", None)  # QGIS >= 3.20
        if push is not None:
            push(text)
        else:
            feedback.reportError(text, fatalError=False)

    try:
        return run_job(job, args, on_progress=progress, on_log=feedback.pushInfo, on_warning=warning,
                       is_cancelled=feedback.isCanceled, python=python)
    except WorkerError as e:
        raise QgsProcessingException(e.text) from None

