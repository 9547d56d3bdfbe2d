"""Resumable HTTP(S) download of one large file (standard library only).

The file grows as ``<target>.carl-download`` and is renamed to ``<target>`` by the caller only after
it has been verified, so a half-transferred file never looks like a finished one. A dropped
connection is retried with an HTTP ``Range`` request that continues where the transfer stopped (and
across runs: a ``.carl-download`` left by a killed process is resumed when its resume record
``<target>.carl-download.json`` names the same URL). An explicit cancel deletes the partial file.

Names: the download writes and deletes only names with a ``.carl-`` suffix (the data, its resume
record and the lock ``<target>.carl-lock``), which no other program uses; a user's
``<target>.partial``, ``<target>.json`` or ``<target>.lock`` is never read, replaced or deleted.

Bounded: every read has a timeout (:data:`READ_TIMEOUT_S`), a stalled transfer is retried
:data:`STALL_RETRIES` times, and one call makes at most :data:`MAX_REQUESTS` requests and receives
at most :data:`MAX_TRANSFER_FACTOR` times the file's size, so a server that stalls, or that cuts
every transfer and ignores ``Range``, ends the download with one line instead of looping. A redirect
from https to plain http is refused.

Network failures are turned into :class:`DownloadError` with one line that says what went wrong
(no network, proxy, TLS interception, HTTP status, stall, disk full) and what to do.
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
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carl_geo.errors import Cancelled

#: ``progress(done_bytes, total_bytes) -> bool | None``; returning False cancels the download.
Progress = Callable[[int, int], "bool | None"]

USER_AGENT = "carl_geo-weights/1"
CHUNK_BYTES = 1 << 20
#: A lock file not refreshed for this long belongs to a download that died.
LOCK_STALE_S = 300.0
#: Suffixes of the names a download owns beside its target (data, resume record, lock).
PARTIAL_SUFFIX = ".carl-download"
STATE_SUFFIX = ".carl-download.json"
LOCK_SUFFIX = ".carl-lock"
#: Seconds without a byte from the server after which a request counts as stalled (``timeout=``).
READ_TIMEOUT_S = 30.0
#: How many stalled requests one download retries before it stops (``stall_retries=``).
STALL_RETRIES = 1
#: Requests one download may make in all, retries and restarts included (``max_requests=``).
MAX_REQUESTS = 100
#: Bytes one download may receive, as a multiple of the file's size (``max_transfer_factor=``).
MAX_TRANSFER_FACTOR = 3.0


class DownloadError(OSError):
    """A download that failed; the message is one line naming the cause and the URL."""


class DownloadCancelled(Cancelled):
    """The progress callback asked to stop; nothing is left on disk (carl_geo's one
    :class:`~carl_geo.errors.Cancelled`)."""


@dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_file` fetched.

    Attributes:
        path: the complete file (still named ``<target>.carl-download``; the caller verifies and renames it).
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


def download_part_path(target: str | os.PathLike) -> Path:
    """``<target>.carl-download``: the data of an unfinished download (a name only carl_geo uses)."""
    target = Path(target)
    return target.with_name(target.name + PARTIAL_SUFFIX)


def _state_path(target: Path) -> Path:
    return target.with_name(target.name + STATE_SUFFIX)


def remove_partial(target: str | os.PathLike) -> None:
    """Delete ``<target>.carl-download`` and its resume record (carl_geo's own names, nothing else)."""
    for path in (download_part_path(target), _state_path(Path(target))):
        path.unlink(missing_ok=True)


def lock_path(target: str | os.PathLike) -> Path:
    """``<target>.carl-lock``: held while a process downloads ``target``."""
    target = Path(target)
    return target.with_name(target.name + LOCK_SUFFIX)


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
    """``<target>.carl-lock`` while this process downloads ``target``; a second download of the same
    file (another QGIS window, a script) is refused instead of writing into the same partial file. A
    lock left by a process that died is taken over. Yields ``touch()``, to call while the download runs."""
    target = Path(target)
    lock = lock_path(target)
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


# -- redirects ------------------------------------------------------------------------------------------


def refuse_downgrade(url: str, new_url: str) -> None:
    """Raise :class:`DownloadError` when ``url`` (https) leads to ``new_url`` over plain http: the file
    would travel unprotected and could be replaced on the way, whatever the https address promised."""
    if (urllib.parse.urlsplit(url).scheme.lower() == "https"
            and urllib.parse.urlsplit(new_url).scheme.lower() == "http"):
        raise DownloadError(f"{url} redirected to {new_url}: carl_geo does not follow a redirect from https to "
                            "plain http (the file could be replaced on the way); ask the publisher, or fetch the "
                            "file by hand if you trust that address")


class NoDowngradeRedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, except that a redirect from https to plain http is refused."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        try:
            refuse_downgrade(req.full_url, newurl)
        except DownloadError:
            fp.close()
            raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def make_opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """``urllib.request.build_opener(*handlers)`` (proxies from ``HTTPS_PROXY``/``HTTP_PROXY``) that
    refuses a redirect from https to plain http; the default opener of :func:`download_file`."""
    return urllib.request.build_opener(NoDowngradeRedirectHandler(), *handlers)


# -- errors ---------------------------------------------------------------------------------------------


def describe_network_error(exc: BaseException, url: str) -> str:
    """One line naming the cause of a failed request to ``url`` and what to do about it."""
    host = urllib.parse.urlparse(url).hostname or url
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


def _is_stall(exc: BaseException) -> bool:
    """True for a read timeout: the server (or the network) stopped sending."""
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


def _kept(part: Path, offset: int) -> str:
    if not offset:
        return "nothing was kept"
    return f"{offset} bytes are kept in {part} and the next download resumes from there"


# -- the resume record ---------------------------------------------------------------------------------


def _read_state(target: Path, url: str) -> dict:
    try:
        state = json.loads(_state_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("url") == url else {}


def _write_state(target: Path, state: dict) -> None:
    _state_path(target).write_text(json.dumps(state), encoding="utf-8")


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(f"not enough disk space in {folder}: {needed / 1e9:.2f} GB more are needed, "
                            f"{free / 1e9:.2f} GB are free; free some space or set CARL_GEO_HOME to a larger disk")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


# -- one download ---------------------------------------------------------------------------------------


@dataclass
class _Budget:
    """What one :func:`download_file` call may spend, so that no server keeps it busy forever: failed
    requests in a row that got no further into the file, stalls, requests and bytes in all.

    Progress is the furthest byte the partial file ever reached in this call, not a chunk received: a
    server that ignores ``Range`` and cuts every transfer restarts at byte 0 and never gets further.
    Stalls are counted in all, progress or not: each costs a whole ``timeout``, and a server that
    sends a little and then stalls every time would otherwise take ``max_requests`` timeouts."""

    url: str
    part: Path
    retries: int
    stall_retries: int
    max_requests: int
    max_transfer_factor: float
    expected_size: int | None
    timeout: float
    requests: int = 0
    received: int = 0
    failures: int = 0
    stalls: int = 0
    furthest: int = 0

    def request(self) -> None:
        """Count a request; raise when the call has made :attr:`max_requests` already."""
        if self.requests >= self.max_requests:
            raise DownloadError(f"{self.url}: gave up after {self.requests} requests ({self.received} bytes received) "
                                f"without completing the file; {_kept(self.part, _size(self.part))}")
        self.requests += 1

    def receive(self, n: int, total: int, offset: int) -> None:
        """Count ``n`` received bytes (the partial file now has ``offset``); raise when the bytes of this
        call exceed :attr:`max_transfer_factor` x the file size."""
        self.received += n
        size = total or self.expected_size
        if size and self.received > self.max_transfer_factor * size:
            raise DownloadError(
                f"{self.url}: stopped after receiving {self.received} bytes in {self.requests} requests for a "
                f"{size}-byte file ({self.max_transfer_factor:g} times its size): the server keeps cutting the "
                f"transfer and does not resume it (HTTP Range); try again later; {_kept(self.part, offset)}")

    def failed(self, exc: BaseException, offset: int, total: int) -> None:
        """Count a failed request that left ``offset`` bytes on disk; raise :class:`DownloadError` (one
        line) when it is not worth retrying or its retries are spent."""
        if offset > self.furthest:
            self.furthest, self.failures = offset, 0
        stalled = _is_stall(exc)
        if (not _retryable(exc) or self.failures >= self.retries
                or (stalled and self.stalls >= self.stall_retries)):
            raise DownloadError(self.describe(exc, offset, total)) from None
        self.failures += 1
        self.stalls += stalled

    def cause(self, exc: BaseException, offset: int, total: int) -> str:
        """What went wrong with a request that left ``offset`` bytes on disk (one line)."""
        if not _is_stall(exc):
            return describe_network_error(exc, self.url)
        host = urllib.parse.urlparse(self.url).hostname or self.url
        where = f"at byte {offset}" + (f" of {total}" if total else "")
        return f"{host} sent no data for {self.timeout:g} s (the transfer stalled {where})"

    def describe(self, exc: BaseException, offset: int, total: int) -> str:
        """One line: the cause of ``exc`` and what is kept of the partial file."""
        if isinstance(exc, urllib.error.HTTPError) and not _retryable(exc):
            return self.cause(exc, offset, total)
        return f"{self.cause(exc, offset, total)}; {_kept(self.part, offset)}"


@dataclass
class _Job:
    """The settings of one :func:`download_file` call."""

    url: str
    target: Path
    opener: urllib.request.OpenerDirector
    timeout: float
    backoff: float
    chunk_bytes: int
    progress: Progress | None
    sleep: Callable[[float], None]
    log: Callable[[str], Any]
    touch: Callable[[], None]
    budget: _Budget
    expected_size: int | None
    state: dict = field(default_factory=dict)

    @property
    def part(self) -> Path:
        return download_part_path(self.target)


def download_file(url: str, target: str | os.PathLike, *, progress: Progress | None = None,
                  retries: int = 5, timeout: float | None = None, backoff: float = 2.0,
                  chunk_bytes: int = CHUNK_BYTES, opener: urllib.request.OpenerDirector | None = None,
                  sleep: Callable[[float], None] = time.sleep, expected_size: int | None = None,
                  restart: bool = False, stall_retries: int | None = None, max_requests: int | None = None,
                  max_transfer_factor: float | None = None,
                  log: Callable[[str], Any] | None = None) -> DownloadResult:
    """Fetch ``url`` into ``<target>.carl-download``, resuming with HTTP Range requests.

    Args:
        url: http(s) URL of the file.
        target: final path; the data go to ``<target>.carl-download`` (created with its folder).
        progress: ``progress(done, total)`` after every chunk (``total`` 0 when the server does not say);
            return False to cancel.
        retries: how many failed requests in a row that got no further into the file (dropped
            connection, 5xx answer) are retried; each retry resumes.
        timeout: seconds without data after which a request counts as stalled (default
            :data:`READ_TIMEOUT_S`).
        backoff: seconds before the first retry, doubled for each further one (at most 60 s).
        opener: a ``urllib`` opener (e.g. with a proxy handler); default :func:`make_opener` (honours
            ``HTTPS_PROXY``/``HTTP_PROXY``, refuses a redirect from https to plain http).
        expected_size: the file's published size, when known: a server that announces another size
            is refused before any byte is written.
        restart: delete this download's own partial file first and start from byte 0.
        stall_retries: stalled requests that are retried, in all (default :data:`STALL_RETRIES`).
        max_requests: requests in all (default :data:`MAX_REQUESTS`).
        max_transfer_factor: bytes received in all, as a multiple of the file's size (default
            :data:`MAX_TRANSFER_FACTOR`).
        log: receives one line per retry (default: nothing).

    Returns:
        a :class:`DownloadResult`; the complete file is still ``<target>.carl-download``.

    Raises:
        DownloadCancelled: ``progress`` returned False (the partial file was deleted).
        DownloadError: the transfer failed for good (the partial file is kept for a later resume and
            named in the message), a bound was reached, or another process is downloading the same file.
    """
    target = Path(target)
    timeout = READ_TIMEOUT_S if timeout is None else timeout
    budget = _Budget(url, download_part_path(target), retries, STALL_RETRIES if stall_retries is None else stall_retries,
                     MAX_REQUESTS if max_requests is None else max_requests,
                     MAX_TRANSFER_FACTOR if max_transfer_factor is None else max_transfer_factor,
                     expected_size, timeout)
    with download_lock(target) as touch:
        job = _Job(url, target, opener or make_opener(), timeout, backoff, chunk_bytes, progress, sleep,
                   log or (lambda _msg: None), touch, budget, expected_size)
        if restart:
            remove_partial(target)
        return _download(job)


class _Restart(Exception):
    """The partial file belongs to another version of the file: start again from byte 0."""


def _download(job: _Job) -> DownloadResult:
    part, budget = job.part, job.budget
    part.parent.mkdir(parents=True, exist_ok=True)
    job.state = _read_state(job.target, job.url)
    if not job.state or not part.exists():
        remove_partial(job.target)
        job.state = {"url": job.url}
    offset = budget.furthest = _size(part)
    resumed_from = offset
    total = int(job.state.get("total") or 0)
    while not (total and offset == total):
        budget.request()
        try:
            offset, total = _request(job, offset)
            break
        except _Restart:
            remove_partial(job.target)
            offset, total, job.state = 0, 0, {"url": job.url}
            continue
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # the partial file is already complete (or the file shrank)
                budget.request()
                if _remote_size(job.opener, job.url, job.timeout) == offset:
                    total = offset
                    break
                remove_partial(job.target)
                offset, total, job.state = 0, 0, {"url": job.url}
                continue
            error: BaseException = e
        except (OSError, http.client.HTTPException) as e:
            _raise_local(e, part)
            error = e
        offset, total = _size(part), int(job.state.get("total") or 0)
        budget.failed(error, offset, total)
        delay = min(job.backoff * 2 ** (budget.failures - 1), 60.0)
        job.log(f"{budget.cause(error, offset, total)}; retrying in {delay:g} s")
        job.sleep(delay)
    size = _size(part)
    if total and size != total:
        raise DownloadError(f"{job.url}: got {size} bytes, the server announced {total}; {_kept(part, size)}")
    _state_path(job.target).unlink(missing_ok=True)
    return DownloadResult(part, size, resumed_from, budget.requests, job.state.get("etag"))


def _raise_local(exc: BaseException, part: Path) -> None:
    """Raise the errors that retrying cannot fix: ours, a full disk, a file that cannot be written."""
    if isinstance(exc, DownloadError):
        raise exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        raise DownloadError(f"the disk is full while writing {part}; free some space or set "
                            "CARL_GEO_HOME to a larger disk") from None
    if isinstance(exc, OSError) and getattr(exc, "filename", None):  # a local file problem, not the network
        raise DownloadError(f"cannot write {exc.filename}: {exc.strerror or exc}") from None


def _request(job: _Job, offset: int) -> tuple[int, int]:
    """One request from byte ``offset``; returns ``(offset, total)`` once the file is complete.

    Raises:
        _Restart: the server's file changed since the partial file was started.
        DownloadError: a bad answer (wrong resume point, another size than the published one, https
            redirected to http) or a bound was reached.
        OSError, HTTPException: the transfer failed (the caller retries).
    """
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if job.state.get("etag"):
            headers["If-Range"] = job.state["etag"]
    with job.opener.open(urllib.request.Request(job.url, headers=headers), timeout=job.timeout) as resp:
        refuse_downgrade(job.url, resp.geturl())
        offset, total, mode = _answer(job, resp, offset)
        etag = resp.headers.get("ETag")
        if etag and job.state.get("etag") not in (None, etag) and mode == "ab":
            raise _Restart  # the file changed on the server and it ignored If-Range
        _check_announced(job, total, offset)
        job.state.update(total=total, etag=etag)
        _write_state(job.target, job.state)
        if total:
            _check_free_space(job.part.parent, total - offset)
        offset = _receive(job, resp, mode, offset, total)
    if total and offset < total:
        raise http.client.IncompleteRead(b"", total - offset)
    return offset, total or offset


def _answer(job: _Job, resp: Any, offset: int) -> tuple[int, int, str]:
    """``(offset, total, file mode)`` from the answer's status and headers: 206 continues at
    ``offset`` (checked against ``Content-Range``), 200 is the whole file from byte 0."""
    if resp.status == 206:
        start, _, size = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").partition("/")
        first = start.split("-")[0]
        if not first.isdigit() or int(first) != offset:
            said = f"from byte {first}" if first.isdigit() else "without a valid Content-Range"
            raise DownloadError(
                f"{job.url}: asked to resume at byte {offset}, the server answered {said}; the partial download "
                f"{job.part} was kept: run 'carl-geo weights download --force' (force=True) to delete it and "
                "start over")
        return offset, int(size) if size.isdigit() else 0, "ab"
    if resp.status != 200:
        raise DownloadError(f"{job.url}: unexpected answer HTTP {resp.status} {resp.reason}")
    # 200: the whole file (no Range support, or the file changed since the partial started)
    return 0, int(resp.headers.get("Content-Length") or 0), "wb"


def _check_announced(job: _Job, total: int, offset: int) -> None:
    """Refuse a server whose file has another size than the published one, before writing to disk."""
    if job.expected_size is not None and total and total != job.expected_size:
        kept = f"; {_kept(job.part, offset)}" if offset else ""
        raise DownloadError(f"{job.url} announces {total} bytes, the published file has {job.expected_size}: "
                            f"it serves another file, which carl_geo does not download{kept}")


def _receive(job: _Job, resp: Any, mode: str, offset: int, total: int) -> int:
    """Append the body of ``resp`` to the partial file; returns the new offset.

    Every byte is written as soon as it arrives (``read1``), so a transfer that stalls or drops keeps
    all it received; ``progress`` is called once per ``chunk_bytes`` and at the end."""
    limit = total or job.expected_size
    read = getattr(resp, "read1", resp.read)
    pending = 0
    with open(job.part, mode) as f:
        while piece := read(job.chunk_bytes - pending):
            f.write(piece)
            offset += len(piece)
            pending += len(piece)
            job.budget.receive(len(piece), total, offset)
            job.touch()
            if limit and offset > limit:
                raise DownloadError(f"{job.url} sent more than the {limit} bytes of the file; "
                                    f"{_kept(job.part, offset)}")
            if pending >= job.chunk_bytes:
                pending = 0
                _report(job, f, offset, total)
        if pending:
            _report(job, f, offset, total)
    return offset


def _report(job: _Job, f: Any, offset: int, total: int) -> None:
    """Call ``progress``; when it returns False, delete the partial file and raise DownloadCancelled."""
    if job.progress is not None and job.progress(offset, total) is False:
        f.close()
        remove_partial(job.target)
        raise DownloadCancelled(f"download of {job.url} cancelled")


def _remote_size(opener: urllib.request.OpenerDirector, url: str, timeout: float) -> int:
    """Content-Length of a HEAD request (0 when unknown)."""
    try:
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
        with opener.open(req, timeout=timeout) as resp:
            return int(resp.headers.get("Content-Length") or 0)
    except (OSError, http.client.HTTPException, ValueError):
        return 0
