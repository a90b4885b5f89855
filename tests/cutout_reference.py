"""Slow, independent reference for cutouts: astropy WCS + astropy frames + healpy + FITS reads.

Nothing here uses hipsml's geometry or kernels, only the tile index rule of the HiPS
standard (x = W-1-row on the even bits, y = col on the odd bits).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import healpy as hp
import numpy as np
from astropy.coordinates import BarycentricMeanEcliptic, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

ASTROPY_FRAMES = {"icrs": "icrs", "galactic": "galactic", "ecliptic": BarycentricMeanEcliptic(equinox="J2000")}


def spec_wcs(ra: float, dec: float, size: int, scale_arcsec: float, rotation: float = 0.0, proj: str = "TAN") -> WCS:
    """The cutout WCS written out from the issue's definition."""
    t = np.deg2rad(rotation)
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{proj}", f"DEC--{proj}"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    w.wcs.cd = scale_arcsec / 3600.0 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.set()
    return w


def pixel_centres_in_frame(
    ra: float, dec: float, size: int, scale_arcsec: float, frame: str, rotation: float = 0.0, proj: str = "TAN"
) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) in the survey frame, degrees, of every cutout pixel centre, shape (size, size)."""
    w = spec_wcs(ra, dec, size, scale_arcsec, rotation, proj)
    rows, cols = np.mgrid[0:size, 0:size]
    world = w.pixel_to_world(cols, rows)
    c = SkyCoord(world).transform_to(ASTROPY_FRAMES[frame])
    sph = c.spherical
    return sph.lon.deg, sph.lat.deg


def _compact(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v)
    for b in range(30):
        out |= ((v >> (2 * b)) & 1) << b
    return out


class TileReader:
    """Reads FITS tiles straight from a HiPS directory with astropy (cached)."""

    def __init__(self, root: Path, order: int, width: int) -> None:
        self.root = Path(root)
        self.order = order
        self.width = width
        self.cache: dict[int, np.ndarray | None] = {}

    def tile(self, npix: int) -> np.ndarray | None:
        if npix not in self.cache:
            path = self.root / f"Norder{self.order}" / f"Dir{(npix // 10000) * 10000}" / f"Npix{npix}.fits"
            if path.exists():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with fits.open(path, ignore_missing_end=True) as hdul:
                        self.cache[npix] = np.asarray(hdul[0].data, dtype=np.float64)
            else:
                self.cache[npix] = None
        return self.cache[npix]

    def values_at_cells(self, cells: np.ndarray) -> np.ndarray:
        """Values of NESTED cells at order ``order + log2(width)``; NaN where the tile is absent."""
        s = self.width.bit_length() - 1
        tiles = cells >> (2 * s)
        local = cells & ((1 << (2 * s)) - 1)
        x = _compact(local)
        y = _compact(local >> 1)
        out = np.full(cells.shape, np.nan)
        for npix in np.unique(tiles):
            data = self.tile(int(npix))
            if data is None:
                continue
            sel = tiles == npix
            out[sel] = data[self.width - 1 - x[sel], y[sel]]
        return out


def reference_nearest(
    reader: TileReader,
    frame: str,
    ra: float,
    dec: float,
    size: int,
    scale_arcsec: float,
    rotation: float = 0.0,
    proj: str = "TAN",
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-cell cutout and the NESTED cell of each pixel, the slow way."""
    lon, lat = pixel_centres_in_frame(ra, dec, size, scale_arcsec, frame, rotation, proj)
    s = reader.width.bit_length() - 1
    cells = hp.ang2pix(1 << (reader.order + s), lon, lat, lonlat=True, nest=True)
    return reader.values_at_cells(cells), cells
