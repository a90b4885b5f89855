"""HiPS coordinate frames as fixed rotations of unit vectors (pure, cached)."""

from __future__ import annotations

from functools import cache

import numpy as np
from astropy import units as u
from astropy.coordinates import BarycentricMeanEcliptic, Galactic, SkyCoord

from hipsml.errors import InvalidInputError

__all__ = ["FRAMES", "FRAME_ALIASES", "HIPS_FRAME_NAMES", "COORDSYS", "canonical_frame", "icrs_to_frame"]

#: HiPS frames hipsml knows; ``ecliptic`` is astropy's ``BarycentricMeanEcliptic`` at J2000
FRAMES = ("icrs", "galactic", "ecliptic")
#: The one table of frame spellings (``hips_frame``, legacy ``coordsys`` C/G/E, astropy names), lower case.
FRAME_ALIASES: dict[str, str] = {
    "icrs": "icrs",
    "equatorial": "icrs",
    "fk5": "icrs",
    "j2000": "icrs",
    "c": "icrs",
    "galactic": "galactic",
    "g": "galactic",
    "ecliptic": "ecliptic",
    "e": "ecliptic",
}
#: The ``hips_frame`` value written for each frame.
HIPS_FRAME_NAMES: dict[str, str] = {"icrs": "equatorial", "galactic": "galactic", "ecliptic": "ecliptic"}
#: The legacy ``coordsys`` letter written for each frame.
COORDSYS: dict[str, str] = {"icrs": "C", "galactic": "G", "ecliptic": "E"}


def canonical_frame(name: object) -> str | None:
    """``"icrs"``, ``"galactic"`` or ``"ecliptic"`` for a frame spelling (any case), else None.

    Examples
    --------
    >>> canonical_frame("Equatorial"), canonical_frame("G"), canonical_frame("fk4")
    ('icrs', 'galactic', None)
    """
    if not isinstance(name, str):
        return None
    return FRAME_ALIASES.get(name.strip().lower())


@cache
def icrs_to_frame(frame: str) -> np.ndarray:
    """3x3 rotation taking ICRS unit vectors into the HiPS ``frame``: ``v_frame = M @ v_icrs``.

    Found by transforming the ICRS basis vectors with astropy, then orthonormalised (the
    transforms are pure rotations; this removes rounding only). Read-only; its transpose
    goes the other way.

    Examples
    --------
    >>> icrs_to_frame("icrs").tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if frame == "icrs":
        m = np.eye(3)
    elif frame in ("galactic", "ecliptic"):
        target = Galactic() if frame == "galactic" else BarycentricMeanEcliptic(equinox="J2000")
        basis = SkyCoord(ra=[0.0, 90.0, 0.0] * u.deg, dec=[0.0, 0.0, 90.0] * u.deg, frame="icrs")
        cart = basis.transform_to(target).represent_as("unitspherical").to_cartesian()
        cols = np.stack([cart.x.value, cart.y.value, cart.z.value], axis=0)  # column j = image of basis j
        uu, _, vt = np.linalg.svd(cols)
        m = uu @ vt
    else:
        raise InvalidInputError(f"unknown HiPS frame {frame!r}; expected one of {', '.join(FRAMES)}")
    m.setflags(write=False)
    return m
