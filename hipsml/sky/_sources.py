"""Source profiles and the per-cell noise of synthetic skies (pure numba kernels, no I/O).

Profiles are surface brightness per cell, evaluated at HEALPix cell centres from
gnomonic (tangent-plane) offsets ``(xi, eta)`` in cell units around each component:

- ``MOFFAT`` (stars, radio cores): ``amp * (1 + r**2 / alpha**2) ** -beta``;
- ``SERSIC`` (ellipticals, disks, radio hosts): ``amp * exp(-b_n * ((r_ell / r_eff) ** (1/n) - 1))``
  with ``r_ell = sqrt(u**2 + (w / q)**2 + soft**2)``, ``u`` along the major axis;
- ``GAUSSIAN`` (radio lobes): ``amp * exp(-(u**2 / sig_u**2 + w**2 / sig_w**2) / 2)``.

Position angles run from north through east. Noise is a deterministic function of
``(seed, band, NESTED cell index)``: a splitmix64 hash feeding Box-Muller, so any tile
computed anywhere gets the same noise.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = [
    "MOFFAT",
    "SERSIC",
    "GAUSSIAN",
    "sersic_b",
    "moffat_alpha",
    "moffat_peak",
    "sersic_ie",
    "gaussian_peak",
    "footprint_radius",
    "noise_key",
    "add_cell_noise",
    "accumulate_components",
]

MOFFAT = 0
SERSIC = 1
GAUSSIAN = 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@nb.njit(cache=True, inline="always")
def _splitmix64(x: np.uint64) -> np.uint64:
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def noise_key(seed: int, band_index: int) -> np.uint64:
    """64-bit noise key of ``(seed, band_index)`` (splitmix64 of both)."""
    mask = (1 << 64) - 1

    def mix(x: int) -> int:
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    return np.uint64(mix(mix(int(seed) & mask) ^ ((int(band_index) + 1) * 0x9E3779B97F4A7C15 & mask)))


@nb.njit(cache=True, nogil=True)
def add_cell_noise(out: np.ndarray, first_cell: int, key: np.uint64, sigma: float) -> None:
    """Add ``sigma`` x N(0, 1) noise to ``out[i]``, the noise of NESTED cell ``first_cell + i``.

    The normal deviate of a cell is Box-Muller on two splitmix64 hashes of ``(key, cell)``.
    """
    two_pi = 2.0 * math.pi
    for i in range(out.shape[0]):
        c = np.uint64(first_cell + i)
        base = _splitmix64(key ^ (c * _TWO))
        h1 = _splitmix64(base)
        h2 = _splitmix64(base ^ _GOLDEN)
        u1 = (np.float64(h1 >> _S11) + 1.0) * _INV53
        u2 = np.float64(h2 >> _S11) * _INV53
        out[i] += sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(two_pi * u2)


def sersic_b(n: np.ndarray) -> np.ndarray:
    """Ciotti & Bertin (1999) ``b_n`` so that ``r_eff`` encloses half the light."""
    n = np.asarray(n, dtype=np.float64)
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n**2)


def moffat_alpha(fwhm: np.ndarray | float, beta: np.ndarray | float) -> np.ndarray:
    """Moffat core width ``alpha`` for a given FWHM and ``beta``."""
    return np.asarray(fwhm, dtype=np.float64) / (2.0 * np.sqrt(2.0 ** (1.0 / np.asarray(beta, dtype=np.float64)) - 1.0))


def moffat_peak(flux: np.ndarray, alpha: np.ndarray | float, beta: np.ndarray | float) -> np.ndarray:
    """Central surface brightness of a Moffat profile of total ``flux``."""
    return flux * (beta - 1.0) / (np.pi * alpha**2)


def _gamma(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.gamma, otypes=[np.float64])(x)


def sersic_ie(flux: np.ndarray, r_eff: np.ndarray, n: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Surface brightness at ``r_eff`` of a Sérsic profile of total ``flux``.

    Examples
    --------
    >>> round(float(sersic_ie(np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]))[0]), 4)
    0.0837
    """
    b = sersic_b(n)
    total = 2.0 * np.pi * n * r_eff**2 * q * np.exp(b) * _gamma(2.0 * n) / b ** (2.0 * n)
    return flux / total


def gaussian_peak(flux: np.ndarray, sig_u: np.ndarray, sig_w: np.ndarray) -> np.ndarray:
    """Peak of an elliptical Gaussian of total ``flux``."""
    return flux / (2.0 * np.pi * sig_u * sig_w)


