"""Decode the bytes of a HiPS tile (FITS, PNG, JPEG) into a float32 ``(C, W, W)`` array.

Orientation
-----------
Every decoded tile is oriented **like the FITS array as stored**: row 0 is the first
FITS row, so :func:`hipsml.hips.tile_pixel_indices` gives the HEALPix cell of every
element whatever the format. HiPS writers (Aladin/HipsGen) store a PNG or JPEG tile
so that it *displays* like the FITS tile (whose first row is drawn at the bottom),
hence PNG and JPEG tiles are flipped vertically on reading.

FITS
----
The hot path is a small FITS reader of our own (header cards + ``numpy.frombuffer``),
several times faster than ``astropy.io.fits`` per tile. It handles what real archives
serve:

- BITPIX 8, 16, 32, 64, -32, -64, with BSCALE/BZERO applied;
- BLANK on integer tiles compared on the raw stored integers, before scaling, even
  when written as a float (``BLANK = -32768.0``) or a string, which astropy ignores;
- NaN in floating-point tiles stays NaN;
- gzip-compressed FITS under a ``.fits`` name (magic bytes ``1f 8b``), inflated
  incrementally and never beyond the size its own FITS header announces (nor beyond
  what a tile of the survey's width can hold, nor 1 GiB): a gzip bomb is a
  :class:`~hipsml.errors.TileDecodeError` after a few kilobytes, not gigabytes;
- files not padded to a multiple of 2880 bytes;
- trimmed tiles (HipsGen ``-trim``, reproject): ``NAXISn`` give the stored sub-box,
  ``ONAXISn`` the original tile size and ``TRIMn`` the number of leading elements
  removed along FITS axis ``n`` (0-based, in stored-array order: ``TRIM1`` columns,
  ``TRIM2`` rows). The box is put back into a NaN tile of the original size at
  ``[TRIM2:TRIM2+NAXIS2, TRIM1:TRIM1+NAXIS1]``, which is what reproject's
  ``fits_getdata_untrimmed`` does;
- a primary HDU without data followed by an IMAGE extension.

Anything else (tile-compressed BINTABLE images, ...) goes to ``astropy.io.fits``.

PNG and JPEG
------------
Read with Pillow; values 0..255 as float32. Greyscale gives one channel, colour three
(alpha is dropped, but a PNG pixel with alpha 0 is blank: NaN in every channel). The
``channels`` argument forces the channel count: a grey survey stored as RGB(A) PNG or
JPEG (as CDS often does) is reduced to the mean of its channels.
"""

from __future__ import annotations

import io
import logging
import warnings
import zlib
from typing import Any

import numpy as np

from hipsml.errors import TileDecodeError
from hipsml.hips._formats import canonical_format

__all__ = ["decode_tile", "split_allsky", "allsky_columns"]

logger = logging.getLogger(__name__)

_CARD = 80
_BLOCK = 2880
_DTYPES: dict[int, np.dtype[Any]] = {
    8: np.dtype("u1"),
    16: np.dtype(">i2"),
    32: np.dtype(">i4"),
    64: np.dtype(">i8"),
    -32: np.dtype(">f4"),
    -64: np.dtype(">f8"),
}
_WANTED = frozenset(
    {
        "SIMPLE",
        "XTENSION",
        "BITPIX",
        "NAXIS",
        "NAXIS1",
        "NAXIS2",
        "NAXIS3",
        "BSCALE",
        "BZERO",
        "BLANK",
        "TRIM1",
        "TRIM2",
        "ONAXIS1",
        "ONAXIS2",
        "PCOUNT",
        "GCOUNT",
        "ZIMAGE",
    }
)


class _Unsupported(Exception):
    """Internal: the fast FITS reader declines this file; astropy gets it instead."""


#: largest tile hipsml will build from a trimmed FITS tile (guards against absurd ONAXISn)
_MAX_TILE_PIXELS = 1 << 26


def _card_value(text: str) -> str | float | bool:
    """Value of a FITS card's value field (columns 11..80): a string, number or logical."""
    text = text.strip()
    if text.startswith("'"):
        out = []
        i = 1
        while i < len(text):
            c = text[i]
            if c == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                break
            out.append(c)
            i += 1
        return "".join(out).rstrip()
    token = text.split("/", 1)[0].strip()
    if token in ("T", "F"):
        return token == "T"
    try:
        return float(token.replace("D", "E").replace("d", "e"))
    except ValueError:
        return token


