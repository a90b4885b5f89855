"""Where tile bytes come from: a local directory or an HTTP(S) server (with a disk cache).

This is the only module of :mod:`hipsml.hips` that touches the disk or the network.
A *store* maps a relative path inside a HiPS (``properties``, ``Moc.fits``,
``Norder3/Dir0/Npix12.fits``) to bytes, and hands them to a ``decode`` callable.
A body that fails to decode is treated as corrupt: a remote store fetches it again,
a local store raises :class:`~hipsml.errors.TileDecodeError` naming the file.

Local reads are bounded like HTTP bodies: only regular files are read (a FIFO or a
device such as a symlink to ``/dev/zero`` is refused at once, never waited on), and no
file larger than :data:`MAX_FILE_BYTES` (``properties``: :data:`MAX_PROPERTIES_BYTES`)
is read; both raise :class:`~hipsml.errors.InputFileError` naming the file.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar
from urllib.parse import unquote, urlparse

from hipsml._files import read_regular_file, user_path
from hipsml._suggest import closest_name, name_list
from hipsml.errors import InvalidInputError, InvalidLocationError, SurveyNotFoundError

__all__ = [
    "TileStore",
    "LocalTileStore",
    "open_store",
    "check_relpath",
    "check_http_options",
    "max_file_bytes",
    "MAX_FILE_BYTES",
    "HTTP_OPTIONS",
]

#: The options of :class:`~hipsml.hips._http.HttpTileStore` (also accepted by :func:`hipsml.open_survey`).
HTTP_OPTIONS: tuple[str, ...] = (
    "cache_dir",
    "max_connections_per_host",
    "retries",
    "backoff",
    "max_backoff",
    "timeout",
    "deadline",
    "max_total_time",
    "verify",
)

#: Largest file a store reads or downloads (a tile, an Allsky mosaic, ``Moc.fits``).
MAX_FILE_BYTES = 1 << 30
#: Largest ``properties`` file read (real ones are a few kB).
MAX_PROPERTIES_BYTES = 1 << 20


_NORDER_RE = re.compile(r"Norder([0-9]|[12][0-9])")


def _number_option(name: str, value: Any, *, minimum: float, strict: bool = False, integer: bool = False) -> Any:
    """``value`` as an int or float ``>= minimum`` (``> minimum`` when strict), else InvalidInputError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and integer and not float(value).is_integer():
        ok = False
    if ok:
        number = int(value) if integer else float(value)
        if number == number and (number > minimum if strict else number >= minimum) and number != float("inf"):
            return number
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    kind = "an integer" if integer else "a number"
    raise InvalidInputError(f"option {name}={value!r} must be {kind} {bound}")


def check_http_options(**options: Any) -> dict[str, Any]:
    """Check the values of HTTP store options (see :data:`HTTP_OPTIONS`); return them normalised.

    Only the options given are checked. :func:`hipsml.open_survey` calls this for local
    surveys too, so a bad value is reported whatever the location.

    Raises
    ------
    InvalidInputError
        A value of the wrong type or out of range (the message names the option).

    Examples
    --------
    >>> check_http_options(retries=3.0, timeout=5)
    {'retries': 3, 'timeout': (5.0, 5.0)}
    """
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name == "max_connections_per_host":
            out[name] = _number_option(name, value, minimum=1, integer=True)
        elif name == "retries":
            out[name] = _number_option(name, value, minimum=0, integer=True)
        elif name in ("backoff", "max_backoff"):
            out[name] = _number_option(name, value, minimum=0)
        elif name in ("deadline", "max_total_time"):
            out[name] = _number_option(name, value, minimum=0, strict=True)
        elif name == "timeout":
            pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
            if len(pair) != 2:
                raise InvalidInputError(f"option timeout={value!r} must be a positive number or a (connect, read) pair")
            out[name] = tuple(_number_option(name, t, minimum=0, strict=True) for t in pair)
        elif name == "verify":
            out[name] = value if isinstance(value, bool) else os.fspath(user_path(value, what="verify (CA bundle)"))
        elif name == "cache_dir":
            out[name] = value if value is None or value is False else user_path(value, what="cache_dir")
        else:
            raise InvalidInputError(f"unknown HTTP option {name!r}; the options are {', '.join(HTTP_OPTIONS)}")
    return out


