"""Why a raster read or write failed, in one phrase that names the real cause.

GDAL reports a full disk as ``TIFFAppendToStrip:Write error at scanline 256`` (the OS's reason only
goes to its log) and a broken VRT as ``Read failed. See previous exception for details.``:
:func:`io_cause` looks at the output folder (full, read-only, not writable) and at the whole
exception chain, and :func:`raster_io` turns such a failure into one
:class:`~carl_geo.errors.RasterIOError` naming the file the user gave and that cause.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from carl_geo.errors import CarlGeoError, RasterIOError

#: A write that failed with less than this free space on the output's file system is taken to
#: have failed for want of space.
FULL_BELOW_BYTES = 1 << 20


def _folder_problem(path: str | os.PathLike[str]) -> str | None:
    folder = Path(os.path.realpath(os.fspath(path))).parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return f"Read-only file system ({folder})"
    free = st.f_bavail * st.f_frsize
    if free < FULL_BELOW_BYTES:
        return f"No space left on device ({free // 1024} kB free in {folder})"
    if not os.access(folder, os.W_OK):
        return f"Permission denied (cannot write in {folder})"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def io_cause(exc: BaseException, path: str | os.PathLike[str] | None = None, writing: bool = False) -> str:
    """The most telling cause of a failed raster read / write.

    Args:
        exc: the exception (rasterio / GDAL error, OSError).
        path: the file being written (its folder is checked when ``writing``).
        writing: True for a write: a full, read-only or unwritable output folder is the cause.
    """
    if writing and path is not None:
        problem = _folder_problem(path)
        if problem:
            return problem
    texts: list[str] = []
    for e in _chain(exc):
        if isinstance(e, OSError) and e.strerror:
            texts.append(f"{e.strerror}" + (f": {e.filename}" if e.filename else ""))
            continue
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if text and "see previous exception" not in text.lower():
            texts.append(text)
    return texts[-1] if texts else type(exc).__name__


def is_io_error(exc: BaseException) -> bool:
    """A rasterio / GDAL error or an OSError from the system (not one of carl_geo's own messages)."""
    if isinstance(exc, CarlGeoError):
        return False
    import rasterio.errors

    if isinstance(exc, OSError) and not isinstance(exc, rasterio.errors.RasterioError):
        return exc.errno is not None  # not carl_geo's own FileNotFoundError("... not found")

    try:
        from rasterio._err import CPLE_BaseError
    except ImportError:  # pragma: no cover - rasterio without the private module
        CPLE_BaseError = rasterio.errors.RasterioError  # noqa: N806
    return isinstance(exc, (rasterio.errors.RasterioError, CPLE_BaseError))


@contextmanager
def raster_io(path: str | os.PathLike[str], action: str = "read") -> Iterator[None]:
    """Turn a rasterio / GDAL / OS failure inside the block into a :class:`RasterIOError`
    ``"cannot <action> <path>: <cause>"``; carl_geo's own errors pass through unchanged."""
    try:
        yield
    except Exception as e:
        if not is_io_error(e):
            raise
        raise RasterIOError(f"cannot {action} {os.fspath(path)}: {io_cause(e, path, writing=action == 'write')}") \
            from e
