"""The coverage MOC of a HiPS (``Moc.fits``): which tiles can exist at all.

A MOC (IVOA MOC 1.x, and the spatial part of MOC 2.0) lists HEALPix NESTED cells of
mixed orders. The FITS serialisation is a BINTABLE with one integer column of NUNIQ
values, ``uniq = 4 * 4**order + npix`` (MOC 2.0 may instead store ``ORDERING = 'RANGE'``:
consecutive ``[start, end)`` pairs at order 29). :class:`Moc` keeps the coverage as
sorted, disjoint, half-open ranges of order-29 cells, so a tile test is one binary search.

A survey uses its MOC to skip requests for tiles that cannot exist. A ``Moc.fits`` that
cannot be read is therefore not fatal: :func:`hipsml.open_survey` logs a warning and
reads without a MOC (every tile is then requested and absent ones come back as None).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from hipsml.errors import InvalidInputError, TileDecodeError

__all__ = ["Moc", "lonlat_bounds"]

_MAX_ORDER = 29


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort and merge half-open ranges into disjoint, non-adjacent ones."""
    if starts.size == 0:
        return starts.astype(np.int64), ends.astype(np.int64)
    order = np.argsort(starts, kind="stable")
    s = starts[order]
    e = ends[order]
    run_end = np.maximum.accumulate(e)
    # a new range starts where its start lies beyond every previous end
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    new[1:] = s[1:] > run_end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, s.size - 1)
    return s[first].astype(np.int64), run_end[last].astype(np.int64)


