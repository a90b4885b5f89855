"""Pure HEALPix index arithmetic for HiPS tiles (no I/O).

A HiPS tile of order ``k`` and index ``npix`` with width ``W = 2**s`` holds the
HEALPix NESTED cells of order ``k + s`` whose index lies in
``[npix * W**2, (npix + 1) * W**2)``. Element ``a[row, col]`` of the tile (as the
FITS array is stored, row 0 = first FITS row) is the cell
``npix * W**2 + interleave(x, y)`` with ``x = W - 1 - row`` on the even bits and
``y = col`` on the odd bits.
"""

from __future__ import annotations

import numpy as np

from hipsml.errors import InvalidInputError
from hipsml.hips._formats import FORMAT_EXTENSIONS, canonical_format

__all__ = [
    "interleave_bits",
    "deinterleave_bits",
    "tile_pixel_indices",
    "tile_path",
    "log2_width",
]


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Spread the low 32 bits of ``v`` onto the even bits of a 64-bit integer."""
    v = v.astype(np.uint64) & np.uint64(0x00000000FFFFFFFF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
    v = (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)
    return v


def _compact_bits(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_spread_bits`: gather the even bits of ``v``."""
    v = v.astype(np.uint64) & np.uint64(0x5555555555555555)
    v = (v | (v >> np.uint64(1))) & np.uint64(0x3333333333333333)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v >> np.uint64(16))) & np.uint64(0x00000000FFFFFFFF)
    return v


def interleave_bits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Morton-interleave ``x`` (even bits) and ``y`` (odd bits) into one int64.

    Examples
    --------
    >>> int(interleave_bits(np.array([1]), np.array([0]))[0]), int(interleave_bits(np.array([0]), np.array([1]))[0])
    (1, 2)
    """
    x = np.asarray(x)
    y = np.asarray(y)
    return (_spread_bits(x) | (_spread_bits(y) << np.uint64(1))).astype(np.int64)


def deinterleave_bits(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a Morton index into ``(x, y)``: the inverse of :func:`interleave_bits`."""
    z = np.asarray(z).astype(np.uint64)
    return _compact_bits(z).astype(np.int64), _compact_bits(z >> np.uint64(1)).astype(np.int64)


def log2_width(width: int) -> int:
    """Return ``s`` with ``width == 2**s``; raise :class:`InvalidInputError` otherwise."""
    w = int(width)
    if w < 1 or (w & (w - 1)) != 0:
        raise InvalidInputError(f"tile width must be a power of two, got {width!r}")
    return w.bit_length() - 1


def tile_pixel_indices(order: int, npix: int, width: int) -> np.ndarray:
    """HEALPix NESTED index of every element of a HiPS tile.

    Parameters
    ----------
    order : int
        HiPS order of the tile (``Norder``).
    npix : int
        HEALPix NESTED index of the tile at ``order`` (``Npix``).
    width : int
        Tile width ``W`` (a power of two).

    Returns
    -------
    numpy.ndarray
        ``(W, W)`` int64 array: element ``[row, col]`` is the NESTED index, at order
        ``order + log2(W)``, of the cell that tile element ``[row, col]`` holds
        (row 0 is the first FITS row).

    Examples
    --------
    >>> idx = tile_pixel_indices(0, 0, 2)
    >>> idx.tolist()  # row 0: x = 1 (cells 1, 3); row 1: x = 0 (cells 0, 2), as healpy.pix2xyf says
    [[1, 3], [0, 2]]
    """
    s = log2_width(width)
    order = int(order)
    npix = int(npix)
    if order < 0 or order + s > 29:
        raise InvalidInputError(f"order {order} with tile width {width} is outside HEALPix orders 0..29")
    if not 0 <= npix < 12 * 4**order:
        raise InvalidInputError(f"tile index {npix} is outside 0..{12 * 4**order - 1} at order {order}")
    w = 1 << s
    rows, cols = np.meshgrid(np.arange(w, dtype=np.int64), np.arange(w, dtype=np.int64), indexing="ij")
    return np.int64(npix) * np.int64(w * w) + interleave_bits(w - 1 - rows, cols)


def tile_path(order: int, npix: int, ext: str) -> str:
    """Relative path of a tile inside a HiPS: ``Norder{k}/Dir{d}/Npix{n}.{ext}``.

    ``ext`` is a HiPS format name (``fits``, ``png``, ``jpeg``) or file extension.
    Built from integers and a fixed extension table only, so it cannot escape the survey root.

    Examples
    --------
    >>> tile_path(6, 12345, "jpeg")
    'Norder6/Dir10000/Npix12345.jpg'
    """
    fmt = canonical_format(ext)
    if fmt is None:
        raise InvalidInputError(f"unknown tile format {ext!r}; expected one of fits, png, jpeg")
    suffix = FORMAT_EXTENSIONS[fmt]
    order = int(order)
    npix = int(npix)
    if order < 0 or npix < 0:
        raise InvalidInputError(f"tile order and index must be non-negative, got order={order}, npix={npix}")
    return f"Norder{order}/Dir{(npix // 10000) * 10000}/Npix{npix}.{suffix}"
