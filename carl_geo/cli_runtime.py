"""How ``carl-geo`` ends a run: one line per error or warning, SIGTERM handled like Ctrl-C.

* :func:`error_line`: the one line (and exit status) for an error the user can act on: carl_geo's
  :class:`~carl_geo.errors.CarlGeoError` family (status 2), a file the system cannot read or write
  (OSError, rasterio / GDAL errors: status 1, naming the file and the real cause, e.g. "No space
  left on device"), a Lightning configuration error (status 2). Anything else is a bug and keeps
  its traceback (None).
* :func:`sigterm_as_interrupt`: SIGTERM (timeouts, ``kill``, SLURM, containers) raises
  :class:`Terminated`, a KeyboardInterrupt, so every writer cleans up its temporary file exactly
  as for Ctrl-C.
* :func:`quiet_gdal_log`: GDAL's error log lines (``_tiffWriteProc: No space left on device.``)
  are kept for the error line instead of being printed above it.
* :func:`one_line_warnings`: :class:`~carl_geo.errors.CarlGeoWarning` printed as
  ``carl-geo <command>: warning: ...``.

Imports nothing heavy (the CLI answers ``--help`` without torch).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from carl_geo.errors import CarlGeoError, CarlGeoWarning, RasterIOError

#: Exit status of a run stopped by Ctrl-C / SIGTERM (128 + signal number, as shells report it).
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: Exit status for bad input / settings (argparse's) and for a failed read / write.
EXIT_USAGE = 2
EXIT_IO = 1


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


#: GDAL's network settings that the command line and the worker set when the user has not: a ``/vsicurl/`` (or
#: ``https://``) input on a stalled server then ends with GDAL's error after these seconds instead of blocking in C,
#: where neither Ctrl-C nor SIGTERM reach Python.
GDAL_NETWORK_DEFAULTS = {"GDAL_HTTP_CONNECTTIMEOUT": "20", "GDAL_HTTP_TIMEOUT": "60", "GDAL_HTTP_MAX_RETRY": "2",
                         "GDAL_HTTP_RETRY_DELAY": "2"}


def set_gdal_network_defaults() -> None:
    """Set :data:`GDAL_NETWORK_DEFAULTS` in the environment where the user has not set them (GDAL reads its
    configuration options from the environment when it opens a connection)."""
    for key, value in GDAL_NETWORK_DEFAULTS.items():
        os.environ.setdefault(key, value)

#: Seconds after which a signal that arrived inside a callback from C code is raised again.
SIGNAL_RETRY_S = 0.2


def _inside_c_callback(frame: Any) -> bool:
    """Whether the main thread was interrupted inside a logging call. GDAL reports its errors (a stalled
    ``/vsicurl/`` server, retries) through rasterio's C callback into :mod:`logging`; an exception raised there
    cannot propagate ("Exception ignored in: 'rasterio._env.log_error'" and a traceback), so the signal waits."""
    depth = 0
    while frame is not None and depth < 8:
        if frame.f_code.co_filename.endswith(os.path.join("logging", "__init__.py")):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and SIGINT :class:`KeyboardInterrupt` in the main
    thread (no-op elsewhere). A signal that arrives while the main thread is inside a callback from C (GDAL's error
    log during a blocked open) is raised again :data:`SIGNAL_RETRY_S` later, until it lands in plain Python code:
    one line and the usual clean-up instead of an ignored exception's traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _inside_c_callback(frame):
            timer = threading.Timer(SIGNAL_RETRY_S, signal.raise_signal, (signum,))
            timer.daemon = True
            timer.start()
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    old_term = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def quiet_gdal_log(enabled: bool = True) -> Iterator[list[str]]:
    """Collect (instead of print) the messages rasterio logs for GDAL errors; yields the list."""
    log = logging.getLogger("rasterio")
    keep = _Keep()
    if not enabled:
        yield keep.messages
        return
    old_propagate = log.propagate
    log.addHandler(keep)
    log.propagate = False
    try:
        yield keep.messages
    finally:
        log.removeHandler(keep)
        log.propagate = old_propagate


@contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Print each :class:`CarlGeoWarning` as ``<prefix>: warning: <message>`` (others unchanged)."""
    original = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if issubclass(category, CarlGeoWarning):
            print(f"{prefix}: warning: {printable(message)}", file=file or sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", CarlGeoWarning)
            warnings.showwarning = show
            yield
    finally:
        warnings.showwarning = original


def _lightning_config_error(exc: BaseException) -> bool:
    mod = sys.modules.get("lightning.fabric.utilities.exceptions")
    return mod is not None and isinstance(exc, mod.MisconfigurationException)


def _user_cause(exc: BaseException) -> BaseException:
    """``exc``, or the user error it wraps when Lightning's CLI (jsonargparse) re-raised an error of a
    class's ``__init__`` as "Does not validate against any of the Union subtypes"."""
    tb, raised_by_jsonargparse = exc.__traceback__, False
    while tb is not None:
        raised_by_jsonargparse |= tb.tb_frame.f_globals.get("__name__", "").startswith("jsonargparse")
        tb = tb.tb_next
    if not raised_by_jsonargparse:
        return exc
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, (CarlGeoError, FileNotFoundError)):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return exc


def error_line(exc: BaseException, gdal_messages: list[str] | None = None) -> tuple[str, int] | None:
    """``(one line, exit status)`` for an error the user can act on, or None for a bug."""
    exc = _user_cause(exc)
    if isinstance(exc, RasterIOError):
        return _one_line(str(exc)), EXIT_IO
    if isinstance(exc, CarlGeoError):
        return _one_line(str(exc)), EXIT_USAGE
    if _lightning_config_error(exc):
        text = _one_line(str(exc))
        if "gpu" in text.lower() or "cuda" in text.lower():
            text += " (the configuration asks for a GPU; without one add --trainer.accelerator=cpu)"
        return text, EXIT_USAGE
    if isinstance(exc, OSError) or "rasterio" in type(exc).__module__:
        from carl_geo.io.failures import io_cause, is_io_error

        if isinstance(exc, OSError) and not is_io_error(exc):  # carl_geo's own "... not found"
            return _one_line(str(exc)), EXIT_USAGE
        cause = io_cause(exc)
        hint = _os_reason(gdal_messages or [])
        if hint and hint.lower() not in cause.lower():
            cause = f"{cause} ({hint})"
        return _one_line(cause), EXIT_IO
    return None


_OS_REASONS = ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded",
               "Input/output error", "No such file or directory", "File too large")


def _os_reason(messages: list[str]) -> str | None:
    for m in messages:
        for reason in _OS_REASONS:
            if reason.lower() in m.lower():
                return reason
    return None


def _one_line(text: str) -> str:
    return printable(" ".join(part.strip() for part in str(text).strip().splitlines() if part.strip()) or "error")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe_print(*values: Any, **kwargs: Any) -> None:
    """``print`` with :func:`printable` text (class and band names come from users' files)."""
    print(*(printable(v) for v in values), **kwargs)


def printable(text: str) -> str:
    """``text`` with terminal control characters (escape sequences from a file's band names, ...) shown as
    ``\\xNN`` instead of acting on the user's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
