"""Remote HiPS over HTTP(S): pooled connections, bounded concurrency, retries and a disk cache.

:class:`HttpTileStore` is the remote counterpart of
:class:`~hipsml.hips._fetch.LocalTileStore`. It maps a relative path inside a HiPS
(``properties``, ``Norder3/Dir0/Npix12.fits``) to a URL under the survey's base URL,
downloads the body and hands it to a ``decode`` callable.

Failure policy
--------------
* **Absent** (HTTP 404 or 410): ``fetch`` returns ``None`` at once, without retrying,
  and remembers the URL so it is not requested again by this store.
* **Transient** (HTTP 429, any 5xx, connect or read timeouts, connection resets,
  bodies shorter than their ``Content-Length``, bodies that ``decode`` rejects with
  :class:`~hipsml.errors.TileDecodeError`): retried up to ``retries`` times with
  exponential backoff and full jitter. A ``Retry-After`` header (seconds or an
  HTTP-date) is honoured when it asks for at most ``max_backoff`` seconds; a longer one
  (``Retry-After: 3600``) ends the fetch at once with a :class:`~hipsml.errors.FetchError`
  that says how long the server asked to wait.
* **Permanent** (any other 4xx, TLS verification failures, too many redirects, a
  malformed redirect ``Location``, a host name that does not resolve):
  :class:`~hipsml.errors.FetchError` at once, naming the URL and the reason. A DNS
  failure is never retried: name resolution that failed once fails again.
* **Corrupt twice the same way**: a body that ``decode`` rejects is fetched again, but
  when the next attempt returns the very same bytes (same SHA-256) the server is
  serving a broken file, not a transient glitch: the
  :class:`~hipsml.errors.TileDecodeError` is raised without further attempts.

Time limits
-----------
``timeout`` bounds each connect and each socket read. ``deadline`` bounds one whole
request, headers and body: a server that drips its body a byte at a time (slow loris)
is cut off after ``deadline`` seconds. ``max_total_time`` bounds everything spent on
one URL, attempts and waits between them included. Either limit ends in a
:class:`~hipsml.errors.FetchError` naming the URL and the option to raise.

When the retries are exhausted, ``fetch`` raises :class:`~hipsml.errors.FetchError`
naming the URL and the last reason, or re-raises the last
:class:`~hipsml.errors.TileDecodeError` when the server kept sending a corrupt body.

TLS
---
``verify`` (``True`` or a CA bundle path) is passed with every request, so an explicit
bundle wins over ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` in the environment
(requests would otherwise let the environment override the session's setting).

Disk cache
----------
Bodies that decoded successfully are written to
``<cache_dir>/<sha256(base URL)[:16]>/<name>``, atomically (with
:func:`hipsml._files.atomic_write`: a temporary file in the same directory, then
:func:`os.replace`), so several threads and processes may share a cache. A cache write
that fails only logs a warning. ``<name>`` never contains text from the server or the caller: a tile path is
cached only when it matches ``Norder<k>/Dir<d>/Npix<n>.<ext>`` or
``Norder<k>/Allsky.<ext>`` in canonical form, and is rebuilt from the parsed integers
and a fixed extension table; apart from tiles only ``properties`` and ``Moc.fits`` are
cached. Anything else is fetched but never cached. A cached file that no longer
decodes is deleted and fetched again.
"""

from __future__ import annotations

import email.utils
import hashlib
import heapq
import http.cookiejar
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from hipsml._files import atomic_write, read_regular_file, user_path
from hipsml.errors import FetchError, HipsmlError, InvalidLocationError, TileDecodeError
from hipsml.hips._formats import EXTENSION_FORMATS, FORMAT_EXTENSIONS
from hipsml.hips._store import MAX_FILE_BYTES, check_http_options, check_relpath, max_file_bytes

