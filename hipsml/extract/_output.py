"""Writing cutouts to disk: FITS with their exact WCS and provenance, display PNGs, NPY arrays.

Every writer goes through :func:`hipsml._files.atomic_write`: the bytes go to a temporary
file beside the destination, which is renamed over it only once complete, so a reader never
sees half a file. A failure to write (missing permission, a parent that is a file, a name
too long, a full disk) becomes an :class:`~hipsml.errors.OutputError` naming the path; a
path that is not a path (``None``, a number, text holding NUL, ``~nouser``) is an
:class:`~hipsml.errors.InvalidInputError`.

The format is chosen by the suffix (:func:`write_cutout`):

``.fits`` / ``.fit``
    Primary HDU ``(C, size, size)`` float32 (2-D when ``C == 1``), NaN where uncovered,
    with the WCS of :func:`~hipsml.extract.cutout_wcs` (``CDi_j`` form) and provenance
    keywords (see :func:`write_cutout_fits`).
``.png``
    8-bit display image, greyscale for one channel, RGB for three, north up on screen
    (see :func:`write_cutout_png`).
``.npy``
    The float32 array ``(C, size, size)`` as :func:`numpy.save` writes it (row 0 south).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hipsml._files import atomic_write, atomic_write_bytes, check_writable_file, user_path
from hipsml._timestamps import utc_now
from hipsml.errors import IndexOutOfRangeError, InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from astropy.io import fits

    from hipsml.extract._cutouts import CutoutResult

__all__ = [
    "OUTPUT_FORMATS",
    "output_format",
    "write_npy",
    "asinh_levels",
    "paint_missing",
    "MISSING_COLOUR",
    "cutout_header",
    "write_cutout",
    "write_cutout_fits",
    "write_cutout_png",
    "write_cutout_npy",
]

logger = logging.getLogger(__name__)

#: file suffix (lower case) -> output format
OUTPUT_FORMATS = {".fits": "fits", ".fit": "fits", ".png": "png", ".npy": "npy"}


def output_format(path: str | os.PathLike[str]) -> str:
    """The output format (``"fits"``, ``"png"`` or ``"npy"``) named by the suffix of ``path``.

    Raises
    ------
    InvalidInputError
        ``path`` is not a usable path, or its suffix is not one of :data:`OUTPUT_FORMATS`.

    Examples
    --------
    >>> output_format("m31.FITS"), output_format("out/m31.png")
    ('fits', 'png')
    """
    suffix = user_path(path, what="output").suffix.lower()
    try:
        return OUTPUT_FORMATS[suffix]
    except KeyError:
        known = ", ".join(OUTPUT_FORMATS)
        raise InvalidInputError(
            f"cannot write {os.fspath(path)!r}: unknown file extension {suffix or '(none)'!r}; use one of {known}"
        ) from None


def write_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as a ``.npy`` file, atomically; return the path.

    Examples
    --------
    >>> import tempfile, os
    >>> p = write_npy(os.path.join(tempfile.mkdtemp(), "x.npy"), np.arange(3, dtype=np.float32))
    >>> np.load(p).tolist()
    [0.0, 1.0, 2.0]
    """
    dest = check_writable_file(path)
    with atomic_write(dest) as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return dest


def _check_index(result: CutoutResult, index: int) -> int:
    images = getattr(result, "images", None)
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise InvalidInputError(f"expected the CutoutResult returned by hipsml.cutouts, got {type(result).__name__}")
    n = images.shape[0]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise InvalidInputError(f"cutout index must be an integer, got {index!r}")
    if not -n <= index < n:
        raise IndexOutOfRangeError(f"cutout index {index!r} is out of range for a result of {n} cutouts")
    return int(index) % n


def _check_percentiles(percentiles: Any) -> tuple[float, float]:
    """``(lo, hi)`` percentiles with ``0 <= lo < hi <= 100``."""
    try:
        lo, hi = percentiles
        lo, hi = float(lo), float(hi)  # complex and text refuse float()
    except (TypeError, ValueError):
        raise InvalidInputError(f"percentiles must be two numbers (lo, hi) in 0..100, got {percentiles!r}") from None
    if not 0.0 <= lo < hi <= 100.0:
        raise InvalidInputError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles!r}")
    return lo, hi


