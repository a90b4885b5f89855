"""Writing HiPS directories: frames, ``properties``, FITS and PNG tiles, ``Moc.fits``.

This is the only module of :mod:`hipsml.sky` that touches the disk. Every file is
written under a temporary name and renamed into place (:func:`hipsml._files.atomic_write_bytes`),
and a whole survey (or a whole synthetic sky) is built in a sibling staging folder
``{path}.tmp-XXXX`` that is renamed to ``path`` only once complete, so a reader never sees
half a survey. Whether the output folder can be written is checked before any work
(:func:`check_target`); an operating-system error while writing (a read-only or full file
system, a path through a file) becomes an :class:`~hipsml.errors.OutputError` naming the
path, and the staging folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from hipsml._files import atomic_write_bytes, check_name_lengths, file_mode, replace_folder, user_path
from hipsml._timestamps import utc_now
from hipsml.errors import InvalidInputError, OutputError
from hipsml.hips import COORDSYS, HIPS_FRAME_NAMES, canonical_format, canonical_frame, icrs_to_frame, tile_path

__all__ = [
    "SurveyFrame",
    "parse_frame",
    "parse_formats",
    "check_target",
    "probe_folder",
    "staged_directory",
    "write_fits_tile",
    "write_png_tile",
    "write_properties",
    "write_moc",
    "pixel_cut",
    "directory_size",
    "release_date",
]

logger = logging.getLogger(__name__)

_BLANK = {16: -32768, 32: -2147483648}
_INT_DTYPE = {16: np.int16, 32: np.int32}
#: the tile formats hipsml.sky writes (spelled as hipsml.hips.TILE_FORMATS)
_FORMATS = ("fits", "png")


@dataclass(frozen=True)
class SurveyFrame:
    """A HiPS celestial frame and the rotation from it to ICRS.

    Attributes
    ----------
    name : str
        ``"icrs"``, ``"galactic"`` or ``"ecliptic"``.
    hips_frame : str
        The ``hips_frame`` property value (``equatorial``, ``galactic``, ``ecliptic``).
    coordsys : str
        The legacy one-letter ``coordsys`` (``C``, ``G``, ``E``), also the MOC ``COORDSYS``.
    to_icrs : numpy.ndarray
        ``(3, 3)`` rotation matrix: ``v_icrs = to_icrs @ v_frame`` for unit vectors.
    """

    name: str
    hips_frame: str
    coordsys: str
    to_icrs: np.ndarray

    def vectors_to_icrs(self, vec: np.ndarray) -> np.ndarray:
        """Rotate ``(..., 3)`` unit vectors from this frame to ICRS."""
        return vec @ self.to_icrs.T

    def vectors_from_icrs(self, vec: np.ndarray) -> np.ndarray:
        """Rotate ``(..., 3)`` ICRS unit vectors into this frame."""
        return vec @ self.to_icrs


def _rotation_to_icrs(frame_name: str) -> np.ndarray:
    """The 3x3 rotation from ``frame_name`` to ICRS (the transpose of ICRS -> frame)."""
    return np.ascontiguousarray(icrs_to_frame(frame_name).T)


_FRAME_CACHE: dict[str, SurveyFrame] = {}


def parse_frame(frame: str) -> SurveyFrame:
    """Normalise a frame name (``icrs``/``equatorial``/``C``, ``galactic``/``G``, ``ecliptic``/``E``).

    The spellings are those of :data:`hipsml.hips.FRAME_ALIASES` (the one frame table);
    ``ecliptic`` is astropy's ``BarycentricMeanEcliptic`` with equinox J2000.

    Examples
    --------
    >>> parse_frame("equatorial").hips_frame
    'equatorial'
    >>> parse_frame("G").name, parse_frame("G").coordsys
    ('galactic', 'G')
    """
    key = canonical_frame(frame)
    if key is None:
        raise InvalidInputError(f"frame must be one of icrs, galactic, ecliptic; got {frame!r}")
    if key not in _FRAME_CACHE:
        _FRAME_CACHE[key] = SurveyFrame(key, HIPS_FRAME_NAMES[key], COORDSYS[key], _rotation_to_icrs(key))
    return _FRAME_CACHE[key]


def parse_formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    """Validate tile formats: ``fits`` is always written; ``png`` is optional.

    Spellings are those of :func:`hipsml.hips.canonical_format` (any case).

    Examples
    --------
    >>> parse_formats(["PNG", "fits"])
    ('fits', 'png')
    """
    if isinstance(formats, str):
        formats = (formats,)
    try:
        names = [f for f in formats if not isinstance(f, str) or f.strip()]
    except TypeError:
        raise InvalidInputError(f"formats must be a list of tile formats (fits, png); got {formats!r}") from None
    out = []
    for f in names:
        fmt = canonical_format(f)
        if fmt is None:
            raise InvalidInputError(f"formats: unknown tile format {f!r}; expected fits and/or png")
        if fmt not in _FORMATS:
            raise InvalidInputError(f"formats: hipsml.sky writes fits and png tiles, not {fmt}")
        out.append(fmt)
    if "fits" not in out:
        raise InvalidInputError(f"formats must include 'fits' (the data tiles); got {tuple(out)!r}")
    return tuple(f for f in _FORMATS if f in out)


#: characters ``tempfile.mkdtemp`` adds to a staging folder's name (``.tmp-`` and 8 random)
_STAGING_SUFFIX = len(".tmp-") + 8


def _dir_mode() -> int:
    """The mode of a new folder under this process's umask: a read bit brings its search bit."""
    mode = file_mode()
    return mode | ((mode & 0o444) >> 2)