def _number(header: dict[str, str | float | bool], key: str, source: str, default: float | None = None) -> float | None:
    value = header.get(key, default)
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, bool):
        raise TileDecodeError(f"{source}: FITS keyword {key} = {value!r} is not a number")
    try:  # CDS writes e.g. BLANK = '-32768.0' in some tiles
        return float(str(value).replace("D", "E"))
    except ValueError:
        raise TileDecodeError(f"{source}: FITS keyword {key} = {value!r} is not a number") from None


def _read_header(buf: bytes, start: int, source: str) -> tuple[dict[str, str | float | bool], int, int]:
    """Parse the header at ``start``: return (wanted cards, padded data start, unpadded data start)."""
    header: dict[str, str | float | bool] = {}
    pos = start
    n = len(buf)
    while True:
        if pos + _CARD > n:
            raise TileDecodeError(f"{source}: FITS header has no END card (truncated or not FITS)")
        card = buf[pos : pos + _CARD]
        pos += _CARD
        key = card[:8].rstrip()
        if key == b"END":
            break
        if card[8:10] == b"= ":
            try:
                k = key.decode("ascii")
            except UnicodeDecodeError:
                raise TileDecodeError(f"{source}: FITS header contains non-ASCII bytes (not a FITS file)") from None
            if k in _WANTED and k not in header:
                header[k] = _card_value(card[10:].decode("ascii", errors="replace"))
    padded = start + -(-(pos - start) // _BLOCK) * _BLOCK
    return header, padded, pos


def _image_shape(header: dict[str, str | float | bool], source: str) -> tuple[int, ...]:
    naxis = int(_number(header, "NAXIS", source, 0.0) or 0)
    if naxis == 0:
        return ()
    if naxis > 3:
        raise TileDecodeError(f"{source}: FITS image has NAXIS = {naxis}; a HiPS tile has 2 (or 3) axes")
    dims = []
    for i in range(naxis, 0, -1):
        v = _number(header, f"NAXIS{i}", source)
        if v is None or v < 0:
            raise TileDecodeError(f"{source}: FITS keyword NAXIS{i} is missing or negative")
        dims.append(int(v))
    return tuple(dims)


def _scale(raw: np.ndarray, bitpix: int, bscale: float, bzero: float, blank: float | None) -> np.ndarray:
    """Physical float32 values of the raw stored array (BLANK -> NaN before scaling)."""
    mask = None
    if bitpix > 0 and blank is not None and float(blank).is_integer():
        mask = raw == raw.dtype.type(int(blank)) if _fits_in(raw.dtype, int(blank)) else None
    if bitpix in (8, 16, -32):
        out = raw.astype(np.float32)
        if bscale != 1.0:
            out *= np.float32(bscale)
        if bzero != 0.0:
            out += np.float32(bzero)
    else:
        out = raw.astype(np.float64)
        if bscale != 1.0:
            out *= bscale
        if bzero != 0.0:
            out += bzero
        out = out.astype(np.float32)
    if mask is not None and mask.any():
        out[mask] = np.nan
    return out


def _fits_in(dtype: np.dtype, value: int) -> bool:
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def _untrim(out: np.ndarray, header: dict[str, str | float | bool], source: str, width: int | None) -> np.ndarray:
    if not any(k in header for k in ("TRIM1", "TRIM2", "ONAXIS1", "ONAXIS2")):
        return out
    c, h, w = out.shape
    full_w = _number(header, "ONAXIS1", source, None if width is None else float(width))
    full_h = _number(header, "ONAXIS2", source, None if width is None else float(width))
    if full_w is None or full_h is None:
        raise TileDecodeError(f"{source}: trimmed FITS tile (TRIMn) without ONAXIS1/ONAXIS2 and no tile width given")
    t1 = int(_number(header, "TRIM1", source, 0.0) or 0)
    t2 = int(_number(header, "TRIM2", source, 0.0) or 0)
    fw, fh = int(full_w), int(full_h)
    if width is not None and (fw, fh) != (width, width):
        raise TileDecodeError(
            f"{source}: trimmed FITS tile of ONAXIS {fh}x{fw}, but the survey declares tiles {width}x{width}"
        )
    if fw * fh > _MAX_TILE_PIXELS:
        raise TileDecodeError(f"{source}: trimmed FITS tile claims {fh}x{fw} pixels; refusing so large a tile")
    if t1 < 0 or t2 < 0 or t1 + w > fw or t2 + h > fh:
        raise TileDecodeError(
            f"{source}: trimmed FITS box {h}x{w} at TRIM2={t2}, TRIM1={t1} does not fit in "
            f"ONAXIS2 x ONAXIS1 = {fh}x{fw}"
        )
    full = np.full((c, fh, fw), np.nan, dtype=np.float32)
    full[:, t2 : t2 + h, t1 : t1 + w] = out
    return full


def _decode_fits_fast(buf: bytes, source: str, width: int | None) -> np.ndarray:
    header, data_start, unpadded_start = _read_header(buf, 0, source)
    shape = _image_shape(header, source)
    if not shape:
        # Empty primary HDU: the image is in the first extension.
        header, data_start, unpadded_start = _read_header(buf, data_start, source)
        xt = header.get("XTENSION")
        if not isinstance(xt, str) or xt.strip().upper() != "IMAGE":
            raise _Unsupported
        shape = _image_shape(header, source)
        if not shape:
            raise TileDecodeError(f"{source}: FITS file holds no image")
    if header.get("ZIMAGE") is True:
        raise _Unsupported
    bitpix_f = _number(header, "BITPIX", source)
    if bitpix_f is None or int(bitpix_f) not in _DTYPES:
        raise TileDecodeError(f"{source}: FITS BITPIX = {bitpix_f!r} is not one of 8, 16, 32, 64, -32, -64")
    bitpix = int(bitpix_f)
    dtype = _DTYPES[bitpix]
    count = int(np.prod(shape, dtype=object))
    most = _MAX_TILE_PIXELS if width is None else 3 * width * width
    if count > most:  # checked before any float copy is made
        raise TileDecodeError(
            f"{source}: FITS image of {'x'.join(map(str, shape))} pixels is larger than"
            f" {'a tile of this survey' if width is not None else 'any HiPS tile or Allsky'} can be"
        )
    nbytes = count * dtype.itemsize
    if data_start + nbytes > len(buf):
        gap = buf[unpadded_start:data_start]
        if gap.strip(b" ") and unpadded_start + nbytes <= len(buf):
            data_start = unpadded_start  # the header itself is not padded to 2880 bytes
        else:
            raise TileDecodeError(
                f"{source}: FITS data truncated: expected {nbytes} bytes after the header, "
                f"found {len(buf) - data_start}"
            )
    raw = np.frombuffer(buf, dtype=dtype, count=count, offset=data_start).reshape(shape)
    bscale = _number(header, "BSCALE", source, 1.0)
    bzero = _number(header, "BZERO", source, 0.0)
    blank = _number(header, "BLANK", source, None) if bitpix > 0 else None
    out = _scale(raw, bitpix, float(bscale), float(bzero), blank)  # type: ignore[arg-type]
    if out.ndim == 2:
        out = out[np.newaxis]
    return _untrim(out, header, source, width)


def _decode_fits_astropy(buf: bytes, source: str, width: int | None) -> np.ndarray:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(buf), ignore_missing_end=True, ignore_missing_simple=True) as hdul:
                for hdu in hdul:
                    if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                        data = np.asarray(hdu.data, dtype=np.float32)
                        header = {k: hdu.header[k] for k in ("TRIM1", "TRIM2", "ONAXIS1", "ONAXIS2") if k in hdu.header}
                        break
                else:
                    raise TileDecodeError(f"{source}: FITS file holds no image")
    except TileDecodeError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise TileDecodeError(f"{source}: not a readable FITS file ({exc})") from exc
    if data.ndim == 2:
        data = data[np.newaxis]
    hdr = {k: float(v) for k, v in header.items()}
    return _untrim(np.ascontiguousarray(data), hdr, source, width)  # type: ignore[arg-type]


