"""Where tile bytes come from: a local directory or an HTTP(S) server (with a disk cache).

Local folders are read here; HTTP lives in :mod:`hipsml.hips._http`, and what both share
(the store protocol, safe relative paths, size limits, HTTP options) in :mod:`hipsml.hips._store`.
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
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlparse

from hipsml._files import read_regular_file, user_path
from hipsml._suggest import closest_name, name_list
from hipsml.errors import InvalidLocationError, SurveyNotFoundError
from hipsml.hips._store import (
    HTTP_OPTIONS,
    MAX_FILE_BYTES,
    MAX_PROPERTIES_BYTES,
    TileStore,
    check_http_options,
    check_relpath,
    max_file_bytes,
)

__all__ = [
    "TileStore",
    "LocalTileStore",
    "open_store",
    "check_relpath",
    "check_http_options",
    "max_file_bytes",
    "MAX_FILE_BYTES",
    "MAX_PROPERTIES_BYTES",
    "HTTP_OPTIONS",
]

_NORDER_RE = re.compile(r"Norder([0-9]|[12][0-9])")

logger = logging.getLogger(__name__)

T = TypeVar("T")


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

    def tile_indices(self, order: int, ext: str, *, max_dirs: int | None = None) -> list[int] | None:
        """The indices ``npix`` of the ``Norder{order}/Dir*/Npix{npix}.{ext}`` files present (unsorted).

        None when ``max_dirs`` is given and the order has more ``Dir*`` folders than that (listing
        it would take too long); ``[]`` when the order has no folder or it cannot be read.
        """
        base = self.root / f"Norder{int(order)}"
        pattern = re.compile(rf"Npix([0-9]+)\.{re.escape(ext)}")
        try:
            dirs = [e.path for e in os.scandir(base) if e.name.startswith("Dir") and e.is_dir()]
        except OSError:
            return []
        if max_dirs is not None and len(dirs) > max_dirs:
            return None
        found: list[int] = []
        for path in dirs:
            try:
                with os.scandir(path) as inner:
                    found += [int(m.group(1)) for e in inner if (m := pattern.fullmatch(e.name))]
            except OSError as exc:
                logger.warning("cannot list %s: %s", path, exc)
        return found

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
