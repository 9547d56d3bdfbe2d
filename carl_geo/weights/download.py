"""Resumable HTTP(S) download of one large file (standard library only).

The file grows as ``<target>.partial`` and is renamed to ``<target>`` by the caller only after it has
been verified, so a half-transferred file never looks like a finished one. A dropped connection is
retried with an HTTP ``Range`` request that continues where the transfer stopped (and across runs:
a ``.partial`` left by a killed process is resumed when it came from the same URL). An explicit
cancel deletes the partial file.

Network failures are turned into :class:`DownloadError` with one line that says what went wrong
(no network, proxy, TLS interception, HTTP status, disk full) and what to do.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from carl_geo.errors import Cancelled

#: ``progress(done_bytes, total_bytes) -> bool | None``; returning False cancels the download.
Progress = Callable[[int, int], "bool | None"]

USER_AGENT = "carl_geo-weights/1"
CHUNK_BYTES = 1 << 20
#: A lock file not refreshed for this long belongs to a download that died.
LOCK_STALE_S = 300.0


class DownloadError(OSError):
    """A download that failed; the message is one line naming the cause and the URL."""


class DownloadCancelled(Cancelled):
    """The progress callback asked to stop; nothing is left on disk (carl_geo's one
    :class:`~carl_geo.errors.Cancelled`)."""


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_file` fetched.

    Attributes:
        path: the complete file (still named ``<target>.partial``; the caller verifies and renames it).
        size: its size in bytes (the server's announced size).
        resumed_from: bytes already on disk when the first request of this call was sent.
        requests: HTTP requests made (1 + the retries after dropped connections).
        etag: the server's ETag, if any.
    """

    path: Path
    size: int
    resumed_from: int
    requests: int
    etag: str | None


def partial_path(target: str | os.PathLike) -> Path:
    target = Path(target)
    return target.with_name(target.name + ".partial")


def _state_path(target: Path) -> Path:
    return target.with_name(target.name + ".partial.json")


def remove_partial(target: str | os.PathLike) -> None:
    """Delete ``<target>.partial`` and its resume record."""
    for path in (partial_path(target), _state_path(Path(target))):
        path.unlink(missing_ok=True)


def _lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


def _lock_is_stale(lock: Path) -> bool:
    try:
        pid, host = lock.read_text(encoding="utf-8").split()[:2]
        age = time.time() - lock.stat().st_mtime
    except (OSError, ValueError):
        return True
    if age > LOCK_STALE_S:
        return True
    if host == socket.gethostname() and os.name == "posix":
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except (OSError, ValueError):
            return False
    return False