__all__ = ["HttpTileStore", "normalise_base_url", "cache_relpath", "parse_retry_after", "default_cache_dir"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses meaning "this file does not exist": return ``None``, never retry.
_ABSENT_STATUSES = frozenset({404, 410})
#: Largest body accepted (a guard against a misbehaving server filling memory).
_MAX_BODY_BYTES = MAX_FILE_BYTES
#: How many absent URLs a store remembers before it forgets them all.
_MAX_MISSING = 65536
#: Fixed table from the extension seen in a tile path to the extension used in the cache.
_TILE_EXTENSIONS = {ext: FORMAT_EXTENSIONS[fmt] for ext, fmt in EXTENSION_FORMATS.items()}
#: Bytes asked for per read of a body (a read returns as soon as some bytes arrive).
_READ_SIZE = 1 << 20
#: The only non-tile files that are cached, under these fixed names.
_CACHED_FILES = {"properties": "properties", "Moc.fits": "Moc.fits"}
#: files re-fetched on every open (the cached copy is a fallback for when the server is down)
_REFRESHED = frozenset({"properties", "Moc.fits"})
_EXT_RE = "|".join(sorted(EXTENSION_FORMATS))
_TILE_RE = re.compile(rf"Norder(\d{{1,2}})/Dir(\d{{1,19}})/Npix(\d{{1,19}})\.({_EXT_RE})")
_ALLSKY_RE = re.compile(rf"Norder(\d{{1,2}})/Allsky\.({_EXT_RE})")

_Timeout = float | tuple[float, float]


def default_cache_dir() -> Path:
    """Return the default cache root: ``$HIPSML_CACHE_DIR``, else ``~/.cache/hipsml``.

    Raises
    ------
    InvalidInputError
        ``$HIPSML_CACHE_DIR`` names an unknown user (``~nobody/cache``) or holds a NUL byte.
    """
    env = os.environ.get("HIPSML_CACHE_DIR", "").strip()
    if env:
        return user_path(env, what="HIPSML_CACHE_DIR")
    return user_path("~", what="home folder") / ".cache" / "hipsml"


def normalise_base_url(url: str) -> str:
    """Check and normalise the base URL of a remote HiPS.

    The scheme and host are lower-cased, a default port is dropped, a fragment is
    dropped and trailing slashes are removed from the path.

    Parameters
    ----------
    url : str
        An ``http://`` or ``https://`` URL with a host, no credentials and no query.

    Returns
    -------
    str
        The normalised URL, without a trailing slash.

    Raises
    ------
    InvalidLocationError
        For another scheme, an empty host, credentials, a query string, a bad port
        or whitespace or control characters in the URL.

    Examples
    --------
    >>> normalise_base_url("HTTPS://Alasky.U-Strasbg.fr:443/DSS/DSSColor/")
    'https://alasky.u-strasbg.fr/DSS/DSSColor'
    """
    if not isinstance(url, str):
        raise InvalidLocationError(f"a HiPS URL must be a string, got {url!r}")
    text = url.strip()
    if not text or any(ord(c) <= 32 or ord(c) == 127 for c in text):
        raise InvalidLocationError(f"malformed HiPS URL {url!r}: it is empty or contains whitespace")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # "Invalid IPv6 URL" for http://[::1/x
        raise InvalidLocationError(f"malformed HiPS URL {text!r} ({exc}); check the host and its brackets") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidLocationError(f"unsupported scheme in {text!r}: a remote HiPS needs http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidLocationError(f"refusing HiPS URL with credentials in it: {text!r}; put no user:password in URLs")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidLocationError(f"HiPS URL has no host: {text!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidLocationError(f"HiPS URL has an invalid port: {text!r}") from exc
    if parts.query:
        raise InvalidLocationError(f"HiPS base URL must not have a query string: {text!r}")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, "", ""))


def cache_relpath(relpath: str) -> str | None:
    """Name under which ``relpath`` is cached, rebuilt from integers, or ``None``.

    Parameters
    ----------
    relpath : str
        A relative path inside a HiPS.

    Returns
    -------
    str or None
        ``Norder<k>/Dir<d>/Npix<n>.<ext>``, ``Norder<k>/Allsky.<ext>``, ``properties`` or
        ``Moc.fits``; ``None`` for anything else (including non-canonical integers such
        as ``Npix012``), which is then never cached.

    Examples
    --------
    >>> cache_relpath("Norder3/Dir0/Npix12.fits"), cache_relpath("index.html")
    ('Norder3/Dir0/Npix12.fits', None)
    """
    if relpath in _CACHED_FILES:
        return _CACHED_FILES[relpath]
    m = _TILE_RE.fullmatch(relpath)
    if m is not None:
        digits = m.group(1, 2, 3)
        order, dir_, npix = (int(d) for d in digits)
        if any(str(v) != d for v, d in zip((order, dir_, npix), digits, strict=True)):
            return None
        return f"Norder{order}/Dir{dir_}/Npix{npix}.{_TILE_EXTENSIONS[m.group(4)]}"
    m = _ALLSKY_RE.fullmatch(relpath)
    if m is not None:
        order = int(m.group(1))
        if str(order) != m.group(1):
            return None
        return f"Norder{order}/Allsky.{_TILE_EXTENSIONS[m.group(2)]}"
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None`` if unusable.

    Parameters
    ----------
    value : str or None
        The header: a non-negative number of seconds or an HTTP-date.
    now : float, optional
        The current POSIX time (for tests); defaults to :func:`time.time`.

    Returns
    -------
    float or None
        A non-negative delay (a date in the past gives 0), or ``None`` when the header
        is absent or malformed.

    Examples
    --------
    >>> parse_retry_after("2"), parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=4.0)
    (2.0, 6.0)
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