def _check_softening(softening: Any) -> float:
    try:
        value = float(softening)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(softening, bool) or not (math.isfinite(value) and value > 0.0):
        raise InvalidInputError(f"softening must be a positive, finite number, got {softening!r}")
    return value


# ------------------------------------------------------------------------------------ PNG


def asinh_levels(
    image: np.ndarray,
    *,
    limits: Sequence[tuple[float, float]] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    softening: float = 0.1,
) -> np.ndarray:
    """Scale a ``(C, H, W)`` float image to uint8 with a robust asinh stretch, channel by channel.

    Each channel is mapped linearly from ``[lo, hi]`` to ``[0, 1]`` (clipped), then by
    ``asinh(x / softening) / asinh(1 / softening)`` and to ``0..255``. ``(lo, hi)`` are the
    ``percentiles`` of the channel's finite values unless ``limits`` gives them. Non-finite
    pixels and channels with no spread (``hi <= lo``) become 0.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, H, W)`` values; NaN where blank.
    limits : sequence of (lo, hi), optional
        One pair per channel (e.g. shared by several images); default: the percentiles.
    percentiles : (float, float)
        Lower and upper percentiles giving ``(lo, hi)``.
    softening : float
        The asinh knee, as a fraction of ``hi - lo``: small values lift faint structure more.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` uint8, same orientation as ``image``.

    Examples
    --------
    >>> img = np.linspace(0.0, 1.0, 16, dtype=np.float32).reshape(1, 4, 4)
    >>> out = asinh_levels(img, limits=[(0.0, 1.0)])
    >>> int(out[0, 0, 0]), int(out[0, -1, -1])
    (0, 255)
    """
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 3:
        raise InvalidInputError(f"asinh_levels expects a (C, H, W) image, got shape {data.shape}")
    if limits is not None and len(limits) != data.shape[0]:
        raise InvalidInputError(f"limits gives {len(limits)} pairs for {data.shape[0]} channels")
    softening = _check_softening(softening)
    percentiles = _check_percentiles(percentiles)
    out = np.zeros(data.shape, dtype=np.uint8)
    norm = np.arcsinh(1.0 / softening)
    for c in range(data.shape[0]):
        chan = data[c]
        finite = np.isfinite(chan)
        if limits is not None:
            lo, hi = (float(v) for v in limits[c])
        elif finite.any():
            lo, hi = (float(v) for v in np.percentile(chan[finite], percentiles))
        else:
            continue
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            continue
        x = np.clip((np.where(finite, chan, lo) - lo) / (hi - lo), 0.0, 1.0)
        y = np.arcsinh(x / softening) / norm
        out[c] = np.where(finite, np.round(y * 255.0), 0).astype(np.uint8)
    return out


#: the colour of pixels without data in previews and thumbnails (magenta: no grey stretch makes it, and
#: :func:`paint_missing` keeps a covered RGB pixel from being exactly it)
MISSING_COLOUR = (255, 0, 255)