@contextmanager
def download_lock(target: str | os.PathLike) -> Iterator[Callable[[], None]]:
    """``<target>.lock`` while this process downloads ``target``; a second download of the same file
    (another QGIS window, a script) is refused instead of writing into the same partial file. A lock
    left by a process that died is taken over. Yields ``touch()``, to call while the download runs."""
    target = Path(target)
    lock = _lock_path(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if _lock_is_stale(lock):
                lock.unlink(missing_ok=True)
                continue
            raise DownloadError(f"another download of {target.name} is running ({lock} exists); wait for it to "
                                f"finish, or delete {lock} if none is running") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        break
    else:
        raise DownloadError(f"cannot take the download lock {lock}")
    last = [time.time()]

    def touch() -> None:
        if time.time() - last[0] > 10:
            last[0] = time.time()
            try:
                os.utime(lock)
            except OSError:
                pass

    try:
        yield touch
    finally:
        lock.unlink(missing_ok=True)


def describe_network_error(exc: BaseException, url: str) -> str:
    """One line naming the cause of a failed request to ``url`` and what to do about it."""
    host = urllib.request.urlparse(url).hostname or url
    reason = getattr(exc, "reason", exc)
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code == 407:
            return (f"the proxy refused the request to {host} (HTTP 407 proxy authentication required): "
                    "set HTTPS_PROXY=http://user:password@proxy:port")
        if exc.code in (401, 403):
            return f"{url} refused access (HTTP {exc.code} {exc.reason})"
        if exc.code == 404:
            return f"{url} does not exist (HTTP 404): the file was moved; check carl_geo for an update"
        return f"{url} answered HTTP {exc.code} {exc.reason}"
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(reason):
        return (f"the TLS certificate of {host} could not be verified ({getattr(reason, 'verify_message', reason)}): "
                "a proxy or firewall that inspects HTTPS sits in between; point SSL_CERT_FILE to your "
                "organisation's CA bundle, or download the file elsewhere and copy it")
    if isinstance(reason, ssl.SSLError):
        return f"TLS error talking to {host} ({reason}): a proxy or firewall may be interfering"
    if isinstance(reason, socket.gaierror):
        return (f"no network: the name {host} cannot be resolved ({reason.strerror or reason}); check the "
                "internet connection or proxy settings (HTTPS_PROXY)")
    if isinstance(reason, (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError)):
        return f"the connection to {host} failed ({reason}); check the internet connection or proxy settings"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"{host} did not answer in time ({reason}); the network is slow or blocked"
    if isinstance(exc, http.client.IncompleteRead):
        return f"the connection to {host} dropped mid-file ({len(exc.partial)} bytes in the last chunk)"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full"
    text = str(reason) or type(reason).__name__
    return f"download from {host} failed ({type(reason).__name__}: {text})"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (ssl.SSLCertVerificationError, socket.gaierror)):
        return False
    return isinstance(exc, (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
                            socket.timeout)) or isinstance(reason, (ConnectionError, TimeoutError))


