"""Cutout geometry: the WCS of a cutout, its fixed grid of unit vectors, and frame rotations.

All pure functions on arrays. A batch of cutouts shares one grid of unit vectors in the
local (radial, east, north) basis; each target only contributes a 3x3 matrix that turns that
basis into the survey's frame, so no per-cutout WCS object is ever built on the hot path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from astropy import units as u
from astropy.wcs import WCS

from hipsml.errors import InvalidInputError
from hipsml.hips import icrs_to_frame

__all__ = [
    "PROJECTIONS",
    "MAX_ABS_ANGLE",
    "check_size",
    "check_pixel_scale",
    "check_field_of_view",
    "check_sky_position",
    "check_rotation",
    "cutout_wcs",
    "pixel_grid_vectors",
    "target_bases",
    "frame_matrix",
    "healpix_cell_size_arcsec",
]

PROJECTIONS = ("TAN", "SIN")

#: the largest |angle| in degrees accepted for an RA or a rotation; larger values are
#: almost surely a unit or parsing mistake (and lose all precision once reduced mod 360)
MAX_ABS_ANGLE = 1e6


def _check_projection(projection: str) -> str:
    proj = projection.upper() if isinstance(projection, str) else None
    if proj not in PROJECTIONS:
        raise InvalidInputError(f"unsupported projection {projection!r}; choose one of {', '.join(PROJECTIONS)}")
    return proj


def _real_array(value: Any, name: str, unit: u.UnitBase) -> np.ndarray:
    """``value`` as a float64 array in ``unit``; a one-line error for complex, text or a wrong unit."""
    if isinstance(value, u.Quantity):
        try:
            value = value.to_value(unit)
        except u.UnitConversionError:
            raise InvalidInputError(f"{name} must be an angle, got {value}") from None
    if isinstance(value, (str, bytes)):
        raise InvalidInputError(f"{name} must be a number of {unit}, got {value!r}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number of {unit}, got {value!r}") from None
    if raw.dtype.kind == "c":
        raise InvalidInputError(f"{name} must be a real number of {unit}, got the complex value {value!r}")
    if raw.dtype.kind == "b" or raw.dtype.kind not in "iuf":
        raise InvalidInputError(f"{name} must be a number of {unit}, got {value!r}")
    return raw.astype(np.float64)


def _where(arr: np.ndarray, bad: np.ndarray, name: str) -> str:
    """``"ra 1e+308"`` for a scalar, ``"target 3: ra 1e+308"`` for an array."""
    if arr.ndim == 0:
        return f"{name} {float(arr)!r}"
    i = int(np.flatnonzero(bad.ravel())[0])
    return f"target {i}: {name} {float(arr.ravel()[i])!r}"


def check_size(size: Any) -> int:
    """The cutout width in pixels, a positive integer.

    Raises
    ------
    InvalidInputError
        ``size`` is not a positive integer (booleans and floats included).

    Examples
    --------
    >>> check_size(64)
    64
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InvalidInputError(f"size must be a positive integer number of pixels, got {size!r}")
    return int(size)


def check_pixel_scale(pixel_scale: Any) -> float:
    """The pixel scale in arcsec (a number, or an angle Quantity), positive and finite.

    Examples
    --------
    >>> check_pixel_scale(1.5)
    1.5
    """
    arr = _real_array(pixel_scale, "pixel_scale", u.arcsec)
    if arr.ndim != 0:
        raise InvalidInputError(f"pixel_scale must be one number of arcsec, got shape {arr.shape}")
    value = float(arr)
    if not (math.isfinite(value) and value > 0.0):
        raise InvalidInputError(f"pixel_scale must be a positive, finite number of arcsec, got {value!r}")
    return value