def paint_missing(pixels: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """An RGB picture of ``pixels`` with the ``missing`` ones in :data:`MISSING_COLOUR`.

    Missing data then cannot be mistaken for faint (black) sky. A covered pixel never comes out
    in that colour: a grey one cannot be magenta, and an RGB one that happens to be exactly
    (255, 0, 255) is drawn (255, 1, 255).

    Parameters
    ----------
    pixels : numpy.ndarray
        8-bit levels, ``(H, W)`` grey or ``(H, W, 3)`` RGB, as drawn (north up).
    missing : numpy.ndarray
        ``(H, W)`` bool, True where there is no data (a NaN in any channel shown), same orientation.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8.

    Examples
    --------
    >>> paint_missing(np.array([[0, 7]], np.uint8), np.array([[True, False]])).tolist()
    [[[255, 0, 255], [7, 7, 7]]]
    """
    levels = np.asarray(pixels, dtype=np.uint8)
    mask = np.asarray(missing, dtype=bool)
    rgb = np.repeat(levels[..., None], 3, axis=-1) if levels.ndim == 2 else levels.copy()
    if rgb.shape[:2] != mask.shape or rgb.shape[-1] != 3:
        raise InvalidInputError(f"paint_missing: pixels {levels.shape} and missing {mask.shape} do not match")
    clash = np.all(rgb == np.array(MISSING_COLOUR, dtype=np.uint8), axis=-1) & ~mask
    rgb[clash, 1] = 1
    rgb[mask] = MISSING_COLOUR
    return rgb


def write_cutout_png(
    path: str | os.PathLike[str],
    result: CutoutResult,
    index: int = 0,
    *,
    stretch: str = "asinh",
    percentiles: tuple[float, float] = (0.5, 99.5),
    softening: float = 0.1,
) -> Path:
    """Write cutout ``index`` of ``result`` as an 8-bit display PNG, north up.

    One channel gives a greyscale image, three give RGB (channels in order R, G, B).
    With ``stretch="asinh"`` each channel is stretched on its own by :func:`asinh_levels`;
    ``stretch="linear"`` keeps values as they are, clipped to 0..255, which suits cutouts
    of PNG/JPEG surveys whose tiles are already display images. The image is flipped
    vertically, since array row 0 is the south edge while PNG row 0 is the top, so north
    is up and east left on screen. Pixels not covered by a survey (NaN) are black; when a
    cutout has any, an alpha channel is added (mode ``LA`` or ``RGBA``) in which they are
    fully transparent. Fully covered cutouts are written as ``L`` or ``RGB``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.png``.
    result : CutoutResult
        The output of :func:`hipsml.extract.cutouts`.
    index : int
        Which cutout of ``result``.
    stretch : {"asinh", "linear"}
        How values become 8-bit levels.
    percentiles, softening
        Passed to :func:`asinh_levels`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InvalidInputError
        The cutout has neither 1 nor 3 channels, or an option is out of range.
    OutputError
        ``path`` cannot be written.

    Examples
    --------
    >>> write_cutout_png("m31.png", result, 0)  # doctest: +SKIP
    """
    from PIL import Image

    dest = check_writable_file(path)
    i = _check_index(result, index)
    percentiles = _check_percentiles(percentiles)
    softening = _check_softening(softening)
    image = result.images[i]
    nch = image.shape[0]
    if nch not in (1, 3):
        raise InvalidInputError(
            f"a PNG holds 1 (greyscale) or 3 (RGB) channels but the cutout has {nch} "
            f"({', '.join(result.channels)}); write .fits or .npy, or cut from 1 or 3 surveys"
        )
    if stretch == "asinh":
        pixels = asinh_levels(image, percentiles=percentiles, softening=softening)[:, ::-1, :]
    elif stretch == "linear":
        levels = np.clip(np.nan_to_num(image, nan=0.0), 0.0, 255.0)
        pixels = np.rint(levels).astype(np.uint8)[:, ::-1, :]
    else:
        raise InvalidInputError(f"unknown PNG stretch {stretch!r}; use 'asinh' or 'linear'")
    covered = np.all(np.isfinite(image), axis=0)[::-1, :]
    planes = [pixels[c] for c in range(nch)]
    mode = "L" if nch == 1 else "RGB"
    if not covered.all():
        planes.append(np.where(covered, 255, 0).astype(np.uint8))
        mode += "A"
    array = np.ascontiguousarray(np.stack(planes, axis=-1) if len(planes) > 1 else planes[0])
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return atomic_write_bytes(dest, buf.getvalue())


# ----------------------------------------------------------------------------------- FITS


def _ascii(value: str) -> str:
    """Printable ASCII for a FITS card: non-ASCII escaped, control characters as spaces."""
    text = value.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text)


