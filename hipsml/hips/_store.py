"""What every tile store shares: the store protocol, safe relative paths, size limits and HTTP options.

A leaf module: :mod:`hipsml.hips._fetch` (local folders, and the choice of store) and
:mod:`hipsml.hips._http` (HTTP with a disk cache) both build on it.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from hipsml._files import user_path
from hipsml.errors import InvalidInputError, InvalidLocationError

__all__ = [
    "TileStore",
    "check_relpath",
    "check_http_options",
    "max_file_bytes",
    "MAX_FILE_BYTES",
    "MAX_PROPERTIES_BYTES",
    "HTTP_OPTIONS",
]

T = TypeVar("T")

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

    def close(self) -> None:
        """Release what the store holds (an HTTP session); nothing for a local one."""
        ...


def check_relpath(relpath: str) -> str:
    """Reject a relative path that is absolute or climbs out of the survey root."""
    parts = relpath.split("/")
    if not relpath or relpath.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in relpath:
        raise InvalidLocationError(f"refusing unsafe path inside a HiPS: {relpath!r}")
    return relpath
