"""A real HTTP server on 127.0.0.1 serving a HiPS directory, with fault injection.

Use it from tests through the ``hips_server`` fixture of ``tests/conftest.py``, or
directly::

    from hips_server import Fault, HipsServer

    with HipsServer(tmp_path / "survey") as server:
        server.inject("Norder3/*", Fault.status(503), Fault.reset())
        store = HttpTileStore(server.url, cache_dir=False, backoff=0.01)
        ...
        assert server.count("Norder3/Dir0/Npix0.fits") == 3

Faults are planned per path. :meth:`HipsServer.inject` takes a glob pattern (matched
with :func:`fnmatch.fnmatchcase` against the path relative to the served directory,
without a leading slash) and a sequence of :class:`Fault`. The *n*-th request for a
matching path gets the *n*-th fault; once the sequence is used up the path is served
normally, or with ``then=`` (a fault applied to every later request) if given. Each
path counts its own requests, so ``inject("*", Fault.status(503))`` makes the first
request of *every* file fail once. Later rules take precedence over earlier ones.

Fault kinds (see the :class:`Fault` constructors): an HTTP status with an optional
``Retry-After``; a connection reset (the socket is closed with no response); a
truncated body (``Content-Length`` announces the full size, part is sent, then the
socket is closed); a corrupt body (random bytes of the right length, the same bytes on
every request unless ``vary=True``); a slow reply (sleep, then serve normally); a drip
(the headers at once, then the body one byte every ``interval`` seconds: a slow-loris
server); a head drip (the status line and headers themselves a byte at a time); a
redirect to any ``Location``; and a body given by the test (``Fault.body``, e.g. a gzip
bomb) instead of the file.

The server speaks HTTP/1.1 with keep-alive, so clients' connection pooling is
exercised, and only ever binds 127.0.0.1. With ``tls=(certfile, keyfile)`` it speaks
HTTPS instead (``url`` then starts with ``https://``).
"""

from __future__ import annotations

import fnmatch
import logging
import random
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = ["Fault", "HipsServer", "RequestRecord"]

logger = logging.getLogger(__name__)

