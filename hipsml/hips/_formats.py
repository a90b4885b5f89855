"""The one home of the HiPS tile-format tables (pure data, no I/O).

Every module of :mod:`hipsml.hips` that maps a format name to a file extension, or an
extension back to a format, imports these tables; none keeps its own copy.
"""

from __future__ import annotations

__all__ = [
    "TILE_FORMATS",
    "FORMAT_PREFERENCE",
    "FORMAT_ALIASES",
    "FORMAT_EXTENSIONS",
    "EXTENSION_FORMATS",
    "canonical_format",
]

#: The tile formats hipsml can decode, in HiPS spelling (``hips_tile_format``).
TILE_FORMATS: tuple[str, ...] = ("fits", "png", "jpeg")
#: The format read when a survey offers several and the caller names none.
FORMAT_PREFERENCE: tuple[str, ...] = ("fits", "png", "jpeg")
#: Spellings accepted for each format (in properties files and arguments), lower case.
FORMAT_ALIASES: dict[str, str] = {"fits": "fits", "png": "png", "jpeg": "jpeg", "jpg": "jpeg"}
#: File extension of a tile of each format (``Npix12.jpg`` for ``jpeg``).
FORMAT_EXTENSIONS: dict[str, str] = {"fits": "fits", "png": "png", "jpeg": "jpg"}
#: Format of a tile file from its extension (the inverse of :data:`FORMAT_EXTENSIONS`).
EXTENSION_FORMATS: dict[str, str] = {ext: fmt for fmt, ext in FORMAT_EXTENSIONS.items()}


def canonical_format(name: str) -> str | None:
    """The HiPS format name for ``name`` (a format or an extension, any case), or None.

    Examples
    --------
    >>> canonical_format("JPG"), canonical_format("fits"), canonical_format("gif")
    ('jpeg', 'fits', None)
    """
    if not isinstance(name, str):
        return None
    return FORMAT_ALIASES.get(name.strip().lower())