#: most bytes inflated from a gzip FITS tile, whatever its header says
_MAX_INFLATED = 1 << 30
#: room for the headers (and padding) around the data of a gzip FITS tile
_HEADER_ROOM = 64 * _BLOCK
_INFLATE_STEP = 1 << 20


def _fits_size(buf: bytes | bytearray) -> int | None:
    """Total size the FITS file starting ``buf`` announces (headers + padded data of the
    primary HDU and, when the primary holds no data, of the first extension); None while
    ``buf`` does not yet hold the headers needed to tell."""
    try:
        header, data_start, _ = _read_header(bytes(buf), 0, "gzip")
        shape = _image_shape(header, "gzip")
        if not shape:
            header, data_start, _ = _read_header(bytes(buf), data_start, "gzip")
            shape = _image_shape(header, "gzip")
        bitpix = abs(int(_number(header, "BITPIX", "gzip", 8.0) or 8))
        pcount = max(0, int(_number(header, "PCOUNT", "gzip", 0.0) or 0))
        gcount = max(1, int(_number(header, "GCOUNT", "gzip", 1.0) or 1))
    except TileDecodeError:  # the headers are incomplete so far (or this is no FITS file)
        return None if len(buf) < _HEADER_ROOM else 0
    nbytes = (int(np.prod(shape, dtype=object)) * bitpix // 8 + pcount) * gcount if shape else pcount
    return data_start + -(-nbytes // _BLOCK) * _BLOCK


def _gunzip_fits(data: bytes, source: str, width: int | None) -> bytes:
    """Inflate a gzip FITS tile, refusing to inflate beyond what its header announces."""
    limit = _MAX_INFLATED
    if width is not None:  # at most 3 planes of 8-byte pixels, plus headers
        limit = min(limit, 3 * 8 * width * width + 2 * _HEADER_ROOM)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    announced: int | None = None
    try:
        while not inflater.eof:
            # ask for one byte more than allowed, so that a body exactly at the limit passes
            chunk = inflater.decompress(pending, min(_INFLATE_STEP, limit + 1 - len(out)))
            pending = inflater.unconsumed_tail
            out += chunk
            if announced is None:
                announced = _fits_size(out)
                if announced is not None:
                    limit = min(limit, max(announced, _BLOCK))
            if len(out) > limit:
                raise TileDecodeError(
                    f"{source}: gzip-compressed FITS tile inflates to more than {limit} bytes, more than its"
                    " header announces (a gzip bomb or a corrupt tile); delete or rebuild it"
                )
            if not chunk and not pending:
                raise TileDecodeError(f"{source}: corrupt gzip-compressed FITS tile (the stream is truncated)")
    except zlib.error as exc:
        raise TileDecodeError(f"{source}: corrupt gzip-compressed FITS tile ({exc})") from None
    return bytes(out)


def _decode_fits(data: bytes, source: str, width: int | None) -> np.ndarray:
    buf = bytes(data)
    if buf[:2] == b"\x1f\x8b":
        buf = _gunzip_fits(buf, source, width)
    if not buf.startswith(b"SIMPLE  ="):
        raise TileDecodeError(f"{source}: not a FITS file (it does not start with SIMPLE =)")
    try:
        return _decode_fits_fast(buf, source, width)
    except _Unsupported:
        return _decode_fits_astropy(buf, source, width)


def _decode_image(data: bytes, fmt: str, source: str, channels: int | None, width: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im: Image.Image = Image.open(io.BytesIO(data))
            if width is not None and im.size != (width, width):  # checked before inflating the pixels
                raise TileDecodeError(
                    f"{source}: tile is {im.size[1]}x{im.size[0]} pixels, but the survey declares tiles {width}x{width}"
                )
            if im.size[0] * im.size[1] > _MAX_TILE_PIXELS:
                raise TileDecodeError(
                    f"{source}: image of {im.size[1]}x{im.size[0]} pixels is larger than any HiPS tile or Allsky"
                )
            im.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise TileDecodeError(f"{source}: not a readable {fmt.upper()} image ({exc})") from exc
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[:, :, np.newaxis]
    alpha = None
    if im.mode in ("LA", "RGBA"):
        alpha = a[:, :, -1]
        a = a[:, :, :-1]
    # flip vertically: HiPS PNG/JPEG tiles display like the FITS tile, whose first row is at the bottom
    out = np.empty((a.shape[2], a.shape[0], a.shape[1]), dtype=np.float32)
    out[...] = a[::-1].transpose(2, 0, 1)
    if channels == 1 and out.shape[0] > 1:
        out = out.mean(axis=0, keepdims=True, dtype=np.float32)
    elif channels is not None and channels > 1 and out.shape[0] == 1:
        out = np.repeat(out, channels, axis=0)
    if alpha is not None and fmt == "png":
        blank = alpha[::-1] == 0
        if blank.any():
            out[:, blank] = np.nan
    return out


def decode_tile(
    data: bytes,
    fmt: str,
    *,
    source: str,
    width: int | None = None,
    channels: int | None = None,
) -> np.ndarray:
    """Decode one HiPS tile into a float32 ``(C, W, W)`` array, oriented like the FITS tile.

    Parameters
    ----------
    data : bytes
        The tile file's content (FITS may be gzip-compressed).
    fmt : str
        ``"fits"``, ``"png"`` or ``"jpeg"`` (``"jpg"`` accepted).
    source : str
        Path or URL of the tile, named in error messages.
    width : int, optional
        Expected tile width; a tile of another size raises :class:`~hipsml.errors.TileDecodeError`.
        Also the original size of a trimmed FITS tile that lacks ``ONAXISn``.
    channels : int, optional
        Force the number of channels of a PNG/JPEG tile: 1 averages colour channels
        (a grey survey stored as RGB), 3 repeats a grey channel.

    Returns
    -------
    numpy.ndarray
        float32 ``(C, W, W)``; row 0 is the first FITS row; blank pixels are NaN.

    Raises
    ------
    TileDecodeError
        The bytes are not a valid tile of that format (the message names ``source``).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> buf = io.BytesIO(); fits.PrimaryHDU(np.arange(4, dtype=">i2").reshape(2, 2)).writeto(buf)
    >>> decode_tile(buf.getvalue(), "fits", source="demo").tolist()
    [[[0.0, 1.0], [2.0, 3.0]]]
    """
    key = canonical_format(fmt) or str(fmt)
    try:
        if key == "fits":
            out = _decode_fits(data, source, width)
        elif key in ("png", "jpeg"):
            out = _decode_image(data, key, source, channels, width)
        else:
            raise TileDecodeError(f"{source}: unknown tile format {fmt!r}; expected fits, png or jpeg")
    except TileDecodeError:
        raise
    except (ValueError, OverflowError, IndexError, TypeError, EOFError, OSError, MemoryError, zlib.error) as exc:
        # a malformed body must read as a corrupt tile (and be fetched again), never crash
        raise TileDecodeError(f"{source}: cannot decode this {key} tile: {type(exc).__name__}: {exc}") from None
    if out.ndim != 3:
        raise TileDecodeError(f"{source}: decoded tile has shape {out.shape}; expected (channels, width, width)")
    if channels is not None and key == "fits" and out.shape[0] != channels:
        raise TileDecodeError(f"{source}: FITS tile has {out.shape[0]} planes but the survey has {channels} channel(s)")
    if width is not None and out.shape[1:] != (width, width):
        raise TileDecodeError(
            f"{source}: tile is {out.shape[1]}x{out.shape[2]} pixels, but the survey declares tiles {width}x{width}"
        )
    return out


def allsky_columns(order: int) -> int:
    """Number of tile columns in the ``Norder{order}/Allsky`` mosaic: ``floor(sqrt(12 * 4**order))``.

    Examples
    --------
    >>> [allsky_columns(k) for k in range(4)]
    [3, 6, 13, 27]
    """
    n = 12 * 4 ** int(order)
    c = int(np.sqrt(n))
    while c * c > n:
        c -= 1
    while (c + 1) * (c + 1) <= n:
        c += 1
    return c


def split_allsky(mosaic: np.ndarray, order: int, *, source: str) -> np.ndarray:
    """Split a decoded Allsky mosaic into ``(12 * 4**order, C, w, w)`` tiles.

    The Allsky image, as *displayed* (first image row on top), holds the tiles of
    ``order`` left to right, top to bottom, ``allsky_columns(order)`` per row, each one
    drawn as its own tile image is displayed. ``mosaic`` is decoded like a tile
    (:func:`decode_tile`, flipped for PNG/JPEG), so it is flipped back to the displayed
    layout, cut, and each piece flipped again: the tiles come out oriented like
    :func:`decode_tile` output.

    Examples
    --------
    >>> m = np.zeros((1, 4 * 2, 3 * 2), np.float32)
    >>> split_allsky(m, 0, source="demo").shape
    (12, 1, 2, 2)
    """
    n = 12 * 4 ** int(order)
    ncol = allsky_columns(order)
    nrow = -(-n // ncol)
    c, h, w = mosaic.shape
    tw = w // ncol
    if tw < 1 or nrow * tw > h:
        raise TileDecodeError(
            f"{source}: Allsky image {w}x{h} cannot hold {n} tiles in {ncol} columns of {max(tw, 0)} pixels"
        )
    shown = mosaic[:, ::-1, :]
    grid = shown[:, : nrow * tw, : ncol * tw].reshape(c, nrow, tw, ncol, tw)
    tiles = grid.transpose(1, 3, 0, 2, 4).reshape(nrow * ncol, c, tw, tw)[:n]
    return np.ascontiguousarray(tiles[:, :, ::-1, :])
