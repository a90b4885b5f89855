"""Cutout geometry: the WCS of a cutout, its fixed grid of unit vectors, and frame rotations.

All pure functions on arrays. A batch of cutouts shares one grid of unit vectors in the
local (radial, east, north) basis; each target only contributes a 3x3 matrix that turns that
basis into the survey's frame, so no per-cutout WCS object is ever built on the hot path.
"""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

from hipsml.errors import InvalidInputError
from hipsml.hips._frames import icrs_to_frame

__all__ = [
    "PROJECTIONS",
    "cutout_wcs",
    "pixel_grid_vectors",
    "target_bases",
    "frame_matrix",
    "healpix_cell_size_arcsec",
]

PROJECTIONS = ("TAN", "SIN")


def _check_projection(projection: str) -> str:
    proj = str(projection).upper()
    if proj not in PROJECTIONS:
        raise InvalidInputError(f"unsupported projection {projection!r}; choose one of {', '.join(PROJECTIONS)}")
    return proj


def cutout_wcs(
    ra: float,
    dec: float,
    *,
    size: int,
    pixel_scale: float,
    projection: str = "TAN",
    rotation: float = 0.0,
) -> WCS:
    """The astropy WCS of a hipsml cutout.

    CRVAL is the target, CRPIX is ``(size/2 + 0.5, size/2 + 0.5)`` and
    ``CD = scale * [[-cos t, sin t], [sin t, cos t]]`` (degrees), so north is up, east is
    left and array row 0 is the south edge.

    Parameters
    ----------
    ra, dec : float
        ICRS position of the cutout centre, degrees.
    size : int
        Width and height of the cutout, pixels.
    pixel_scale : float
        Arcseconds per pixel.
    projection : {"TAN", "SIN"}
        Gnomonic or orthographic projection.
    rotation : float
        Rotation ``t`` of the image, degrees (positive turns north towards east... as the CD matrix says).

    Returns
    -------
    astropy.wcs.WCS

    Examples
    --------
    >>> w = cutout_wcs(10.0, 20.0, size=64, pixel_scale=1.0)
    >>> w.wcs.crpix.tolist(), w.wcs.ctype[0]
    ([32.5, 32.5], 'RA---TAN')
    """
    proj = _check_projection(projection)
    scale = float(pixel_scale) / 3600.0
    t = np.deg2rad(float(rotation))
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{proj}", f"DEC--{proj}"]
    w.wcs.crval = [float(ra), float(dec)]
    w.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    w.wcs.cd = scale * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.radesys = "ICRS"
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.set()
    w.pixel_shape = (size, size)
    return w


def pixel_grid_vectors(size: int, pixel_scale: float, projection: str = "TAN") -> np.ndarray:
    """Unit vectors of every pixel centre of an unrotated cutout, in the local basis.

    Returns an array of shape ``(size*size, 3)`` (row-major: index ``row*size + col``)
    holding the components along (radial, east, north) of the direction of each pixel
    centre, for a cutout centred on the target with the WCS of :func:`cutout_wcs` at
    rotation 0.
    """
    proj = _check_projection(projection)
    scale = np.deg2rad(float(pixel_scale) / 3600.0)
    c = size / 2 + 0.5
    idx = np.arange(size, dtype=np.float64) + 1.0 - c  # FITS pixel minus CRPIX
    dy, dx = np.meshgrid(idx, idx, indexing="ij")  # rows along y (north), cols along x
    xi = -scale * dx  # intermediate world x: east is left
    eta = scale * dy
    if proj == "TAN":
        vec = np.stack([np.ones_like(xi), xi, eta], axis=-1)
        vec /= np.linalg.norm(vec, axis=-1, keepdims=True)
    else:  # SIN
        r2 = xi**2 + eta**2
        if np.any(r2 > 1.0):
            raise InvalidInputError("SIN cutout larger than a hemisphere; reduce size or pixel_scale")
        vec = np.stack([np.sqrt(1.0 - r2), xi, eta], axis=-1)
    return np.ascontiguousarray(vec.reshape(-1, 3))


def target_bases(ra_deg: np.ndarray, dec_deg: np.ndarray, rotation_deg: np.ndarray) -> np.ndarray:
    """Per-target matrices whose columns are the (radial, east', north') unit vectors.

    ``east'`` and ``north'`` are the local east and north turned by the cutout rotation,
    so that ``bases[n] @ grid[p]`` is the ICRS direction of pixel ``p`` of cutout ``n``.
    Returns shape ``(N, 3, 3)``.
    """
    a = np.deg2rad(np.asarray(ra_deg, dtype=np.float64))
    d = np.deg2rad(np.asarray(dec_deg, dtype=np.float64))
    t = np.deg2rad(np.broadcast_to(np.asarray(rotation_deg, dtype=np.float64), a.shape))
    # WCSLIB (and so astropy) orients a zenithal projection centred exactly on the north
    # pole 180 degrees away from the limit dec -> 90; follow it so cutout_wcs stays exact
    t = np.where(np.asarray(dec_deg) == 90.0, t + np.pi, t)
    ca, sa, cd, sd = np.cos(a), np.sin(a), np.cos(d), np.sin(d)
    e_r = np.stack([cd * ca, cd * sa, sd], axis=-1)
    e_e = np.stack([-sa, ca, np.zeros_like(a)], axis=-1)
    e_n = np.stack([-sd * ca, -sd * sa, cd], axis=-1)
    ct, st = np.cos(t)[:, None], np.sin(t)[:, None]
    e_e2 = ct * e_e - st * e_n
    e_n2 = st * e_e + ct * e_n
    return np.ascontiguousarray(np.stack([e_r, e_e2, e_n2], axis=-1))


def frame_matrix(frame: str) -> np.ndarray:
    """3x3 rotation taking ICRS unit vectors into the HiPS frame (icrs, galactic, ecliptic)."""
    return icrs_to_frame(frame)


def healpix_cell_size_arcsec(order: int) -> float:
    """Square root of the area of a HEALPix cell at ``order``, arcsec."""
    return float(np.degrees(np.sqrt(4.0 * np.pi / (12.0 * 4.0**order))) * 3600.0)
