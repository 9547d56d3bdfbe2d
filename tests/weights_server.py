"""A loopback HTTP file server for the weights-download tests (127.0.0.1 only, never the internet).

It serves one file with ``Content-Length``, ``ETag`` and byte ``Range`` support, records every
request, and can misbehave on purpose: drop the connection after some bytes (once, or on every
transfer), serve slowly, stall, ignore ``Range``, resume at the wrong byte, redirect, or answer an
HTTP error. Every misbehaviour ends by itself: a stalled transfer waits at most ``stall_s`` seconds
and returns as soon as :func:`serve` ends.
Also builds a small checkpoint in the published CARL-SSL layout (``model.*`` student and
``teacher.*`` EMA keys) from the tiny config with random weights.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class ServedFile:
    """What the server serves and how it misbehaves.

    Attributes:
        data: the file's bytes.
        drops: byte counts; request i (0-based) that sends a body stops after ``drops[i]`` bytes of it
            and closes the connection (a dropped transfer). Requests past the list are complete.
        ranges: whether Range requests are honoured (else the whole file is sent with 200).
        delay: seconds to sleep after each ``chunk`` bytes (a slow network).
        status: answer every GET with this HTTP status (an error page) instead of the file.
        cut_every: every transfer stops after this many bytes of its body and the connection closes
            (a server that cuts every transfer).
        stall_after: after this many bytes of a body the server sends nothing more (a stalled
            transfer) for ``stall_s`` seconds or until :func:`serve` ends, then closes the connection.
        bad_resume: a Range request is answered 206 from byte 0 (a ``Content-Range`` that does not
            start where the client asked).
        redirect: answer requests for any other path with 302 to this URL.
        requests: ``(method, Range header or None)`` of every request, in order.
    """

    data: bytes
    drops: list[int] = field(default_factory=list)
    ranges: bool = True
    delay: float = 0.0
    chunk: int = 64 * 1024
    status: int = 200
    cut_every: int | None = None
    stall_after: int | None = None
    stall_s: float = 5.0
    bad_resume: bool = False
    redirect: str | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:16] + '"'


def _handler(served: ServedFile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            served.requests.append(("HEAD", self.headers.get("Range")))
            self.send_response(200)
            self.send_header("Content-Length", str(len(served.data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            served.requests.append(("GET", rng))
            if served.redirect and urllib.parse.urlsplit(served.redirect).path != self.path:
                self.send_response(302)
                self.send_header("Location", served.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if served.status != 200:
                self.send_error(served.status)
                return
            data, start = served.data, 0
            if rng and served.ranges:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0 if served.bad_resume else start
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", served.etag)
            self.end_headers()
            self._send_body(body)

        def _send_body(self, body: bytes) -> None:
            body_requests = sum(1 for m, _ in served.requests if m == "GET")
            limit = served.drops[body_requests - 1] if body_requests - 1 < len(served.drops) else served.cut_every
            if served.stall_after is not None:
                limit = served.stall_after if limit is None else min(limit, served.stall_after)
            sent = 0
            try:
                while sent < len(body):
                    n = served.chunk if limit is None else min(served.chunk, limit - sent)
                    if n <= 0:
                        break
                    self.wfile.write(body[sent:sent + n])
                    sent += n
                    if served.delay:
                        self.wfile.flush()
                        time.sleep(served.delay)
                if limit is not None:
                    self.wfile.flush()
                    if served.stall_after is not None and sent >= served.stall_after:
                        served.stop.wait(served.stall_s)  # silent: neither data nor a closed connection
                    self.close_connection = True
                    self.connection.shutdown(2)  # the transfer drops mid-file
            except OSError:  # the client went away (broken pipe, reset, already shut down)
                return

    return Handler


class LoopbackHTTPSHandler(urllib.request.HTTPSHandler):
    """Opens ``https://`` URLs over plain TCP, so that the loopback server (which has no certificate) can
    stand in for an https server: the redirect rules look only at the URL's scheme."""

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(http.client.HTTPConnection, req)


@contextmanager
def serve(served: ServedFile, path: str = "/ssl_checkpoint_carl.ckpt") -> Iterator[str]:
    """Serve ``served`` on 127.0.0.1 (a free port) in a thread; yields the file's URL."""
    served.stop.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        served.stop.set()  # a stalled transfer ends now
        server.shutdown()
        server.server_close()
        thread.join(5)


def tiny_ssl_checkpoint(path: Path, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """A Lightning-style checkpoint in the published CARL-SSL layout (``model.<backbone>`` student,
    ``teacher.<backbone>`` EMA copy) built from the tiny config with random weights.

    Returns:
        the file and the student backbone state dict (for comparing what a loader returns).
    """
    import torch

    import carl_geo

    torch.manual_seed(seed)
    student = carl_geo.CARL(carl_geo.tiny_config()).state_dict()
    torch.manual_seed(seed + 1)
    teacher = carl_geo.CARL(carl_geo.tiny_config()).state_dict()
    state = {f"model.{k}": v for k, v in student.items()} | {f"teacher.{k}": v for k, v in teacher.items()}
    # hyper_parameters as upstream stores them: loaders read the architecture from model_kwargs
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.6.6", "state_dict": state,
                "hyper_parameters": {"model_kwargs": carl_geo.tiny_config().to_upstream()}}, path)
    return path, student