def max_file_bytes(relpath: str) -> int:
    """The most bytes a store accepts for ``relpath``: 1 MiB for ``properties``, else 1 GiB."""
    return MAX_PROPERTIES_BYTES if relpath == "properties" else MAX_FILE_BYTES

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TileStore(Protocol):
    """What a survey needs from wherever its files live."""

    location: str

    def url_for(self, relpath: str) -> str:
        """Human-readable address (path or URL) of ``relpath``, for messages."""
        ...

    def fetch(self, relpath: str, decode: Callable[[bytes], T]) -> T | None:
        """Return ``decode(bytes of relpath)``, or ``None`` when the file is absent.

        ``decode`` raises :class:`~hipsml.errors.TileDecodeError` for a corrupt body.
        """
        ...


def check_relpath(relpath: str) -> str:
    """Reject a relative path that is absolute or climbs out of the survey root."""
    parts = relpath.split("/")
    if not relpath or relpath.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in relpath:
        raise InvalidLocationError(f"refusing unsafe path inside a HiPS: {relpath!r}")
    return relpath


def _near_folders(path: Path) -> str:
    """A hint for a survey folder that does not exist: the nearest name beside it, or what is there."""
    parent = path.parent
    try:
        folders = sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return f" (nor a folder {parent})" if not parent.is_dir() else ""
    close = closest_name(path.name, folders)
    if close is not None:
        return f"; did you mean {parent / close}?"
    if folders:
        return f" ({parent} holds the folders {name_list(folders, limit=10)})"
    return f" ({parent} holds no folders)"


class LocalTileStore:
    """A HiPS in a local directory (a mirror on a shared file system, or ``file://``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = user_path(root, what="survey location").resolve()
        self.location = str(self.root)
        if not self.root.is_dir():
            raise SurveyNotFoundError(f"no HiPS directory at {self.location}{_near_folders(self.root)}")

    def url_for(self, relpath: str) -> str:
        return str(self.root / check_relpath(relpath))

    def fetch(self, relpath: str, decode: Callable[[bytes], T]) -> T | None:
        path = self.root / check_relpath(relpath)
        try:
            data = read_regular_file(path, limit=max_file_bytes(relpath), what=relpath.rsplit("/", 1)[-1])
        except (FileNotFoundError, NotADirectoryError):
            return None
        return decode(data)

    def tile_orders(self) -> tuple[int, ...]:
        """The orders ``k`` whose ``Norder{k}`` folder holds at least one ``Dir*`` folder of tiles.

        Reads two folder listings per order at most; an unreadable root gives ``()``.
        """
        found = []
        try:
            entries = list(os.scandir(self.root))
        except OSError as exc:
            logger.warning("cannot list %s: %s", self.location, exc)
            return ()
        for entry in entries:
            m = _NORDER_RE.fullmatch(entry.name)
            if m is None or not entry.is_dir():
                continue
            try:
                with os.scandir(entry.path) as inner:
                    if any(e.name.startswith("Dir") and e.is_dir() for e in inner):
                        found.append(int(m.group(1)))
            except OSError:
                continue
        return tuple(sorted(found))

    def close(self) -> None:
        """Nothing to release (present so every store can be closed alike)."""

    def __repr__(self) -> str:
        return f"LocalTileStore({self.location!r})"


def open_store(location: str | os.PathLike[str], **http_options: object) -> TileStore:
    """Return the store for a local directory, a ``file://`` URL or an ``http(s)://`` URL.

    ``http_options`` go to :class:`HttpTileStore` (cache directory, concurrency, retries).
    Any other scheme raises :class:`~hipsml.errors.InvalidLocationError`.
    """
    if isinstance(location, os.PathLike):
        return LocalTileStore(location)
    if not isinstance(location, str) or not location.strip():
        raise InvalidLocationError(f"a survey location must be a path or URL, got {location!r}")
    text = location.strip()
    try:
        parsed = urlparse(text)
    except ValueError as exc:  # "Invalid IPv6 URL" for http://[::1/x
        raise InvalidLocationError(
            f"malformed survey location {text!r} ({exc}); check the brackets and the host"
        ) from None
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        from hipsml.hips._http import HttpTileStore

        return HttpTileStore(text, **http_options)  # type: ignore[arg-type]
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidLocationError(f"file:// URL with a remote host is not supported: {text!r}")
        return LocalTileStore(unquote(parsed.path))
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return LocalTileStore(text)
    raise InvalidLocationError(
        f"unsupported scheme {parsed.scheme!r} in {text!r}: use a local path, file://, http:// or https://"
    )