FaultKind = Literal["status", "reset", "truncate", "corrupt", "slow", "drip", "drip_head", "redirect", "body"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour, applied to one request. Build it with the class methods."""

    kind: FaultKind
    code: int = 503
    retry_after: str | None = None
    fraction: float = 0.5
    delay: float = 0.0
    vary: bool = False
    location: str = ""
    payload: bytes = b""

    @classmethod
    def status(cls, code: int, *, retry_after: float | str | None = None) -> Fault:
        """Answer HTTP ``code`` with a short text body and, if given, a ``Retry-After`` header.

        ``retry_after`` may be seconds (a number) or a preformatted HTTP-date string.
        """
        header = None if retry_after is None else (retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        return cls("status", code=code, retry_after=header)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection (with a TCP reset) before sending any response."""
        return cls("reset")

    @classmethod
    def truncate(cls, fraction: float = 0.5) -> Fault:
        """Announce the full ``Content-Length``, send ``fraction`` of the body, then close."""
        return cls("truncate", fraction=fraction)

    @classmethod
    def corrupt(cls, *, vary: bool = False) -> Fault:
        """Send random bytes with the right ``Content-Length`` instead of the file.

        The bytes depend only on the length (the same garbage each time) unless ``vary``,
        which draws new bytes for every request.
        """
        return cls("corrupt", vary=vary)

    @classmethod
    def drip(cls, interval: float) -> Fault:
        """Send the headers at once, then the body one byte every ``interval`` seconds."""
        return cls("drip", delay=interval)

    @classmethod
    def drip_head(cls, interval: float) -> Fault:
        """Send the status line and headers themselves one byte every ``interval`` seconds."""
        return cls("drip_head", delay=interval)

    @classmethod
    def redirect(cls, location: str, code: int = 302) -> Fault:
        """Answer ``code`` with ``Location: location`` (sent verbatim, even if malformed)."""
        return cls("redirect", code=code, location=location)

    @classmethod
    def body(cls, payload: bytes) -> Fault:
        """Serve ``payload`` (status 200, its own ``Content-Length``) instead of the file."""
        return cls("body", payload=payload)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Sleep ``delay`` seconds before answering normally (to trip a client's read timeout)."""
        return cls("slow", delay=delay)


@dataclass(frozen=True)
class RequestRecord:
    """One request the server received.

    ``time`` is :func:`time.monotonic` at arrival; ``path`` is relative to the served
    directory; ``fault`` is the injected fault kind (``None`` if served normally);
    ``status`` is the status sent (``None`` for a reset).
    """

    time: float
    method: str
    path: str
    fault: FaultKind | None
    status: int | None
    user_agent: str | None = None


@dataclass
class _Rule:
    pattern: str
    faults: tuple[Fault, ...]
    then: Fault | None
    seen: Counter[str] = field(default_factory=Counter)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stall
    server: _Server
    timeout = 30  # idle keep-alive connections end after this many seconds

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError):
            pass  # the client gave up (as it should after a slow reply): nothing to report

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        received = time.monotonic()
        relpath = unquote(urlsplit(self.path).path).lstrip("/")
        fault = owner._next_fault(relpath)
        kind = None if fault is None else fault.kind
        body = owner._read(relpath)
        status = 200 if body is not None else 404
        if fault is not None and fault.kind == "status":
            status = fault.code
        owner._record(
            RequestRecord(
                received,
                self.command,
                relpath,
                kind,
                None if kind == "reset" else status,
                self.headers.get("User-Agent"),
            )
        )
        if fault is not None and fault.kind == "slow":
            if owner._stopping.wait(fault.delay):
                return
            fault = None
        if fault is not None and fault.kind == "drip_head":
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body or b'')}\r\nX-Padding: {'x' * 2000}\r\n\r\n"
            for i in range(len(head)):
                self.wfile.write(head[i].encode("latin-1"))
                self.wfile.flush()
                if owner._stopping.wait(fault.delay):
                    return
            self.wfile.write(body or b"")
            return
        if fault is not None and fault.kind == "redirect":
            self.send_response(fault.code)
            self.send_header("Location", fault.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault is not None and fault.kind == "body":
            body = fault.payload
        if fault is not None and fault.kind == "reset":
            self._reset()
            return
        if fault is not None and fault.kind == "status":
            text = f"injected HTTP {status}\n".encode()
            self.send_response(status)
            if fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if not head:
                self.wfile.write(text)
            return
        if body is None and (fault is None or fault.kind != "body"):
            text = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if not head:
                self.wfile.write(text)
            return
        if fault is not None and fault.kind == "corrupt":
            seed = random.random() if fault.vary else len(body)
            body = random.Random(seed).randbytes(len(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        if fault is not None and fault.kind == "drip":
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                if owner._stopping.wait(fault.delay):
                    return
            return
        if fault is not None and fault.kind == "truncate":
            self.wfile.write(body[: int(len(body) * fault.fraction)])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(body)

    def _reset(self) -> None:
        """Drop the connection at once, with an RST rather than an orderly close."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    owner: HipsServer


class HipsServer:
    """Serve ``directory`` over HTTP on 127.0.0.1 (an ephemeral port) from a background thread.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory to serve (files only; paths outside it are answered 404).
    tls : (str, str), optional
        ``(certfile, keyfile)`` in PEM: serve HTTPS with that certificate.

    Attributes
    ----------
    url : str
        The base URL, ``http://127.0.0.1:<port>`` (no trailing slash).
    """

    def __init__(self, directory: str | Path, *, tls: tuple[str | Path, str | Path] | None = None) -> None:
        self.root = Path(directory).resolve()
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._log: list[RequestRecord] = []
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        host, port = self._httpd.server_address[:2]
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"hips-server-{port}", daemon=True
        )
        self._thread.start()

    # -- fault plan --------------------------------------------------------------------

    def inject(self, pattern: str, *faults: Fault, then: Fault | None = None) -> None:
        """Plan ``faults`` for the first requests of each path matching ``pattern``.

        Parameters
        ----------
        pattern : str
            A glob on the relative path (``"Norder3/Dir0/Npix0.fits"``, ``"Norder3/*"``, ``"*"``).
        *faults : Fault
            Applied in turn to the 1st, 2nd, ... request of each matching path.
        then : Fault, optional
            Applied to every request after those (``None``: serve normally).
        """
        with self._lock:
            self._rules.append(_Rule(pattern, tuple(faults), then))

    def clear_faults(self) -> None:
        """Forget every planned fault (the request log is kept)."""
        with self._lock:
            self._rules.clear()

    # -- request log -------------------------------------------------------------------

    @property
    def log(self) -> list[RequestRecord]:
        """A copy of every request received, in order."""
        with self._lock:
            return list(self._log)

    def counts(self) -> Counter[str]:
        """Number of requests received per relative path."""
        with self._lock:
            return Counter(r.path for r in self._log)

    def count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (all requests when ``None``)."""
        with self._lock:
            return sum(1 for r in self._log if path is None or r.path == path)

    def reset_log(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._log.clear()

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving, wake sleeping slow replies and release the port."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HipsServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HipsServer({self.url!r}, root={str(self.root)!r})"

    # -- used by the handler -------------------------------------------------------------

    def _next_fault(self, relpath: str) -> Fault | None:
        with self._lock:
            for rule in reversed(self._rules):
                if fnmatch.fnmatchcase(relpath, rule.pattern):
                    n = rule.seen[relpath]
                    rule.seen[relpath] += 1
                    return rule.faults[n] if n < len(rule.faults) else rule.then
        return None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _read(self, relpath: str) -> bytes | None:
        path = (self.root / relpath).resolve()
        if not relpath or not path.is_relative_to(self.root) or not path.is_file():
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None