def footprint_radius(
    kind: np.ndarray,
    amp: np.ndarray,
    p1: np.ndarray,
    p2: np.ndarray,
    p3: np.ndarray,
    threshold: float,
    cap: float = 64.0,
) -> np.ndarray:
    """Radius (cells, along the major axis) beyond which a component is below ``threshold``.

    Clipped to ``[1.5, cap]``; 0 where ``amp`` is 0.
    """
    amp = np.asarray(amp, dtype=np.float64)
    ratio = np.maximum(amp / threshold, 1.0)
    r = np.zeros(amp.shape)
    m = kind == MOFFAT
    r[m] = p1[m] * np.sqrt(ratio[m] ** (1.0 / p2[m]) - 1.0)
    s = kind == SERSIC
    r[s] = p1[s] * (1.0 + np.log(ratio[s]) / p3[s]) ** p2[s]
    g = kind == GAUSSIAN
    r[g] = p1[g] * np.sqrt(2.0 * np.log(ratio[g]))
    r = np.clip(r + 0.5, 1.5, cap)
    r[amp <= 0] = 0.0
    return r


@nb.njit(cache=True, inline="always")
def _profile(kind, amp, p1, p2, p3, q, sinpa, cospa, soft, xi, eta):
    if kind == 0:
        return amp * (1.0 + (xi * xi + eta * eta) / (p1 * p1)) ** (-p2)
    u = xi * sinpa + eta * cospa
    w = xi * cospa - eta * sinpa
    if kind == 1:
        rr = math.sqrt(u * u + (w / q) * (w / q) + soft * soft)
        return amp * math.exp(-p3 * ((rr / p1) ** (1.0 / p2) - 1.0))
    return amp * math.exp(-0.5 * (u * u / (p1 * p1) + w * w / (p2 * p2)))


@nb.njit(cache=True, inline="always")
def _tangent_cells(
    tvec: np.ndarray,
    k: int,
    sx: float,
    sy: float,
    sz: float,
    ex: float,
    ey: float,
    ez: float,
    nx: float,
    ny: float,
    nz: float,
    inv: float,
    r2max: float,
) -> tuple[bool, float, float]:
    """Gnomonic offsets (in cells) of cell ``k`` from a component, and whether it is in reach."""
    vx, vy, vz = tvec[k, 0], tvec[k, 1], tvec[k, 2]
    d = vx * sx + vy * sy + vz * sz
    if d <= 0.0:
        return False, 0.0, 0.0
    xi = (vx * ex + vy * ey + vz * ez) / d * inv
    eta = (vx * nx + vy * ny + vz * nz) / d * inv
    return xi * xi + eta * eta <= r2max, xi, eta


@nb.njit(cache=True, nogil=True)
def accumulate_components(
    img,
    tvec,
    morton,
    tile_face,
    tx0,
    ty0,
    comps,
    cvec,
    ceast,
    cnorth,
    cface,
    cix,
    ciy,
    kind,
    amp,
    p1,
    p2,
    p3,
    q,
    sinpa,
    cospa,
    soft,
    rmax,
    cell_rad,
):
    """Add the components ``comps`` to one tile's flat (NESTED-ordered) image ``img``.

    ``tvec`` holds the ICRS unit vectors of the tile's cells (NESTED order), ``morton[lx, ly]``
    the flat index of tile-local face coordinates ``(lx, ly)``. A component on the tile's
    face visits a box of ``1.6 * rmax + 2`` cells around its own cell; one on another face
    (footprints crossing a face edge) visits every cell of the tile. Only cells with a
    tangent-plane distance ``<= rmax`` cells are evaluated.
    """
    w = morton.shape[0]
    npx = tvec.shape[0]
    inv = 1.0 / cell_rad
    for j in range(comps.shape[0]):
        c = comps[j]
        a = amp[c]
        if a == 0.0:
            continue
        r = rmax[c]
        r2max = r * r
        sx, sy, sz = cvec[c, 0], cvec[c, 1], cvec[c, 2]
        ex, ey, ez = ceast[c, 0], ceast[c, 1], ceast[c, 2]
        nx, ny, nz = cnorth[c, 0], cnorth[c, 1], cnorth[c, 2]
        if cface[c] == tile_face:
            box = int(1.6 * r) + 2
            x0 = max(cix[c] - box, tx0)
            x1 = min(cix[c] + box, tx0 + w - 1)
            y0 = max(ciy[c] - box, ty0)
            y1 = min(ciy[c] + box, ty0 + w - 1)
            for x in range(x0, x1 + 1):
                for y in range(y0, y1 + 1):
                    k = morton[x - tx0, y - ty0]
                    ok, xi, eta = _tangent_cells(tvec, k, sx, sy, sz, ex, ey, ez, nx, ny, nz, inv, r2max)
                    if ok:
                        img[k] += _profile(kind[c], a, p1[c], p2[c], p3[c], q[c], sinpa[c], cospa[c], soft[c], xi, eta)
        else:
            for k in range(npx):
                ok, xi, eta = _tangent_cells(tvec, k, sx, sy, sz, ex, ey, ez, nx, ny, nz, inv, r2max)
                if ok:
                    img[k] += _profile(kind[c], a, p1[c], p2[c], p3[c], q[c], sinpa[c], cospa[c], soft[c], xi, eta)