# -- the request deadline -------------------------------------------------------------------
# urllib3's read timeout applies to each socket read, so a server that trickles its status
# line, headers or body a byte at a time never trips it. A watchdog timer therefore shuts the
# socket of the request it guards when the request's deadline passes; the blocked read then
# fails at once. The connection a thread is using is recorded by these pool classes.

_connections_in_use: dict[int, Any] = {}
_connections_lock = threading.Lock()


def _track(conn: Any) -> Any:
    with _connections_lock:
        _connections_in_use[threading.get_ident()] = conn
    return conn


class _TrackedHTTPPool(urllib3.HTTPConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        return _track(super()._get_conn(timeout))


class _TrackedHTTPSPool(urllib3.HTTPSConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        return _track(super()._get_conn(timeout))


class _Watchdog:
    """Shut the socket of the calling thread's request if it is still running after ``seconds``.

    All watchdogs share one timer thread (:data:`_DEADLINES`): starting and stopping one is a
    heap push and a flag, not a thread per request.
    """

    def __init__(self, seconds: float) -> None:
        self.thread = threading.get_ident()
        self.expired = False
        self.done = False
        self._lock = threading.Lock()
        with _connections_lock:
            _connections_in_use.pop(self.thread, None)
        _DEADLINES.add(self, time.monotonic() + max(0.0, seconds))

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            with _connections_lock:
                conn = _connections_in_use.get(self.thread)
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        with self._lock:
            self.done = True
        _DEADLINES.discard()
        with _connections_lock:
            _connections_in_use.pop(self.thread, None)


class _Deadlines:
    """One daemon thread that fires the watchdogs whose time has come (a heap of deadlines)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._seq = 0
        self._live = 0
        self._thread: threading.Thread | None = None

    def add(self, watchdog: _Watchdog, when: float) -> None:
        with self._cond:
            self._seq += 1
            self._live += 1
            heapq.heappush(self._heap, (when, self._seq, watchdog))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="hipsml-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def discard(self) -> None:
        """One watchdog stopped: drop stopped entries when they outnumber the live ones."""
        with self._cond:
            self._live -= 1
            if len(self._heap) > 1024 and len(self._heap) > 4 * self._live:
                self._heap = [item for item in self._heap if not item[2].done]
                heapq.heapify(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                when, _, watchdog = self._heap[0]
                if not watchdog.done:
                    delay = when - time.monotonic()
                    if delay > 0:
                        self._cond.wait(delay)
                        continue
                heapq.heappop(self._heap)
            if not watchdog.done:
                watchdog.fire()


_DEADLINES = _Deadlines()


def _reset_after_fork() -> None:
    """A forked child starts with fresh locks and no timer thread (the parent's may be mid-update)."""
    global _DEADLINES, _connections_lock
    _DEADLINES = _Deadlines()
    _connections_lock = threading.Lock()
    _connections_in_use.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _Retry(Exception):
    """Internal signal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _is_dns_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (a requests error) comes from a host name that does not resolve."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            return True
        todo.extend([e.__cause__, e.__context__, getattr(e, "reason", None), *e.args])
    return False


class HttpTileStore:
    """A HiPS served over HTTP(S), with pooled connections, retries and a disk cache.

    Thread-safe: one store may be shared by all the threads of a pool. It can be
    pickled (for example to a Dask worker); the copy opens its own connections.

    Parameters
    ----------
    base_url : str
        The survey's base URL (the directory holding ``properties``).
    cache_dir : str, os.PathLike, None or False, optional
        Root of the disk cache. ``None`` (the default) means ``$HIPSML_CACHE_DIR`` or
        ``~/.cache/hipsml``; ``False`` disables the disk cache.
    max_connections_per_host : int, optional
        Most requests in flight to one host at once (also the connection pool size).
    retries : int, optional
        Retries after the first attempt for transient failures (``retries + 1`` attempts).
    backoff : float, optional
        Base of the exponential backoff, in seconds: before retry ``i`` (from 0) the
        store sleeps a uniform random time in ``[0, min(max_backoff, backoff * 2**i)]``.
    max_backoff : float, optional
        Cap, in seconds, on one sleep. A ``Retry-After`` asking for longer ends the
        fetch at once (:class:`~hipsml.errors.FetchError` saying how long was asked).
    timeout : float or (float, float), optional
        Connect and read timeouts in seconds (each socket read).
    deadline : float, optional
        Most seconds one request may take, headers and body together, however slowly
        the server trickles bytes (default 60).
    max_total_time : float, optional
        Most seconds spent on one URL, all attempts and waits included (default 120).
    verify : bool or str, optional
        TLS verification: ``True``, or a path to a CA bundle, passed with each request
        (so it wins over ``REQUESTS_CA_BUNDLE``). ``False`` is accepted but logged as a warning.

    Raises
    ------
    InvalidLocationError
        If ``base_url`` is not a usable ``http(s)://`` URL.
    InvalidInputError
        If an option has the wrong type or is out of range.

    Examples
    --------
    >>> with HttpTileStore("https://alasky.cds.unistra.fr/DSS/DSSColor", cache_dir=False) as store:
    ...     store.url_for("Norder3/Dir0/Npix12.jpg")
    'https://alasky.cds.unistra.fr/DSS/DSSColor/Norder3/Dir0/Npix12.jpg'
    """

    def __init__(
        self,
        base_url: str,
        *,
        cache_dir: str | os.PathLike[str] | None | Literal[False] = None,
        max_connections_per_host: int = 8,
        retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 20.0,
        timeout: _Timeout = (5.0, 30.0),
        deadline: float = 60.0,
        max_total_time: float = 120.0,
        verify: bool | str = True,
    ) -> None:
        self.location = normalise_base_url(base_url)
        options = check_http_options(
            max_connections_per_host=max_connections_per_host,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            timeout=timeout,
            deadline=deadline,
            max_total_time=max_total_time,
            verify=verify,
        )
        self.max_connections_per_host: int = options["max_connections_per_host"]
        self.retries: int = options["retries"]
        self.backoff: float = options["backoff"]
        self.max_backoff: float = options["max_backoff"]
        self.timeout: tuple[float, float] = options["timeout"]
        self.deadline: float = options["deadline"]
        self.max_total_time: float = options["max_total_time"]
        self.verify: bool | str = options["verify"]
        if verify is False:
            logger.warning("TLS certificate verification is disabled for %s", self.location)
        if cache_dir is False:
            self.cache_root: Path | None = None
        else:
            root = default_cache_dir() if cache_dir is None else user_path(cache_dir, what="cache_dir")
            self.cache_root = root / hashlib.sha256(self.location.encode("utf-8")).hexdigest()[:16]
        self._cache_dir_option = cache_dir
        self._lock = threading.Lock()
        self._host_slots: dict[str, threading.BoundedSemaphore] = {}
        self._missing: set[str] = set()
        self._closed = False
        self._session = self._make_session()

    # -- set-up -----------------------------------------------------------------------

    def _make_session(self) -> requests.Session:
        from hipsml import __version__

        session = requests.Session()
        # Retries are ours (urllib3 would not see truncated or corrupt bodies).
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.max_connections_per_host, max_retries=0)
        # a new dict: urllib3's default is module-level and shared
        adapter.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self.verify  # also passed with each request: see _get_once
        session.headers["User-Agent"] = f"hipsml/{__version__} (+python-requests/{requests.__version__})"
        # A HiPS needs no cookies; refusing them keeps the shared session free of mutable state.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        return session

    def __reduce__(self) -> tuple[Callable[..., HttpTileStore], tuple[Any, ...]]:
        return (_rebuild_store, (self.location, self._options()))

    def _options(self) -> dict[str, Any]:
        return {
            "cache_dir": self._cache_dir_option,
            "max_connections_per_host": self.max_connections_per_host,
            "retries": self.retries,
            "backoff": self.backoff,
            "max_backoff": self.max_backoff,
            "timeout": self.timeout,
            "deadline": self.deadline,
            "max_total_time": self.max_total_time,
            "verify": self.verify,
        }

    # -- the store interface ------------------------------------------------------------

    def url_for(self, relpath: str) -> str:
        """Return the URL of ``relpath`` under the base URL.

        Raises
        ------
        InvalidLocationError
            If ``relpath`` is absolute or climbs out of the survey (``..``).
        """
        return f"{self.location}/{quote(check_relpath(relpath), safe='/')}"

    def cache_path(self, relpath: str) -> Path | None:
        """Return the file caching ``relpath``, or ``None`` when it is never cached."""
        if self.cache_root is None:
            return None
        name = cache_relpath(check_relpath(relpath))
        return None if name is None else self.cache_root / name

    def fetch(self, relpath: str, decode: Callable[[bytes], T]) -> T | None:
        """Return ``decode(body of relpath)``, or ``None`` when the server says it is absent.

        Parameters
        ----------
        relpath : str
            A relative path inside the HiPS, e.g. ``"Norder3/Dir0/Npix12.fits"``.
        decode : callable
            Turns the body into a value; raises :class:`~hipsml.errors.TileDecodeError`
            for a corrupt body, which makes the store fetch it again.

        Returns
        -------
        object or None
            What ``decode`` returned, or ``None`` for HTTP 404/410.

        Raises
        ------
        InvalidLocationError
            For an unsafe ``relpath``.
        FetchError
            For a non-retryable HTTP error, or when the retries or the time limits are exhausted.
        TileDecodeError
            When the server returned a body that ``decode`` rejected on every attempt,
            or the same corrupt body twice.
        """
        url = self.url_for(relpath)
        if self._closed:
            raise FetchError(f"cannot fetch {url}: this HttpTileStore was closed")
        with self._lock:
            if url in self._missing:
                logger.debug("known absent: %s", url)
                return None
        cached = self.cache_path(relpath)
        limit = max_file_bytes(relpath)
        if cached is not None and relpath in _REFRESHED:
            # survey metadata can change (new tiles, wider coverage): ask the server each
            # time, and use the cached copy only when the server cannot be reached
            try:
                return self._download(url, decode, cached, limit)
            except FetchError as exc:
                value = self._read_cache(cached, url, decode, limit)
                if value is None:
                    raise
                logger.warning("using the cached %s: %s", relpath, exc)
                return value[0]
        if cached is not None:
            value = self._read_cache(cached, url, decode, limit)
            if value is not None:
                return value[0]
        return self._download(url, decode, cached, limit)

    def close(self) -> None:
        """Close the pooled connections; later :meth:`fetch` calls raise :class:`FetchError`."""
        self._closed = True
        self._session.close()

    def __enter__(self) -> HttpTileStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        cache = "off" if self.cache_root is None else str(self.cache_root)
        return f"HttpTileStore({self.location!r}, cache={cache!r})"

    # -- internals ----------------------------------------------------------------------

    def _read_cache(self, path: Path, url: str, decode: Callable[[bytes], T], limit: int) -> tuple[T] | None:
        try:
            data = read_regular_file(path, limit=limit, what="cached file")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            logger.warning("cannot read cached copy of %s at %s (%s); fetching it again", url, path, exc)
            return None
        try:
            value = decode(data)
        except TileDecodeError as exc:
            logger.warning("cached copy of %s at %s is corrupt (%s); deleting it and fetching again", url, path, exc)
            try:
                path.unlink(missing_ok=True)
            except OSError as unlink_exc:
                logger.warning("cannot delete corrupt cache file %s: %s", path, unlink_exc)
            return None
        logger.debug("cache hit: %s", path)
        return (value,)

    def _write_cache(self, path: Path, data: bytes) -> None:
        try:
            # a cache is readable like any download: 0o644 whatever the umask
            with atomic_write(path, mode=0o644) as fh:
                fh.write(data)
            logger.debug("cached %d bytes at %s", len(data), path)
        except (HipsmlError, OSError) as exc:
            logger.warning("cannot write the disk cache at %s: %s", path, exc)

    def _remember_missing(self, url: str) -> None:
        with self._lock:
            if len(self._missing) >= _MAX_MISSING:
                self._missing.clear()
            self._missing.add(url)

    def _host_slot(self, url: str) -> threading.BoundedSemaphore:
        host = urlsplit(url).netloc
        with self._lock:
            slot = self._host_slots.get(host)
            if slot is None:
                slot = threading.BoundedSemaphore(self.max_connections_per_host)
                self._host_slots[host] = slot
            return slot

    def _delay_before_retry(self, attempt: int, url: str, failure: _Retry) -> float:
        if failure.retry_after is not None:
            if failure.retry_after > self.max_backoff:
                raise FetchError(
                    f"giving up on {url}: {failure.reason}, and the server asks to wait {failure.retry_after:g} s"
                    f" (Retry-After), more than max_backoff={self.max_backoff:g} s allows; try again later"
                    " or pass a larger max_backoff="
                )
            return failure.retry_after
        return random.uniform(0.0, min(self.max_backoff, self.backoff * (2.0**attempt)))

    def _download(
        self, url: str, decode: Callable[[bytes], T], cached: Path | None, limit: int = _MAX_BODY_BYTES
    ) -> T | None:
        attempts = self.retries + 1
        start = time.monotonic()
        last_reason = "no attempt made"
        last_decode_error: TileDecodeError | None = None
        last_digest: bytes | None = None
        for attempt in range(attempts):
            remaining = self.max_total_time - (time.monotonic() - start)
            try:
                budget = min(self.deadline, remaining)
                body = self._get_once(url, attempt, attempts, budget, limit, remaining < self.deadline)
                if body is None:
                    self._remember_missing(url)
                    return None
                try:
                    value = decode(body)
                except TileDecodeError as exc:
                    digest = hashlib.sha256(body).digest()
                    if digest == last_digest:
                        raise TileDecodeError(
                            f"{url} returned the same corrupt body twice ({len(body)} bytes); not retrying: {exc}"
                        ) from exc
                    last_digest = digest
                    raise _Retry(f"corrupt body ({exc})") from exc
            except _Retry as failure:
                last_reason = failure.reason
                cause = failure.__cause__
                last_decode_error = cause if isinstance(cause, TileDecodeError) else None
                if attempt + 1 < attempts:
                    delay = self._delay_before_retry(attempt, url, failure)
                    elapsed = time.monotonic() - start
                    if elapsed + delay >= self.max_total_time:
                        raise FetchError(
                            f"giving up on {url} after {elapsed:.3g} s and {attempt + 1} attempts (max_total_time="
                            f"{self.max_total_time:g} s); last error: {last_reason}; try later, or pass a larger"
                            " max_total_time="
                        ) from None
                    logger.debug(
                        "retrying %s in %.3f s (retry %d/%d): %s", url, delay, attempt + 1, self.retries, last_reason
                    )
                    time.sleep(delay)
                continue
            if cached is not None:
                self._write_cache(cached, body)
            return value
        if last_decode_error is not None:
            raise TileDecodeError(
                f"{url} returned a corrupt body on all {attempts} attempts: {last_decode_error}"
            ) from last_decode_error
        raise FetchError(
            f"giving up on {url} after {attempts} attempts; last error: {last_reason}"
            " (the server may be down or overloaded: try later, or pass a larger retries=)"
        )

    def _get_once(self, url: str, attempt: int, attempts: int, budget: float, limit: int, total: bool) -> bytes | None:
        """One GET within ``budget`` seconds (headers and body, guarded by a :class:`_Watchdog`)."""
        logger.debug("GET %s (attempt %d/%d)", url, attempt + 1, attempts)
        if budget <= 0:
            raise _Retry("no time left for another attempt")
        started = time.monotonic()
        timeout = (min(self.timeout[0], budget), min(self.timeout[1], budget))
        with self._host_slot(url):
            watchdog = _Watchdog(budget)
            try:
                body = self._request(url, timeout, started + budget, limit, total)
            except (HipsmlError, _Retry):
                if watchdog.expired:
                    raise self._deadline_error(url, total) from None
                raise
            finally:
                watchdog.stop()
            if watchdog.expired:  # a cut connection can look like a short, complete answer
                raise self._deadline_error(url, total)
            return body

    def _deadline_error(self, url: str, total: bool) -> FetchError:
        if total:
            return FetchError(
                f"giving up on {url}: max_total_time={self.max_total_time:g} s spent on this URL (attempts and"
                " waits) and the last request was still running; try later, or pass a larger max_total_time="
            )
        return FetchError(
            f"giving up on {url}: the request was still running when its deadline of {self.deadline:g} s passed"
            " (a very slow or stalled server); try later, or pass a larger deadline="
        )

    def _request(
        self, url: str, timeout: tuple[float, float], deadline: float, limit: int, total: bool
    ) -> bytes | None:
        """The GET itself: the body, ``None`` for absent, :class:`_Retry` or :class:`FetchError`."""
        try:
            # verify per request: a session attribute loses to REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
            response = self._session.get(url, timeout=timeout, stream=True, allow_redirects=True, verify=self.verify)
        except requests.exceptions.SSLError as exc:
            raise FetchError(f"TLS error for {url}: {exc}; check the certificate or pass verify=<CA bundle>") from exc
        except requests.exceptions.TooManyRedirects as exc:
            raise FetchError(f"too many redirects for {url}") from exc
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            ValueError,
        ) as exc:
            # also a malformed redirect Location (http://[::1/x is a ValueError in urllib.parse)
            raise FetchError(
                f"invalid URL while fetching {url} (a bad redirect Location?): {exc}; not retrying"
            ) from None
        except requests.exceptions.Timeout as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except requests.exceptions.RequestException as exc:
            if _is_dns_failure(exc):
                host = urlsplit(url).hostname
                raise FetchError(
                    f"cannot resolve the host {host!r} of {url}: check the URL and your network; not retrying"
                ) from None
            raise _Retry(f"connection failed ({type(exc).__name__}: {exc})") from exc
        with response:
            status = response.status_code
            if status in _ABSENT_STATUSES:
                logger.debug("absent (HTTP %d): %s", status, url)
                return None
            if status == 429 or 500 <= status <= 599:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise _Retry(f"HTTP {status} {response.reason or ''}".rstrip(), retry_after)
            if not 200 <= status <= 299:
                raise FetchError(
                    f"HTTP {status} {response.reason or ''} for {response.url or url}; not retrying"
                    " (check the URL and your access rights)"
                )
            return self._read_body(response, url, deadline, limit, total)

    def _read_body(
        self, response: requests.Response, url: str, deadline: float, limit: int, total: bool = False
    ) -> bytes:
        chunks: list[bytes] = []
        received = 0
        try:
            while True:
                # read1 returns as soon as some bytes arrive: the deadline is checked between
                # reads, so a server dripping one byte at a time cannot hold the request
                chunk = response.raw.read1(_READ_SIZE, decode_content=True)
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    raise FetchError(f"{url} sent more than {limit} bytes; refusing it")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise self._deadline_error(url, total)
        except HipsmlError:
            raise
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # a short body, a reset or a read timeout in the middle of the body
            raise _Retry(f"body interrupted after {received} bytes ({type(exc).__name__})") from exc
        body = b"".join(chunks)
        declared = response.headers.get("Content-Length")
        if declared is not None:
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            # Content-Length counts the bytes on the wire, before any gzip decoding.
            on_wire = len(body) if encoding in ("", "identity") else _wire_bytes(response, len(body))
            try:
                expected = int(declared)
            except ValueError:
                expected = -1
            if expected >= 0 and expected != on_wire:
                raise _Retry(f"truncated body: {on_wire} of {expected} bytes")
        return body


def _wire_bytes(response: requests.Response, default: int) -> int:
    """Bytes read from the socket for ``response`` (urllib3's ``tell``), else ``default``."""
    tell = getattr(response.raw, "tell", None)
    try:
        return int(tell()) if callable(tell) else default
    except (TypeError, ValueError, OSError):
        return default


def _rebuild_store(location: str, options: dict[str, Any]) -> HttpTileStore:
    """Unpickle an :class:`HttpTileStore` (it opens its own session)."""
    return HttpTileStore(location, **options)