def _read_state(target: Path, url: str) -> dict:
    try:
        state = json.loads(_state_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if state.get("url") == url else {}


def _write_state(target: Path, state: dict) -> None:
    _state_path(target).write_text(json.dumps(state), encoding="utf-8")


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(f"not enough disk space in {folder}: {needed / 1e9:.2f} GB more are needed, "
                            f"{free / 1e9:.2f} GB are free; free some space or set CARL_GEO_HOME to a larger disk")


def download_file(url: str, target: str | os.PathLike, *, progress: Progress | None = None,
                  retries: int = 5, timeout: float = 60.0, backoff: float = 2.0,
                  chunk_bytes: int = CHUNK_BYTES, opener: urllib.request.OpenerDirector | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> DownloadResult:
    """Fetch ``url`` into ``<target>.partial``, resuming with HTTP Range requests.

    Args:
        url: http(s) URL of the file.
        target: final path; the data go to ``<target>.partial`` (created with its folder).
        progress: ``progress(done, total)`` after every chunk (``total`` 0 when the server does not say);
            return False to cancel.
        retries: how many times a dropped connection or a 5xx answer is retried (each retry resumes).
        timeout: seconds without data after which a connection counts as dropped.
        backoff: seconds before the first retry, doubled for each further one (at most 60 s).
        opener: a ``urllib`` opener (e.g. with a proxy handler); default ``urllib.request.build_opener()``
            (honours ``HTTPS_PROXY``/``HTTP_PROXY``).

    Returns:
        a :class:`DownloadResult`; the complete file is still ``<target>.partial``.

    Raises:
        DownloadCancelled: ``progress`` returned False (the partial file was deleted).
        DownloadError: the transfer failed for good (the partial file is kept for a later resume), or
            another process is downloading the same file.
    """
    with download_lock(target) as touch:
        return _download(url, Path(target), progress, retries, timeout, backoff, chunk_bytes, opener, sleep, touch)


def _download(url: str, target: Path, progress: Progress | None, retries: int, timeout: float, backoff: float,
              chunk_bytes: int, opener: urllib.request.OpenerDirector | None, sleep: Callable[[float], None],
              touch: Callable[[], None]) -> DownloadResult:
    part = partial_path(target)
    part.parent.mkdir(parents=True, exist_ok=True)
    opener = opener or urllib.request.build_opener()
    state = _read_state(target, url)
    if not state or not part.exists():
        remove_partial(target)
        state = {"url": url}
    offset = part.stat().st_size if part.exists() else 0
    resumed_from, requests, failures = offset, 0, 0
    total = int(state.get("total") or 0)
    while True:
        if total and offset == total:
            break
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if state.get("etag"):
                headers["If-Range"] = state["etag"]
        requests += 1
        try:
            with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                if offset and resp.status == 206:
                    start, _, size = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").partition("/")
                    first = int(start.split("-")[0]) if start.split("-")[0].isdigit() else -1
                    if first != offset:
                        raise DownloadError(f"{url}: the server resumed at byte {first}, not {offset}")
                    total = int(size) if size.isdigit() else 0
                    mode = "ab"
                else:  # 200: the whole file (no Range support, or the file changed since the partial started)
                    offset, mode = 0, "wb"
                    total = int(resp.headers.get("Content-Length") or 0)
                etag = resp.headers.get("ETag")
                if etag and state.get("etag") not in (None, etag) and mode == "ab":
                    # the file changed on the server and it ignored If-Range: start again
                    remove_partial(target)
                    offset, state, total = 0, {"url": url}, 0
                    continue
                state.update(total=total, etag=etag)
                _write_state(target, state)
                if total:
                    _check_free_space(part.parent, total - offset)
                with open(part, mode) as f:
                    while True:
                        chunk = resp.read(chunk_bytes)
                        if not chunk:
                            break
                        f.write(chunk)
                        offset += len(chunk)
                        failures = 0
                        touch()
                        if progress is not None and progress(offset, total) is False:
                            f.close()
                            remove_partial(target)
                            raise DownloadCancelled(f"download of {url} cancelled")
            if total and offset < total:
                raise http.client.IncompleteRead(b"", total - offset)
            if not total:
                total = offset
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # the partial file is already complete (or the file shrank)
                length = _remote_size(opener, url, timeout)
                if length == offset:
                    total = offset
                    break
                remove_partial(target)
                offset, state, total = 0, {"url": url}, 0
                continue
            if not _retryable(e) or failures >= retries:
                raise DownloadError(describe_network_error(e, url)) from None
            failures += 1
        except OSError as e:
            if isinstance(e, DownloadError):
                raise
            if e.errno == errno.ENOSPC:
                raise DownloadError(f"the disk is full while writing {part}; free some space or set "
                                    "CARL_GEO_HOME to a larger disk") from None
            if getattr(e, "filename", None):  # a local file problem (permissions, ...), not the network
                raise DownloadError(f"cannot write {e.filename}: {e.strerror or e}") from None
            if not _retryable(e) or failures >= retries:
                raise DownloadError(f"{describe_network_error(e, url)}; {offset} bytes are kept in {part} and the "
                                    "next download resumes from there") from None
            failures += 1
        except http.client.HTTPException as e:
            if failures >= retries:
                raise DownloadError(f"{describe_network_error(e, url)}; {offset} bytes are kept in {part} and the "
                                    "next download resumes from there") from None
            failures += 1
        offset = part.stat().st_size if part.exists() else 0
        sleep(min(backoff * 2 ** (failures - 1), 60.0))
    size = part.stat().st_size
    if total and size != total:
        raise DownloadError(f"{url}: got {size} bytes, the server announced {total}")
    _state_path(target).unlink(missing_ok=True)
    return DownloadResult(part, size, resumed_from, requests, state.get("etag"))


def _remote_size(opener: urllib.request.OpenerDirector, url: str, timeout: float) -> int:
    """Content-Length of a HEAD request (0 when unknown)."""
    try:
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.headers.get("Content-Length") or 0)
    except (OSError, http.client.HTTPException, ValueError):
        return 0