class Moc:
    """Spatial coverage as sorted disjoint ranges of order-29 HEALPix NESTED cells.

    Parameters
    ----------
    starts, ends : numpy.ndarray
        Half-open ranges ``[start, end)`` of order-29 cells (any order, may overlap).

    Examples
    --------
    >>> moc = Moc.from_uniq(np.array([4 * 4**1 + 5]))   # order 1, cell 5
    >>> moc.contains_tile(1, 5), moc.contains_tile(1, 6), moc.contains_tile(0, 1), moc.contains_tile(2, 21)
    (True, False, True, True)
    """

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        s = np.asarray(starts, dtype=np.int64).ravel()
        e = np.asarray(ends, dtype=np.int64).ravel()
        if s.shape != e.shape or np.any(e < s) or (s.size and (s.min() < 0 or e.max() > 12 * 4**_MAX_ORDER)):
            raise InvalidInputError("MOC ranges must be [start, end) pairs of order-29 cells with start <= end")
        keep = e > s
        self.starts, self.ends = _merge(s[keep], e[keep])

    @classmethod
    def from_uniq(cls, uniq: np.ndarray) -> Moc:
        """Build a MOC from NUNIQ values (``4 * 4**order + npix``)."""
        u = np.asarray(uniq, dtype=np.int64).ravel()
        if u.size and u.min() < 4:
            raise InvalidInputError("NUNIQ values must be >= 4")
        # order = floor(log4(u / 4)) computed exactly with integer bit lengths
        bits = np.zeros(u.shape, dtype=np.int64)
        v = u.copy()
        for step in (32, 16, 8, 4, 2, 1):
            big = v >= (np.int64(1) << step)
            bits[big] += step
            v[big] >>= step
        order = (bits - 2) // 2
        if u.size and order.max() > _MAX_ORDER:
            raise InvalidInputError("NUNIQ value of a HEALPix order above 29")
        npix = u - 4 * (np.int64(1) << (2 * order))
        shift = 2 * (_MAX_ORDER - order)
        return cls(npix << shift, (npix + 1) << shift)

    @classmethod
    def from_tiles(cls, order: int, npix: np.ndarray) -> Moc:
        """Build a MOC from the NESTED cells ``npix`` of one ``order`` (e.g. the tiles a survey holds).

        Examples
        --------
        >>> moc = Moc.from_tiles(1, np.array([5]))
        >>> moc.contains_tile(2, 21), moc.sky_fraction == 1 / 48
        (True, True)
        """
        order = int(order)
        if not 0 <= order <= _MAX_ORDER:
            raise InvalidInputError(f"HEALPix order {order} is outside 0..29")
        p = np.asarray(npix, dtype=np.int64).ravel()
        shift = 2 * (_MAX_ORDER - order)
        return cls(p << shift, (p + 1) << shift)

    @classmethod
    def from_fits(cls, data: bytes, *, source: str) -> Moc:
        """Parse the bytes of a ``Moc.fits`` file.

        Raises :class:`~hipsml.errors.TileDecodeError` naming ``source`` when the file
        is not a MOC FITS file.
        """
        from astropy.io import fits

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with fits.open(io.BytesIO(bytes(data)), ignore_missing_end=True) as hdul:
                    if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                        raise TileDecodeError(f"{source}: not a MOC (no binary table in extension 1)")
                    hdu = hdul[1]
                    ordering = str(hdu.header.get("ORDERING", "NUNIQ")).strip().upper()
                    if len(hdu.columns) < 1:
                        raise TileDecodeError(f"{source}: MOC table has no column")
                    col = np.asarray(hdu.data.field(0)).astype(np.int64).ravel()
        except TileDecodeError:
            raise
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise TileDecodeError(f"{source}: not a readable MOC FITS file ({exc})") from exc
        try:
            if ordering == "NUNIQ":
                return cls.from_uniq(col)
            if ordering == "RANGE":
                if col.size % 2:
                    raise TileDecodeError(f"{source}: RANGE MOC has an odd number of values")
                return cls(col[0::2], col[1::2])
        except InvalidInputError as exc:
            raise TileDecodeError(f"{source}: invalid MOC ({exc})") from exc
        raise TileDecodeError(f"{source}: MOC ORDERING = {ordering!r} is not supported (expected NUNIQ or RANGE)")

    def contains_tiles(self, order: int, npix: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`contains_tile`: a bool array, True where a MOC cell overlaps the tile."""
        order = int(order)
        if not 0 <= order <= _MAX_ORDER:
            raise InvalidInputError(f"HEALPix order {order} is outside 0..29")
        p = np.asarray(npix, dtype=np.int64)
        shift = 2 * (_MAX_ORDER - order)
        lo = p << shift
        hi = (p + 1) << shift
        idx = np.searchsorted(self.starts, hi, side="left") - 1
        ok = idx >= 0
        out = np.zeros(p.shape, dtype=bool)
        out[ok] = self.ends[idx[ok]] > lo[ok]
        return out

    def first_tile(self, order: int) -> int | None:
        """Index of the first tile of ``order`` that the MOC covers (wholly or in part), or None if empty.

        Examples
        --------
        >>> Moc.from_uniq(np.array([4 * 4**1 + 5])).first_tile(3)
        80
        """
        if self.starts.size == 0:
            return None
        return int(self.starts[0]) >> (2 * (_MAX_ORDER - int(order)))

    def contains_tile(self, order: int, npix: int) -> bool:
        """True when any cell of the MOC overlaps tile ``npix`` of HEALPix order ``order``."""
        return bool(self.contains_tiles(order, np.array([npix]))[0])

    @property
    def sky_fraction(self) -> float:
        """Fraction of the sphere covered."""
        return float((self.ends - self.starts).sum() / (12 * 4**_MAX_ORDER))

    def __len__(self) -> int:
        return int(self.starts.size)

    def __repr__(self) -> str:
        return f"Moc({len(self)} ranges, sky fraction {self.sky_fraction:.4g})"


def lonlat_bounds(order: int, npix: np.ndarray) -> tuple[float, float, float, float]:
    """Longitude and latitude bounds (degrees) of NESTED cells, in the frame of their HEALPix grid.

    The longitude range is the shortest arc holding every cell (edges sampled at 8 points each),
    so ``lon_min > lon_max`` when it crosses 0 (e.g. 359.5 .. 0.5 near the Galactic centre); a
    set of cells around a pole gives 0 .. 360.

    Examples
    --------
    >>> [round(v, 2) for v in lonlat_bounds(0, np.array([4]))]  # the base cell centred on (0, 0)
    [315.0, 45.0, -41.81, 41.81]
    """
    import healpy as hp

    p = np.unique(np.asarray(npix, dtype=np.int64).ravel())
    if p.size == 0:
        raise InvalidInputError("lonlat_bounds needs at least one cell")
    vec = hp.boundaries(1 << int(order), p, step=8, nest=True)  # (n, 3, 4 * step)
    lon, lat = hp.vec2ang(np.moveaxis(vec, 1, -1).reshape(-1, 3), lonlat=True)
    lon = np.sort(np.mod(np.round(lon, 9), 360.0))
    gaps = np.diff(np.append(lon, lon[0] + 360.0))
    i = int(np.argmax(gaps))
    if gaps[i] <= 1e-9 or (lat.max() >= 90.0 - 1e-9 or lat.min() <= -90.0 + 1e-9):
        lo, hi = 0.0, 360.0
    else:
        lo, hi = float(lon[(i + 1) % lon.size]), float(lon[i])
    return lo, hi, float(lat.min()), float(lat.max())