def cutout_header(result: CutoutResult, index: int = 0) -> fits.Header:
    """The FITS header of cutout ``index``: its WCS (``CDi_j`` form) and provenance keywords.

    The WCS is that of :meth:`CutoutResult.wcs` (:func:`~hipsml.extract.cutout_wcs`); the
    PC/CDELT pair astropy writes is folded into the equivalent ``CDi_j`` matrix. With more
    than one channel a third, linear axis ``CTYPE3 = 'CHANNEL'`` numbers the planes 1..C
    (``WCS(header).celestial`` is then the cutout WCS). Provenance:
    ``ORIGIN``, ``HIPSMLV`` (hipsml version), ``DATE`` (UTC, when written), ``NSURVEY``,
    ``HIPS1``.. (survey locations), ``HIPSORD1``.. (HiPS order read from each), ``INTERP``,
    ``PROJ``, ``ROTATION`` (deg), ``PIXSCALE`` (arcsec/pixel), ``NCHAN`` and ``CHANNEL1``..
    (channel names, one per image plane).

    Examples
    --------
    >>> header = cutout_header(result, 0)  # doctest: +SKIP
    >>> header["HIPSORD1"]  # doctest: +SKIP
    9
    """
    from astropy.io import fits

    import hipsml

    i = _check_index(result, index)
    wcs_cards = result.wcs(i).to_header()
    cdelt = [float(wcs_cards.get(f"CDELT{k}", 1.0)) for k in (1, 2)]
    cube = len(result.channels) > 1
    header = fits.Header()
    # a cube gets a third, linear axis numbering the channels 1..C, so that WCS(header)
    # is a consistent 3-D WCS whose .celestial is the cutout WCS
    header["WCSAXES"] = (3 if cube else 2, "number of coordinate axes")
    header["CTYPE1"] = (wcs_cards["CTYPE1"], f"RA, {result.projection} projection")
    header["CTYPE2"] = (wcs_cards["CTYPE2"], f"Dec, {result.projection} projection")
    for key in ("CUNIT1", "CUNIT2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
        header[key] = (wcs_cards[key], wcs_cards.comments[key])
    for r in (1, 2):
        for c in (1, 2):
            pc = float(wcs_cards.get(f"PC{r}_{c}", 1.0 if r == c else 0.0))
            header[f"CD{r}_{c}"] = (pc * cdelt[r - 1], "[deg/pixel] coordinate transformation matrix")
    if cube:
        header["CTYPE3"] = ("CHANNEL", "channel number (names in CHANNELn)")
        header["CRVAL3"] = (1.0, "channel number at CRPIX3")
        header["CRPIX3"] = (1.0, "pixel coordinate of reference point")
        header["CD3_3"] = (1.0, "channel increment")
    for key in ("RADESYS", "LONPOLE", "LATPOLE"):
        if key in wcs_cards:
            header[key] = (wcs_cards[key], wcs_cards.comments[key])
    header["ORIGIN"] = ("hipsml", "cutout from HiPS tiles")
    header["HIPSMLV"] = (hipsml.__version__, "hipsml version")
    header["DATE"] = (utc_now().strftime("%Y-%m-%dT%H:%M:%S"), "UTC date of writing")
    header["NSURVEY"] = (len(result.surveys), "number of HiPS surveys")
    for k, (location, order) in enumerate(zip(result.surveys, result.orders, strict=True), start=1):
        text = _ascii(str(location))
        # a long location continues over CONTINUE cards, where a comment would be cut
        header[f"HIPS{k}"] = (text, f"location of HiPS survey {k}") if len(text) <= 40 else text
        header[f"HIPSORD{k}"] = (int(order), f"HiPS order read from survey {k}")
    header["INTERP"] = (result.interpolation, "interpolation in the HEALPix grid")
    header["PROJ"] = (result.projection, "cutout projection")
    header["ROTATION"] = (float(result.rotation[i]), "[deg] cutout rotation")
    header["PIXSCALE"] = (float(result.pixel_scale), "[arcsec/pixel] pixel scale")
    header["NCHAN"] = (len(result.channels), "number of channels (image planes)")
    for k, name in enumerate(result.channels, start=1):
        header[f"CHANNEL{k}"] = (_ascii(name), f"name of channel {k}")
    return header


def write_cutout_fits(
    path: str | os.PathLike[str], result: CutoutResult, index: int = 0, *, cards: Sequence[tuple[str, Any, str]] = ()
) -> Path:
    """Write cutout ``index`` of ``result`` as a FITS file with its WCS and provenance.

    The primary HDU holds the float32 image, ``(C, size, size)`` or ``(size, size)`` when
    ``C == 1``, NaN where no survey covers the pixel, with the header of
    :func:`cutout_header`. FITS pixel ``(1, 1)`` is array element ``[0, 0]`` (south-east
    corner for rotation 0).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.fits``.
    result : CutoutResult
        The output of :func:`hipsml.extract.cutouts`.
    index : int
        Which cutout of ``result``.
    cards : sequence of (keyword, value, comment)
        More header cards, after the provenance (e.g. the dataset's, from
        :meth:`hipsml.Dataset.fits_cards`).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> write_cutout_fits("m31.fits", result, 0)  # doctest: +SKIP
    """
    from astropy.io import fits

    dest = check_writable_file(path)
    i = _check_index(result, index)
    data = np.ascontiguousarray(result.images[i], dtype=np.float32)
    if data.shape[0] == 1:
        data = data[0]
    header = cutout_header(result, i)
    for keyword, value, comment in cards:
        header[keyword] = (value, comment)
    hdu = fits.PrimaryHDU(data=data, header=header)
    buf = io.BytesIO()
    hdu.writeto(buf)
    return atomic_write_bytes(dest, buf.getvalue())


def write_cutout_npy(path: str | os.PathLike[str], result: CutoutResult, index: int = 0) -> Path:
    """Write cutout ``index`` of ``result`` as a float32 ``(C, size, size)`` ``.npy`` array (row 0 south).

    Examples
    --------
    >>> write_cutout_npy("m31.npy", result, 0)  # doctest: +SKIP
    """
    dest = check_writable_file(path)
    i = _check_index(result, index)
    return write_npy(dest, np.ascontiguousarray(result.images[i], dtype=np.float32))


_WRITERS: dict[str, Callable[..., Path]] = {"fits": write_cutout_fits, "png": write_cutout_png, "npy": write_cutout_npy}
#: the options each writer takes (write_cutout passes them on)
_OPTIONS = {"fits": (), "png": ("stretch", "percentiles", "softening"), "npy": ()}


def write_cutout(path: str | os.PathLike[str], result: CutoutResult, index: int = 0, **options: object) -> Path:
    """Write cutout ``index`` of ``result`` in the format named by the suffix of ``path``.

    ``.fits``/``.fit`` -> :func:`write_cutout_fits`, ``.png`` -> :func:`write_cutout_png`,
    ``.npy`` -> :func:`write_cutout_npy`. ``options`` go to the writer (``stretch`` for PNG).

    Raises
    ------
    InvalidInputError
        ``path`` is not a path, its suffix is unknown, the index is out of range, or an
        option is unknown to the format or out of range.
    OutputError
        ``path`` cannot be written.

    Examples
    --------
    >>> import hipsml
    >>> from hipsml.extract import cutouts
    >>> result = cutouts(hipsml.open_survey("demo-output/sky/r"), ([150.0], [2.0]), size=64)
    >>> write_cutout("r.fits", result)
    PosixPath('r.fits')
    """
    fmt = output_format(path)
    unknown = sorted(set(options) - set(_OPTIONS[fmt]))
    if unknown:
        takes = ", ".join(_OPTIONS[fmt]) or "no options"
        raise InvalidInputError(f"cannot write .{fmt} with option(s) {', '.join(unknown)}; it takes {takes}")
    dest = _WRITERS[fmt](path, result, index, **options)
    logger.info("wrote cutout %d to %s", index, dest)
    return dest