def check_field_of_view(size: Any, pixel_scale: Any, projection: str = "TAN") -> float:
    """Check that a ``size`` x ``size`` cutout at ``pixel_scale`` arcsec fits the sky; return its field in degrees.

    The field of view ``size * pixel_scale`` must be smaller than 180 degrees for every
    projection. A SIN (orthographic) cutout must also stay on the hemisphere facing its
    centre: every pixel centre within 1 (radian) of it in the projection plane.

    Raises
    ------
    InvalidInputError
        ``size`` or ``pixel_scale`` is invalid, or the field is too large (the message
        gives the field in degrees and the limit).

    Examples
    --------
    >>> check_field_of_view(64, 3600.0)
    64.0
    >>> check_field_of_view(64, 1e7)
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: the field of view (177778 deg: 64 pixels of 1e+07 arcsec) must be ...
    """
    n = check_size(size)
    scale = check_pixel_scale(pixel_scale)
    proj = _check_projection(projection)
    fov = n * scale / 3600.0
    if not fov < 180.0:
        raise InvalidInputError(
            f"the field of view ({fov:.6g} deg: {n} pixels of {scale:.6g} arcsec) must be smaller than 180 deg; "
            "reduce size or pixel_scale"
        )
    if proj == "SIN":
        corner = math.hypot(1.0, 1.0) * (n - 1) / 2.0 * math.radians(scale / 3600.0)
        if corner > 1.0:
            raise InvalidInputError(
                f"a SIN cutout of {fov:.6g} deg ({n} pixels of {scale:.6g} arcsec) reaches past the hemisphere "
                f"around its centre (its corners are {math.degrees(corner):.4g} deg out in the projection plane, "
                f"at most {math.degrees(1.0):.4g}); reduce size or pixel_scale, or use TAN"
            )
    return fov


def check_sky_position(ra: Any, dec: Any) -> tuple[np.ndarray, np.ndarray]:
    """ICRS ``(ra, dec)`` in degrees as float64 arrays (0-d for scalars), checked.

    RA must be finite with ``|ra| <= MAX_ABS_ANGLE`` (any such value is reduced modulo
    360 by the caller); Dec must be in ``[-90, 90]``. Numbers, arrays and angle Quantities
    are accepted; complex numbers, text and booleans are not.

    Raises
    ------
    InvalidInputError
        The message names the coordinate, its value, and for arrays the first bad target.

    Examples
    --------
    >>> ra, dec = check_sky_position(10.0, -20.0)
    >>> float(ra), float(dec)
    (10.0, -20.0)
    """
    ra_arr = _real_array(ra, "ra", u.deg)
    dec_arr = _real_array(dec, "dec", u.deg)
    bad = ~(np.isfinite(ra_arr) & (np.abs(ra_arr) <= MAX_ABS_ANGLE))
    if bad.any():
        raise InvalidInputError(
            f"{_where(ra_arr, bad, 'ra')} deg is not a right ascension: it must be finite, "
            f"with |ra| <= {MAX_ABS_ANGLE:g}"
        )
    bad = ~(np.abs(dec_arr) <= 90.0)  # NaN is bad too
    if bad.any():
        raise InvalidInputError(f"{_where(dec_arr, bad, 'dec')} deg is not a declination: it must be in -90..90")
    return ra_arr, dec_arr


def check_rotation(rotation: Any) -> np.ndarray:
    """Cutout rotation(s) in degrees as a float64 array (0-d for a scalar), checked.

    Must be finite with ``|rotation| <= MAX_ABS_ANGLE``; a number, an array or an angle Quantity.

    Examples
    --------
    >>> float(check_rotation(30.0))
    30.0
    """
    arr = _real_array(rotation, "rotation", u.deg)
    bad = ~(np.isfinite(arr) & (np.abs(arr) <= MAX_ABS_ANGLE))
    if bad.any():
        raise InvalidInputError(
            f"{_where(arr, bad, 'rotation')} deg is not a usable rotation: it must be finite, "
            f"with |rotation| <= {MAX_ABS_ANGLE:g}"
        )
    return arr


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

    Raises
    ------
    InvalidInputError
        A position, size, scale or rotation out of range or not a real number (see
        :func:`check_sky_position`, :func:`check_field_of_view`, :func:`check_rotation`).

    Examples
    --------
    >>> w = cutout_wcs(10.0, 20.0, size=64, pixel_scale=1.0)
    >>> w.wcs.crpix.tolist(), w.wcs.ctype[0]
    ([32.5, 32.5], 'RA---TAN')
    """
    proj = _check_projection(projection)
    size = check_size(size)
    check_field_of_view(size, pixel_scale, proj)
    scale = check_pixel_scale(pixel_scale) / 3600.0
    ra_arr, dec_arr = check_sky_position(ra, dec)
    rot = check_rotation(rotation)
    if ra_arr.ndim or dec_arr.ndim or rot.ndim:
        raise InvalidInputError("cutout_wcs takes one position and one rotation; call it once per cutout")
    t = np.deg2rad(float(rot))
    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{proj}", f"DEC--{proj}"]
    w.wcs.crval = [float(ra_arr) % 360.0, float(dec_arr)]
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
    check_field_of_view(size, pixel_scale, proj)
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
        r2 = xi**2 + eta**2  # at most 1: check_field_of_view keeps the corners on the hemisphere
        vec = np.stack([np.sqrt(np.maximum(1.0 - r2, 0.0)), xi, eta], axis=-1)
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
