"""HiPS ``properties`` files: parse the text and derive the typed fields a reader needs.

A ``properties`` file (HiPS 1.0, IVOA REC 2017, and the 1.5 draft) holds one
``key = value`` pair per line. Lines starting with ``#`` are comments, blank lines
are ignored, values keep their inner spaces. A key may appear more than once
(``bib_reference`` often does): the **first** occurrence wins, later ones are ignored.

Surveys built before HiPS 1.0 (and many still served) carry legacy keys beside or
instead of the standard ones; :class:`HipsProperties` falls back to them:
``coordsys`` (C/G/E) for ``hips_frame``, ``maxOrder`` for ``hips_order``,
``minOrder`` for ``hips_order_min``, ``format`` for ``hips_tile_format``,
``pixelCut`` for ``hips_pixel_cut`` and ``isColor`` / ``isColored`` for
``dataproduct_subtype = color``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hipsml.errors import PropertiesError
from hipsml.hips._formats import TILE_FORMATS, canonical_format
from hipsml.hips._frames import canonical_frame

__all__ = ["parse_properties", "HipsProperties", "TILE_FORMATS", "MAX_TILE_WIDTH"]

logger = logging.getLogger(__name__)

#: Widest tile accepted (CDS surveys use at most 2048): a larger ``hips_tile_width``
#: would allocate gigabytes per tile before any is read.
MAX_TILE_WIDTH = 4096

# Characters that never occur in a text file: NUL, the C0 controls other than tab,
# line feed, form feed and carriage return, DEL and the C1 controls.
_BINARY_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


def _to_text(data: str | bytes, source: str) -> str:
    if isinstance(data, str):
        return data
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PropertiesError(f"{source}: expected text, got {type(data).__name__}")
    raw = bytes(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Older HipsGen versions wrote ISO-8859-1 (accents in obs_description).
        return raw.decode("latin-1")


def parse_properties(text: str | bytes, *, source: str) -> dict[str, str]:
    """Parse the text of a HiPS ``properties`` file into a ``{key: value}`` dict.

    Parameters
    ----------
    text : str or bytes
        Content of the file. Bytes are decoded as UTF-8, falling back to ISO-8859-1.
    source : str
        Path or URL of the file, used in error messages.

    Returns
    -------
    dict of str to str
        Keys and values with surrounding white space removed (inner spaces are kept).
        When a key is repeated, the first value is kept.

    Raises
    ------
    PropertiesError
        The file is empty, is not text, or has a non-comment line without ``=``
        (the message names ``source`` and the line number).

    Examples
    --------
    >>> parse_properties("# a comment\\nhips_order = 3\\nobs_title = My  survey\\n", source="x")
    {'hips_order': '3', 'obs_title': 'My  survey'}
    """
    text = _to_text(text, source)
    if text.startswith("\ufeff"):
        text = text[1:]
    props: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if _BINARY_CHARS.search(line):
            raise PropertiesError(f"{source}, line {lineno}: binary data in a properties file (is this really a HiPS?)")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        if not sep or not key or any(c.isspace() for c in key):
            shown = stripped if len(stripped) <= 60 else stripped[:57] + "..."
            raise PropertiesError(f"{source}, line {lineno}: expected 'key = value', got {shown!r}")
        props.setdefault(key, value.strip())
    if not props:
        raise PropertiesError(f"{source}: the properties file is empty (no 'key = value' line)")
    return props


def _first(props: Mapping[str, str], *keys: str) -> tuple[str, str] | None:
    """Return ``(key, value)`` for the first key present with a non-empty value."""
    for key in keys:
        value = props.get(key)
        if value is not None and value.strip():
            return key, value.strip()
    return None


def _parse_int(props: Mapping[str, str], keys: tuple[str, ...], source: str) -> int | None:
    found = _first(props, *keys)
    if found is None:
        return None
    key, value = found
    try:
        return int(value)
    except ValueError:
        raise PropertiesError(f"{source}: field {key} = {value!r} is not an integer") from None


def _parse_floats(props: Mapping[str, str], keys: tuple[str, ...], count: int, source: str) -> tuple[float, ...] | None:
    found = _first(props, *keys)
    if found is None:
        return None
    key, value = found
    parts = value.replace(",", " ").split()
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise PropertiesError(f"{source}: field {key} = {value!r} is not {count} numbers") from None
    if len(numbers) < count:
        raise PropertiesError(f"{source}: field {key} = {value!r} is not {count} numbers")
    return numbers[:count]


def _parse_frame(props: Mapping[str, str], source: str) -> str:
    found = _first(props, "hips_frame", "coordsys")
    if found is None:
        logger.warning("%s: no hips_frame (nor legacy coordsys); assuming equatorial (icrs)", source)
        return "icrs"
    key, value = found
    frame = canonical_frame(value)
    if frame is None:
        raise PropertiesError(
            f"{source}: field {key} = {value!r} is not a sky frame hipsml knows "
            "(expected equatorial, galactic or ecliptic; legacy coordsys C, G or E)"
        )
    return frame


def _parse_formats(props: Mapping[str, str], source: str) -> tuple[str, ...]:
    found = _first(props, "hips_tile_format", "format")
    if found is None:
        logger.warning("%s: no hips_tile_format (nor legacy format); assuming jpeg", source)
        return ("jpeg",)
    key, value = found
    formats: list[str] = []
    for token in value.replace(",", " ").split():
        fmt = canonical_format(token)
        if fmt is None:
            logger.info("%s: ignoring tile format %r that hipsml cannot decode", source, token)
        elif fmt not in formats:
            formats.append(fmt)
    if not formats:
        raise PropertiesError(f"{source}: field {key} = {value!r} names no image tile format (fits, png or jpeg)")
    return tuple(formats)


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "yes", "1", "t")


@dataclass(frozen=True)
class HipsProperties:
    """Typed view of the fields of a HiPS ``properties`` file that a reader needs.

    Attributes
    ----------
    frame : str
        ``"icrs"``, ``"galactic"`` or ``"ecliptic"``.
    order : int
        Deepest tile order (``hips_order``).
    order_min : int
        Shallowest tile order (``hips_order_min``, default 0).
    tile_width : int
        Tile width in pixels, a power of two up to 4096 (``hips_tile_width``, default 512).
    formats : tuple of str
        Tile formats in the order listed, each one of ``"fits"``, ``"png"``, ``"jpeg"``.
    channels : int
        3 for a colour survey (``dataproduct_subtype = color``), else 1.
    bitpix : int or None
        ``hips_pixel_bitpix`` (FITS BITPIX of the FITS tiles) when given.
    pixel_cut : tuple of float or None
        ``hips_pixel_cut``: the two values mapped to 0 and 255 in PNG/JPEG tiles.
    dataproduct_type, dataproduct_subtype : str or None
        As written in the file.

    Examples
    --------
    >>> p = HipsProperties.from_dict({"hips_order": "5", "coordsys": "G", "format": "jpg fits"}, source="x")
    >>> p.frame, p.order, p.formats, p.tile_width
    ('galactic', 5, ('jpeg', 'fits'), 512)
    """

    frame: str
    order: int
    order_min: int
    tile_width: int
    formats: tuple[str, ...]
    channels: int
    bitpix: int | None
    pixel_cut: tuple[float, float] | None
    dataproduct_type: str | None
    dataproduct_subtype: str | None
    #: whether ``hips_order_min`` (or ``minOrder``) was in the file; False means 0 was assumed
    order_min_declared: bool = True

    @classmethod
    def from_dict(cls, props: Mapping[str, str], *, source: str) -> HipsProperties:
        """Derive and validate the typed fields from a parsed ``properties`` dict.

        Raises :class:`~hipsml.errors.PropertiesError` naming ``source`` and the field
        for a missing ``hips_order``, an unknown frame, a bad number or a tile width
        that is not a power of two.
        """
        order = _parse_int(props, ("hips_order", "maxOrder"), source)
        if order is None:
            raise PropertiesError(f"{source}: required field hips_order (or legacy maxOrder) is missing")
        order_min = _parse_int(props, ("hips_order_min", "minOrder"), source)
        order_min_declared = order_min is not None
        order_min = 0 if order_min is None else order_min
        width = _parse_int(props, ("hips_tile_width", "tileWidth"), source)
        width = 512 if width is None else width
        if width < 1 or width & (width - 1) or width > MAX_TILE_WIDTH:
            raise PropertiesError(
                f"{source}: field hips_tile_width = {width} is not a power of two from 1 to {MAX_TILE_WIDTH};"
                " fix the properties file (CDS surveys use 256 to 2048)"
            )
        s = width.bit_length() - 1
        if not 0 <= order <= 29 - s:
            raise PropertiesError(f"{source}: field hips_order = {order} is outside 0..{29 - s} for tiles {width} wide")
        if not 0 <= order_min <= order:
            raise PropertiesError(f"{source}: field hips_order_min = {order_min} is outside 0..hips_order ({order})")
        bitpix = _parse_int(props, ("hips_pixel_bitpix",), source)
        if bitpix is not None and bitpix not in (8, 16, 32, 64, -32, -64):
            raise PropertiesError(f"{source}: field hips_pixel_bitpix = {bitpix} is not a FITS BITPIX")
        cut = _parse_floats(props, ("hips_pixel_cut", "pixelCut"), 2, source)
        subtype = props.get("dataproduct_subtype")
        color = (subtype is not None and "color" in subtype.lower().split()) or any(
            _is_true(props.get(k)) for k in ("isColor", "isColored")
        )
        return cls(
            frame=_parse_frame(props, source),
            order=order,
            order_min=order_min,
            tile_width=width,
            formats=_parse_formats(props, source),
            channels=3 if color else 1,
            bitpix=bitpix,
            pixel_cut=None if cut is None else (cut[0], cut[1]),
            dataproduct_type=props.get("dataproduct_type") or None,
            dataproduct_subtype=subtype or None,
            order_min_declared=order_min_declared,
        )