def check_target(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check, before any work, that an output folder can be published at ``path``; return it absolute.

    Refused: a path that is not a path (``None``, NUL, ``~nouser``), an existing file, a
    non-empty folder without ``overwrite``, a name too long for the file system (with room
    for the staging suffix), a parent that is a file or not writable.

    Raises
    ------
    InvalidInputError
        ``path`` is not a usable path, is a file, or is a non-empty folder and ``overwrite`` is False.
    OutputError
        The folder cannot be created there.
    """
    target = user_path(path, what="output folder").absolute()
    parent = next((p for p in target.parents if _exists(p)), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"cannot write {target}: {parent} is a file, not a folder")
    folder = parent if parent is not None else Path("/")
    limit = check_name_lengths(target, folder)
    if len(os.fsencode(target.name)) + _STAGING_SUFFIX > limit:
        raise OutputError(
            f"cannot write {target}: the name {target.name[:40]!r}... leaves no room, within the file system's "
            f"{limit} bytes, for the {_STAGING_SUFFIX} characters of its staging folder; choose a shorter name"
        )
    if target.exists():
        if not target.is_dir():
            raise InvalidInputError(f"path {target} exists and is not a directory")
        if not overwrite and any(target.iterdir()):
            raise InvalidInputError(f"path {target} exists and is not empty; pass overwrite=True to replace it")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {target}: {folder} is not writable")
    probe_folder(folder, target)
    return target


def probe_folder(folder: Path, target: Path) -> None:
    """Create and remove an empty folder in ``folder``: what the permission bits do not tell.

    A read-only mount, ``/sys`` or ``/proc`` grant root every permission bit yet refuse to
    create anything; this finds out before the work instead of after it.

    Raises
    ------
    OutputError
        Nothing can be created in ``folder`` (the message names ``target`` and the reason).
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hipsml-probe-", dir=folder))
    except OSError as exc:
        raise OutputError(
            f"cannot write {target}: cannot create anything in {folder} ({exc.strerror or exc})"
        ) from None


def _exists(path: Path) -> bool:
    """``path.exists()``, False where the path cannot even be looked up (a name too long)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP):
            return False
        raise OutputError(f"cannot look at {path}: {exc.strerror or exc}") from None
    return True


@contextlib.contextmanager
def staged_directory(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary sibling name and publish it by renaming.

    Yields the staging folder ``{path}.tmp-XXXX``. When the block succeeds the staging
    folder is renamed to ``path``; when it fails it is removed and ``path`` is untouched.
    An existing non-empty ``path`` is refused unless ``overwrite=True``.
    """
    target = check_target(path, overwrite=overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
        os.chmod(staging, _dir_mode())  # mkdtemp makes 0700; a survey is meant to be shared
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        yield staging
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OutputError):  # name the folder the user asked for, not the staging one
            raise OutputError(str(exc).replace(os.fspath(staging), os.fspath(target))) from None
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    try:
        replace_folder(staging, target)  # moves an existing folder aside, restores it if the rename fails
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot publish {target}: {exc.strerror or exc}") from None
    logger.info("published %s", target)


def _fits_bytes(hdul: fits.HDUList) -> bytes:
    import io

    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def _integer_hdu(data: np.ndarray, bitpix: int) -> fits.PrimaryHDU:
    """Scale float data to a BITPIX 16/32 HDU with BSCALE/BZERO/BLANK (per tile)."""
    blank = _BLANK[bitpix]
    top = -blank - 1  # 32767 or 2**31 - 1
    finite = np.isfinite(data)
    if finite.any():
        lo = float(np.min(data[finite]))
        hi = float(np.max(data[finite]))
    else:
        lo = hi = 0.0
    if hi > lo:
        bscale = (hi - lo) / (2.0 * top)
        bzero = 0.5 * (hi + lo)
    else:
        bscale, bzero = 1.0, lo
    scaled = np.zeros(data.shape, dtype=np.float64)
    scaled[finite] = np.clip(np.round((data[finite].astype(np.float64) - bzero) / bscale), -top, top)
    ints = np.where(finite, scaled, blank).astype(_INT_DTYPE[bitpix])
    hdu = fits.PrimaryHDU(ints)
    hdu.header["BSCALE"] = bscale
    hdu.header["BZERO"] = bzero
    hdu.header["BLANK"] = blank
    return hdu


def write_fits_tile(
    root: Path, order: int, npix: int, data: np.ndarray, *, bitpix: int = -32, extra: Mapping[str, object] | None = None
) -> Path:
    """Write one FITS tile ``Norder{k}/Dir{d}/Npix{n}.fits`` atomically; return its path.

    ``bitpix`` -32 writes float32 with NaN blanks; 16 and 32 write scaled integers with
    ``BSCALE``/``BZERO``/``BLANK`` chosen per tile so the values survive to
    ``(max - min) / 65534`` (16) or ``/ 4294967294`` (32).
    """
    if bitpix == -32:
        hdu = fits.PrimaryHDU(np.ascontiguousarray(data, dtype=np.float32))
    elif bitpix in _BLANK:
        hdu = _integer_hdu(np.asarray(data, dtype=np.float64), bitpix)
    else:
        raise InvalidInputError(f"bitpix must be -32, 16 or 32; got {bitpix!r}")
    hdu.header["ORDER"] = (int(order), "HiPS order of this tile")
    hdu.header["NPIX"] = (int(npix), "HEALPix NESTED index of this tile")
    for key, value in (extra or {}).items():
        hdu.header[key] = value
    dest = root / tile_path(order, npix, "fits")
    atomic_write_bytes(dest, _fits_bytes(fits.HDUList([hdu])))
    return dest


def write_png_tile(root: Path, order: int, npix: int, data: np.ndarray, cut: tuple[float, float]) -> Path:
    """Write one 8-bit greyscale PNG tile scaled linearly by ``cut``; NaN becomes 0.

    The image is flipped vertically so that it displays like the FITS tile
    (PNG row 0 is the last FITS row).
    """
    import io

    from PIL import Image

    lo, hi = float(cut[0]), float(cut[1])
    span = hi - lo if hi > lo else 1.0
    scaled = np.clip((np.asarray(data, dtype=np.float64) - lo) / span * 255.0, 0.0, 255.0)
    img = np.where(np.isfinite(scaled), np.round(scaled), 0.0).astype(np.uint8)[::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img), mode="L").save(buf, format="PNG")
    dest = root / tile_path(order, npix, "png")
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def pixel_cut(samples: Iterable[np.ndarray], percentiles: tuple[float, float] = (0.5, 99.5)) -> tuple[float, float]:
    """Display cut ``(lo, hi)`` from the finite values of ``samples`` (``hips_pixel_cut``)."""
    values = [np.asarray(s, dtype=np.float64).ravel() for s in samples]
    flat = np.concatenate(values) if values else np.zeros(0)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    if flat.size > 2_000_000:
        flat = flat[:: flat.size // 2_000_000 + 1]
    lo, hi = (float(v) for v in np.percentile(flat, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def write_properties(root: Path, fields: Mapping[str, object]) -> Path:
    """Write the HiPS ``properties`` file (``key = value`` lines, in the given order)."""
    width = max(len(k) for k in fields)
    lines = [f"{k.ljust(width)} = {v}" for k, v in fields.items()]
    dest = root / "properties"
    atomic_write_bytes(dest, ("\n".join(lines) + "\n").encode("utf-8"))
    return dest


def _normalise_moc(order: int, cells: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Merge complete groups of 4 siblings into their parent: ``[(order, cells), ...]``."""
    out: list[tuple[int, np.ndarray]] = []
    current = np.unique(np.asarray(cells, dtype=np.int64))
    for k in range(order, 0, -1):
        parents, counts = np.unique(current >> 2, return_counts=True)
        full = parents[counts == 4]
        keep = current[~np.isin(current >> 2, full)]
        if keep.size:
            out.append((k, keep))
        current = full
        if current.size == 0:
            break
    else:
        if current.size:
            out.append((0, current))
    return out


def write_moc(root: Path, order: int, cells: np.ndarray, *, coordsys: str = "C") -> Path:
    """Write ``Moc.fits``: an IVOA MOC (NUNIQ) covering ``cells`` (NESTED indices at ``order``).

    Complete groups of four sibling cells are merged into their parent, so the MOC is
    the normalised form of exactly the given cells. ``COORDSYS`` is ``coordsys``
    (``C`` equatorial, ``G`` galactic, ``E`` ecliptic).
    """
    parts = _normalise_moc(order, cells)
    uniq = np.sort(np.concatenate([4 * 4**k + c for k, c in parts] or [np.zeros(0, np.int64)])).astype(np.int64)
    col = fits.Column(name="UNIQ", format="K", array=uniq)
    table = fits.BinTableHDU.from_columns([col])
    hdr = table.header
    hdr["PIXTYPE"] = "HEALPIX"
    hdr["ORDERING"] = "NUNIQ"
    hdr["COORDSYS"] = coordsys
    hdr["MOCORDER"] = int(order)
    hdr["MOCDIM"] = "SPACE"
    hdr["MOCVERS"] = "2.0"
    hdr["MOCTOOL"] = "hipsml"
    dest = root / "Moc.fits"
    atomic_write_bytes(dest, _fits_bytes(fits.HDUList([fits.PrimaryHDU(), table])))
    return dest


def release_date() -> str:
    """Current UTC time in the HiPS ``hips_release_date`` form ``YYYY-mm-ddTHH:MMZ``."""
    return utc_now().strftime("%Y-%m-%dT%H:%MZ")


def directory_size(root: Path) -> tuple[int, int]:
    """``(files, bytes)`` under ``root``."""
    n = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            n += 1
            size += os.path.getsize(os.path.join(dirpath, name))
    return n, size
