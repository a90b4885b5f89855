"""Compiled cutout kernels: HEALPix face coordinates, tile lookup and interpolation.

Everything here is a pure numba function on arrays. For each target the fused kernel
``cutout_kernel`` works one cutout row at a time:

1. rotate the row's fixed unit vectors to the target, in the survey frame, and map each
   direction to continuous HEALPix face coordinates ``(face, x, y)`` at the cell order
   (``x`` on the even bits of the NESTED index, ``y`` on the odd bits; cell ``(ix, iy)``
   covers ``[ix, ix+1) x [iy, iy+1)``). This loop is branch-free (``atan2`` is a
   polynomial accurate to 1 ulp) so the compiler turns it into SIMD code;
2. find the tile and in-tile position of each stencil cell and interpolate from the
   decoded tiles.

Cells across a base-face edge are found with the HEALPix neighbour tables (as in the
HEALPix C++ library's ``neighbors``), so bilinear interpolation is continuous across tile
edges, the twelve base faces and the poles. A stencil that crosses into another face is
weighted by the true positions of its cell centres (the faces' grids are turned against each
other there), so the interpolation stays accurate to second order across those edges too.

A tile key packs ``(face, tx, ty)`` as ``(face << 2K) | (tx << K) | ty`` for tile order ``K``.
The caller passes the tiles it has loaded as sorted keys plus slots; a target whose
stencils touch a tile that is not loaded is flagged and its missing keys returned, so the
caller loads them and runs that target again.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import numba
import numpy as np

#: a scalar of the compiled helpers: a Python float or a numpy float32 tile value (numba types them, not mypy)
Real: TypeAlias = Any

__all__ = [
    "NEAREST",
    "BILINEAR",
    "BICUBIC",
    "cutout_kernel",
    "face_coordinates",
    "cell_centres",
    "tile_keys_to_npix",
    "npix_to_tile_keys",
]

NEAREST = 0
BILINEAR = 1
BICUBIC = 2

# HEALPix neighbour tables, indexed [direction][face]; direction = (dx+1) + 3*(dy+1)
# for offsets dx, dy in {-1, 0, 1} of a cell that has left its face.
_NB_FACE = np.array(
    [
        [8, 9, 10, 11, -1, -1, -1, -1, 10, 11, 8, 9],  # dx=-1, dy=-1 (S)
        [5, 6, 7, 4, 8, 9, 10, 11, 9, 10, 11, 8],  # dx=0,  dy=-1 (SE)
        [-1, -1, -1, -1, 5, 6, 7, 4, -1, -1, -1, -1],  # dx=+1, dy=-1 (E)
        [4, 5, 6, 7, 11, 8, 9, 10, 11, 8, 9, 10],  # dx=-1, dy=0  (SW)
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],  # centre
        [1, 2, 3, 0, 0, 1, 2, 3, 5, 6, 7, 4],  # dx=+1, dy=0  (NE)
        [-1, -1, -1, -1, 7, 4, 5, 6, -1, -1, -1, -1],  # dx=-1, dy=+1 (W)
        [3, 0, 1, 2, 3, 0, 1, 2, 4, 5, 6, 7],  # dx=0,  dy=+1 (NW)
        [2, 3, 0, 1, -1, -1, -1, -1, 0, 1, 2, 3],  # dx=+1, dy=+1 (N)
    ],
    dtype=np.int64,
)
# bit 1: x -> nside-1-x, bit 2: y -> nside-1-y, bit 4: swap x and y; indexed [direction][face // 4]
_NB_SWAP = np.array(
    [[0, 0, 3], [0, 0, 6], [0, 0, 0], [0, 0, 5], [0, 0, 0], [5, 0, 0], [0, 0, 0], [6, 0, 0], [3, 0, 0]],
    dtype=np.int64,
)

_TWO_OVER_PI = 2.0 / math.pi
_HALF_PI = math.pi / 2.0
_QUARTER_PI = math.pi / 4.0
_TAN_PI_8 = 0.41421356237309503
# atan(t) = t + t^3 * P(t^2) on |t| <= tan(pi/8); least-squares fit on Chebyshev nodes in
# 40-digit arithmetic, max error 5.6e-17 (1 ulp)
_A0 = -0.3333333333333333
_A1 = 0.19999999999995652
_A2 = -0.1428571428469138
_A3 = 0.11111111017100327
_A4 = -0.0909090464769568
_A5 = 0.07692184699371778
_A6 = -0.06664531369805009
_A7 = 0.05858311810501153
_A8 = -0.05086254885823143
_A9 = 0.039253696320618564
_A10 = -0.01920252926841228

_MISSING = -2  # slot lookup: tile not loaded


@numba.njit(cache=True, inline="always", error_model="numpy")
def _atan_ratio(mn: float, mx: float) -> float:
    """atan(mn / mx) for 0 <= mn <= mx, branch-free and with a single division.

    Above tan(pi/8) it uses atan(r) = pi/4 + atan((mn - mx) / (mn + mx)).
    """
    big = mn > _TAN_PI_8 * mx
    num = (mn - mx) if big else mn
    den = (mn + mx) if big else mx
    t = num / (den if den > 0.0 else 1.0)
    z = t * t
    q = _A10
    q = q * z + _A9
    q = q * z + _A8
    q = q * z + _A7
    q = q * z + _A6
    q = q * z + _A5
    q = q * z + _A4
    q = q * z + _A3
    q = q * z + _A2
    q = q * z + _A1
    q = q * z + _A0
    a = t + t * z * q
    return a + (_QUARTER_PI if big else 0.0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _phi_quadrants(vx: float, vy: float) -> float:
    """atan2(vy, vx) / (pi/2) in [0, 4), branch-free."""
    ax = abs(vx)
    ay = abs(vy)
    swap = ay > ax
    mx = ay if swap else ax
    mn = ax if swap else ay
    a = _atan_ratio(mn, mx)
    a = (_HALF_PI - a) if swap else a
    a = (math.pi - a) if vx < 0.0 else a
    a = -a if vy < 0.0 else a
    tt = a * _TWO_OVER_PI
    return (tt + 4.0) if tt < 0.0 else tt


@numba.njit(cache=True, inline="always", error_model="numpy")
def _xyf_belt(tt: float, vz: float, nside: float, inv_nside: float) -> tuple[float, float, float]:
    """(face, x, y) in the equatorial belt |z| <= 2/3."""
    temp1 = nside * (0.5 + tt)
    temp2 = nside * vz * 0.75
    jp = temp1 - temp2
    jm = temp1 + temp2
    ifp = np.floor(jp * inv_nside)
    ifm = np.floor(jm * inv_nside)
    feq_same = 4.0 if ifp == 4.0 else ifp + 4.0
    feq_diff = ifp if ifp < ifm else ifm + 8.0
    feq = feq_same if ifp == ifm else feq_diff
    return feq, jm - ifm * nside, nside - (jp - ifp * nside)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _xyf_cap(tt: float, vx: float, vy: float, vz: float, nside: float) -> tuple[float, float, float]:
    """(face, x, y) in the polar caps |z| > 2/3; 1 - |z| without cancellation."""
    za = abs(vz)
    ntt = np.floor(tt)
    ntt = 3.0 if ntt > 3.0 else ntt
    tp = tt - ntt
    tmp = nside * math.sqrt(3.0 * (vx * vx + vy * vy) / (1.0 + za))
    jp2 = tp * tmp
    jm2 = (1.0 - tp) * tmp
    north = vz >= 0.0
    fpo = ntt if north else ntt + 8.0
    xpo = (nside - jm2) if north else jp2
    ypo = (nside - jp2) if north else jm2
    return fpo, xpo, ypo


@numba.njit(cache=True, inline="always", error_model="numpy")
def _xyf(vx: float, vy: float, vz: float, nside: float, inv_nside: float) -> tuple[float, float, float]:
    """Continuous HEALPix (face, x, y) of a unit vector (cf. ang2pix_nest), branch-free."""
    tt = _phi_quadrants(vx, vy)
    fb, xb, yb = _xyf_belt(tt, vz, nside, inv_nside)
    fc, xc, yc = _xyf_cap(tt, vx, vy, vz, nside)
    eq = abs(vz) <= 2.0 / 3.0
    return (fb if eq else fc), (xb if eq else xc), (yb if eq else yc)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _row_geometry(
    b: np.ndarray,
    gx: np.ndarray,
    gy: np.ndarray,
    gz: np.ndarray,
    start: int,
    count: int,
    nside: float,
    half: float,
    lo: float,
    hi: float,
    s: int,
    korder: int,
    m_lo: int,
    m_hi: int,
    fo: np.ndarray,
    io: np.ndarray,
    jo: np.ndarray,
    fxo: np.ndarray,
    fyo: np.ndarray,
    ko: np.ndarray,
    lo_off: np.ndarray,
    fast: np.ndarray,
    vxo: np.ndarray,
    vyo: np.ndarray,
    vzo: np.ndarray,
) -> None:
    """Geometry of ``count`` rotated grid vectors, branch-free so the loop vectorises.

    ``vxo, vyo, vzo`` are scratch. Outputs per pixel: face, stencil origin
    ``floor(x - half), floor(y - half)`` clamped to
    ``[lo, hi]``, its fractions, the key of the origin's tile, the origin's flat offset in
    that tile, and whether the stencil (cells ``origin - m_lo .. origin + m_hi`` in x and y)
    lies inside that one tile.
    """
    inv_nside = 1.0 / nside
    w1 = (1 << s) - 1
    b00, b01, b02 = b[0, 0], b[0, 1], b[0, 2]
    b10, b11, b12 = b[1, 0], b[1, 1], b[1, 2]
    b20, b21, b22 = b[2, 0], b[2, 1], b[2, 2]
    # rotate, and count the pixels in each HEALPix zone (integer counts, not a float max/min
    # reduction, so the loop vectorises)
    ncap = 0
    nbelt = 0
    for k in range(count):
        p = start + k
        g0 = gx[p]
        g1 = gy[p]
        g2 = gz[p]
        vxo[k] = b00 * g0 + b01 * g1 + b02 * g2
        vyo[k] = b10 * g0 + b11 * g1 + b12 * g2
        vz = b20 * g0 + b21 * g1 + b22 * g2
        vzo[k] = vz
        za = abs(vz)
        ncap += 1 if za > 2.0 / 3.0 else 0
        nbelt += 1 if za <= 2.0 / 3.0 else 0
    # face coordinates (face into vzo, x, y into vxo, vyo): one zone's formula when the
    # whole row lies in it, else both
    if ncap == 0:
        for k in range(count):
            tt = _phi_quadrants(vxo[k], vyo[k])
            f, x, y = _xyf_belt(tt, vzo[k], nside, inv_nside)
            vzo[k] = f
            vxo[k] = x
            vyo[k] = y
    elif nbelt == 0:
        for k in range(count):
            tt = _phi_quadrants(vxo[k], vyo[k])
            f, x, y = _xyf_cap(tt, vxo[k], vyo[k], vzo[k], nside)
            vzo[k] = f
            vxo[k] = x
            vyo[k] = y
    else:
        for k in range(count):
            f, x, y = _xyf(vxo[k], vyo[k], vzo[k], nside, inv_nside)
            vzo[k] = f
            vxo[k] = x
            vyo[k] = y
    # stencil origins, fractions, tile keys and offsets
    for k in range(count):
        f = vzo[k]
        u = vxo[k] - half
        v = vyo[k] - half
        iu = np.floor(u)
        iv = np.floor(v)
        fxo[k] = u - iu
        fyo[k] = v - iv
        iu = lo if iu < lo else (hi if iu > hi else iu)
        iv = lo if iv < lo else (hi if iv > hi else iv)
        fi = np.int64(f)
        i0 = np.int64(iu)
        j0 = np.int64(iv)
        fo[k] = fi
        io[k] = i0
        jo[k] = j0
        ko[k] = (fi << (2 * korder)) | ((i0 >> s) << korder) | (j0 >> s)
        lo_off[k] = (w1 - (i0 & w1)) * (w1 + 1) + (j0 & w1)
        fast[k] = (
            (i0 >= 0)
            & (j0 >= 0)
            & ((i0 & w1) >= m_lo)
            & ((i0 & w1) <= w1 - m_hi)
            & ((j0 & w1) >= m_lo)
            & ((j0 & w1) <= w1 - m_hi)
        )


@numba.njit(cache=True, error_model="numpy")
def face_coordinates(vectors: np.ndarray, nside: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous HEALPix ``(face, x, y)`` of unit vectors ``(N, 3)`` at ``nside``.

    ``floor(x), floor(y)`` are the cell's in-face coordinates: the NESTED index is
    ``face * nside**2 + interleave(floor(x), floor(y))``.
    """
    n = vectors.shape[0]
    fo = np.empty(n, dtype=np.int64)
    xo = np.empty(n)
    yo = np.empty(n)
    inv = 1.0 / nside
    for k in range(n):
        f, x, y = _xyf(vectors[k, 0], vectors[k, 1], vectors[k, 2], nside, inv)
        fo[k] = np.int64(f)
        xo[k] = x
        yo[k] = y
    return fo, xo, yo


_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.float64)
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.float64)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _face_cell(face: int, ix: int, iy: int, nside: int) -> tuple[int, int, int]:
    """The cell (face, ix, iy) with ix/iy possibly one off the face, as an in-face cell.

    Returns face -1 when the cell does not exist (a face corner where only three faces
    meet). Follows the HEALPix neighbour tables.
    """
    if ix >= 0 and ix < nside and iy >= 0 and iy < nside:
        return face, ix, iy
    dx = 0
    dy = 0
    if ix < 0:
        ix += nside
        dx = -1
    elif ix >= nside:
        ix -= nside
        dx = 1
    if iy < 0:
        iy += nside
        dy = -1
    elif iy >= nside:
        iy -= nside
        dy = 1
    d = (dx + 1) + 3 * (dy + 1)
    f2 = _NB_FACE[d, face]
    if f2 < 0:
        return -1, 0, 0
    bits = _NB_SWAP[d, face >> 2]
    if bits & 1:
        ix = nside - ix - 1
    if bits & 2:
        iy = nside - iy - 1
    if bits & 4:
        tmp = ix
        ix = iy
        iy = tmp
    return f2, ix, iy


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cell_tile(face: int, ix: int, iy: int, nside: int, s: int, korder: int) -> tuple[int, int, int]:
    """Tile key and in-tile (lx, ly) of cell (face, ix, iy), ix/iy possibly one off the face.

    Returns key -1 when the cell does not exist (a face corner where only three faces meet).
    """
    face, ix, iy = _face_cell(face, ix, iy, nside)
    if face < 0:
        return -1, 0, 0
    w1 = (1 << s) - 1
    key = (face << (2 * korder)) | ((ix >> s) << korder) | (iy >> s)
    return key, ix & w1, iy & w1


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cell_centre(face: int, ix: int, iy: int, nside: int) -> tuple[float, float, float]:
    """Unit vector of the centre of cell (face, ix, iy) (cf. HEALPix pix2vec / xyf2loc)."""
    x = ix + 0.5
    y = iy + 0.5
    fn = float(nside)
    jr = _JRLL[face] * fn - x - y
    if jr < fn:
        nr = jr
        one_minus = nr * nr / (3.0 * fn * fn)
        z = 1.0 - one_minus
        sth = math.sqrt(one_minus * (2.0 - one_minus))
    elif jr > 3.0 * fn:
        nr = 4.0 * fn - jr
        one_minus = nr * nr / (3.0 * fn * fn)
        z = one_minus - 1.0
        sth = math.sqrt(one_minus * (2.0 - one_minus))
    else:
        nr = fn
        z = (2.0 * fn - jr) * 2.0 / (3.0 * fn)
        sth = math.sqrt((1.0 - z) * (1.0 + z))
    tmp = _JPLL[face] * nr + x - y
    if tmp < 0.0:
        tmp += 8.0 * fn
    if tmp >= 8.0 * fn:
        tmp -= 8.0 * fn
    phi = (0.25 * math.pi) * tmp / nr
    return sth * math.cos(phi), sth * math.sin(phi), z


@numba.njit(cache=True, error_model="numpy")
def cell_centres(face: np.ndarray, ix: np.ndarray, iy: np.ndarray, nside: int) -> np.ndarray:
    """Unit vectors ``(N, 3)`` of the centres of cells ``(face, ix, iy)`` at ``nside``."""
    out = np.empty((face.shape[0], 3))
    for k in range(face.shape[0]):
        out[k, 0], out[k, 1], out[k, 2] = _cell_centre(face[k], ix[k], iy[k], nside)
    return out


@numba.njit(cache=True, inline="always", error_model="numpy")
def _slot_of(key: int, keys: np.ndarray, slots: np.ndarray) -> int:
    """Slot of a loaded tile, -1 for a tile known to be absent, -2 when not loaded."""
    lo = 0
    hi = keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < keys.shape[0] and keys[lo] == key:
        return slots[lo]
    return _MISSING


@numba.njit(cache=True, inline="always", error_model="numpy")
def _note_missing(k: int, missing: np.ndarray, nmiss: int) -> tuple[np.ndarray, int]:
    if nmiss > 0 and missing[nmiss - 1] == k:
        return missing, nmiss
    if nmiss == missing.shape[0]:
        bigger = np.empty(2 * nmiss, dtype=np.int64)
        bigger[:nmiss] = missing
        missing = bigger
    missing[nmiss] = k
    return missing, nmiss + 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cutout_kernel(
    bases: np.ndarray,  # (n, 3, 3) float64: frame @ [e_r, e_east, e_north] per target
    gx: np.ndarray,  # (P,) float64 grid unit vectors, radial component
    gy: np.ndarray,  # (P,) east component
    gz: np.ndarray,  # (P,) north component
    size: int,
    nside: int,  # cells per face side at the cell order
    s: int,  # log2(tile width)
    korder: int,  # tile order
    mode: int,
    keys: np.ndarray,  # (m,) int64 sorted keys of the loaded tiles
    slots: np.ndarray,  # (m,) int64 slot of each key in `slab`, -1 for an absent tile
    slab: np.ndarray,  # (capacity, W, W, C) float32 decoded tiles, channel-last; slot 0 all NaN
    rows: np.ndarray,  # (n,) int64 output row of each target
    chan_out: np.ndarray,  # (C,) int64 output channel of each slab channel
    out: np.ndarray,  # (N, C_total, P) float32, C-contiguous; NaN where uncovered
    failed: np.ndarray,  # (n,) bool, set for targets that need tiles not loaded
) -> np.ndarray:
    n = bases.shape[0]
    nch = slab.shape[3]
    w = 1 << s
    w1 = w - 1
    tile_stride = nch * w * w
    row_stride = w * nch  # one tile row, channel-last
    npx = size * size
    ctot = out.shape[1]
    flat = slab.reshape(-1)
    oflat = out.reshape(-1)
    nan = np.float32(np.nan)
    fnside = float(nside)
    bilinear = mode != NEAREST  # bilinear, or bicubic (which falls back to bilinear)
    bicubic = mode == BICUBIC
    if bilinear:
        half, lo, hi = 0.5, -1.0, fnside
    else:
        half, lo, hi = 0.0, 0.0, fnside - 1.0
    m_lo, m_hi = (1, 2) if bicubic else (0, 1)
    # a column without a tile reads slot 0 (all NaN) around this offset: far enough inside
    # for the whole stencil (bilinear: rows 0-1; bicubic: rows 0-3, columns 0-3; W >= 4)
    dummy = 2 * row_stride + nch if bicubic else row_stride
    fo = np.empty(size, dtype=np.int64)
    io = np.empty(size, dtype=np.int64)
    jo = np.empty(size, dtype=np.int64)
    fxo = np.empty(size)
    fyo = np.empty(size)
    ko = np.empty(size, dtype=np.int64)
    loff = np.empty(size, dtype=np.int64)
    fast = np.empty(size, dtype=np.bool_)
    vxo = np.empty(size)
    vyo = np.empty(size)
    vzo = np.empty(size)
    # flat slab offset of each column's stencil origin; columns with no tile point inside
    # slot 0, which the caller keeps all-NaN, so the gather loop needs no guards
    src = np.empty(size, dtype=np.int64)
    other = np.empty(size, dtype=np.bool_)  # columns not in the row's main tile
    special = np.empty(size, dtype=np.int64)  # columns needing the general path
    sp_off = np.empty((size, 4), dtype=np.int64)
    sp_ok = np.empty((size, 4), dtype=np.bool_)
    sp_w = np.empty((size, 4))  # interpolation weights of the general-path columns
    cells = np.empty((4, 3))  # centres of one stencil's cells
    kink = np.zeros(size, dtype=np.bool_)  # bicubic columns near the cap/belt line
    cub_col = np.empty(size, dtype=np.int64)  # bicubic columns whose 4x4 spans tiles
    cub_val = np.empty((size, nch), dtype=np.float32)
    cub_off = np.empty(16, dtype=np.int64)
    wxs = np.empty(4)
    wys = np.empty(4)
    exists = np.empty(4, dtype=np.bool_)
    missing = np.empty(64, dtype=np.int64)
    nmiss = 0
    ck = -3  # one-entry cache of the last key -> slot lookup
    cs = _MISSING
    for t in range(n):
        obase = rows[t] * ctot * npx
        b = bases[t]
        bad = False
        for r in range(size):
            _row_geometry(
                b,
                gx,
                gy,
                gz,
                r * size,
                size,
                fnside,
                half,
                lo,
                hi,
                s,
                korder,
                m_lo,
                m_hi,
                fo,
                io,
                jo,
                fxo,
                fyo,
                ko,
                loff,
                fast,
                vxo,
                vyo,
                vzo,
            )
            # resolve tiles: most rows lie in one tile, so first assume the key of the
            # middle column for every column (a vectorisable pass), then fix the rest
            k0 = ko[size >> 1]
            if k0 != ck:
                ck = k0
                cs = _slot_of(k0, keys, slots)
            base0 = cs * tile_stride if cs > 0 else -1
            nother = 0
            if bicubic:
                # a 4x4 stencil across the cap/belt line (x + y = nside in the polar faces,
                # where the map from face coordinates to the sky has a kink) would overshoot:
                # those columns take the bilinear path
                for col in range(size):
                    f = fo[col]
                    ssum = io[col] + jo[col]
                    if (f < 4 or f >= 8) and ssum - 1 <= nside and nside <= ssum + 5:
                        fast[col] = False
                        kink[col] = True
                    else:
                        kink[col] = False
            for col in range(size):
                same = fast[col] and ko[col] == k0 and base0 >= 0
                src[col] = (base0 + loff[col] * nch) if same else dummy
                other[col] = not same
                nother += 0 if same else 1
            nspecial = 0
            ncub = 0
            if nother:
                for col in range(size):
                    if not other[col]:
                        continue
                    if bicubic and not fast[col] and not kink[col]:
                        i0 = io[col]
                        j0 = jo[col]
                        if i0 >= 1 and j0 >= 1 and i0 + 2 < nside and j0 + 2 < nside:
                            # 4x4 stencil inside the face but over several tiles
                            ok = True
                            for q in range(16):
                                k, lx, ly = _cell_tile(fo[col], i0 - 1 + (q & 3), j0 - 1 + (q >> 2), nside, s, korder)
                                if k != ck:
                                    ck = k
                                    cs = _slot_of(k, keys, slots)
                                if cs == _MISSING:
                                    bad = True
                                    missing, nmiss = _note_missing(k, missing, nmiss)
                                    ok = False
                                    continue
                                if cs < 0:
                                    ok = False
                                    continue
                                cub_off[q] = cs * tile_stride + ((w1 - lx) * w + ly) * nch
                            if ok and not bad:
                                _cubic_weights(fxo[col], wxs)
                                _cubic_weights(fyo[col], wys)
                                for c in range(nch):
                                    acc = 0.0
                                    for q in range(16):
                                        acc += wxs[q & 3] * wys[q >> 2] * flat[cub_off[q] + c]
                                    val = np.float32(acc)
                                    if val != val:
                                        # a blank cell in this channel's 4x4: its inner 2x2, bilinear
                                        val = _bilinear(
                                            flat[cub_off[5] + c],
                                            flat[cub_off[6] + c],
                                            flat[cub_off[9] + c],
                                            flat[cub_off[10] + c],
                                            fxo[col],
                                            fyo[col],
                                        )
                                    cub_val[ncub, c] = val
                                cub_col[ncub] = col
                                ncub += 1
                                continue
                    if bilinear and not fast[col]:
                        # general path: stencil cells in up to four tiles, maybe on other faces
                        fx = fxo[col]
                        fy = fyo[col]
                        i0 = io[col]
                        j0 = jo[col]
                        cross = False
                        for q in range(4):
                            f2, ix2, iy2 = _face_cell(fo[col], i0 + (q & 1), j0 + (q >> 1), nside)
                            cross = cross or f2 != fo[col]
                        if cross:
                            # across a base-face edge the grids are turned: weight the real
                            # cell centres, moving the stencil until it holds the pixel
                            g = r * size + col
                            vx = b[0, 0] * gx[g] + b[0, 1] * gy[g] + b[0, 2] * gz[g]
                            vy = b[1, 0] * gx[g] + b[1, 1] * gy[g] + b[1, 2] * gz[g]
                            vz = b[2, 0] * gx[g] + b[2, 1] * gy[g] + b[2, 2] * gz[g]
                            for _ in range(4):
                                for q in range(4):
                                    f2, ix2, iy2 = _face_cell(fo[col], i0 + (q & 1), j0 + (q >> 1), nside)
                                    exists[q] = f2 >= 0
                                    if f2 >= 0:
                                        cells[q, 0], cells[q, 1], cells[q, 2] = _cell_centre(f2, ix2, iy2, nside)
                                ww = _geometric_weights(vx, vy, vz, cells, exists, fx, fy)
                                if ww[2] >= 0.0:
                                    break
                                i0 += int(ww[0])
                                j0 += int(ww[1])
                                # the pixel's fractions in the moved stencil (clamped)
                                fx = min(max(fxo[col] + (io[col] - i0), 0.0), 1.0)
                                fy = min(max(fyo[col] + (jo[col] - j0), 0.0), 1.0)
                            if ww[2] < 0.0:  # no stencil holds it (cannot happen in practice)
                                ww = (
                                    (1.0 - fxo[col]) * (1.0 - fyo[col]),
                                    fxo[col] * (1.0 - fyo[col]),
                                    (1.0 - fxo[col]) * fyo[col],
                                    fxo[col] * fyo[col],
                                )
                                i0 = io[col]
                                j0 = jo[col]
                        else:
                            ww = ((1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy)
                        for q in range(4):
                            sp_w[nspecial, q] = ww[q]
                            f2, ix2, iy2 = _face_cell(fo[col], i0 + (q & 1), j0 + (q >> 1), nside)
                            sp_ok[nspecial, q] = False
                            if f2 < 0:
                                continue
                            k = (f2 << (2 * korder)) | ((ix2 >> s) << korder) | (iy2 >> s)
                            if k != ck:
                                ck = k
                                cs = _slot_of(k, keys, slots)
                            if cs == _MISSING:
                                bad = True
                                missing, nmiss = _note_missing(k, missing, nmiss)
                                continue
                            sp_ok[nspecial, q] = cs >= 0
                            sp_off[nspecial, q] = cs * tile_stride + ((w1 - (ix2 & w1)) * w + (iy2 & w1)) * nch
                        special[nspecial] = col
                        nspecial += 1
                        continue
                    k = ko[col]
                    if k != ck:
                        ck = k
                        cs = _slot_of(k, keys, slots)
                    if cs == _MISSING:
                        bad = True
                        missing, nmiss = _note_missing(k, missing, nmiss)
                    src[col] = cs * tile_stride + loff[col] * nch if cs > 0 else dummy
            if bad:
                continue  # keep scanning rows only to collect every missing tile
            rowbase = obase + r * size
            if bicubic:
                # 4x4 Catmull-Rom stencils inside one tile (vectorisable); a blank cell in the
                # stencil falls back to the blank-aware bilinear value of the inner 2x2
                for col in range(size):
                    q = src[col]
                    fx = fxo[col]
                    fy = fyo[col]
                    ax0 = ((-0.5 * fx + 1.0) * fx - 0.5) * fx
                    ax1 = (1.5 * fx - 2.5) * fx * fx + 1.0
                    ax2 = ((-1.5 * fx + 2.0) * fx + 0.5) * fx
                    ax3 = (0.5 * fx - 0.5) * fx * fx
                    ay0 = ((-0.5 * fy + 1.0) * fy - 0.5) * fy
                    ay1 = (1.5 * fy - 2.5) * fy * fy + 1.0
                    ay2 = ((-1.5 * fy + 2.0) * fy + 0.5) * fy
                    ay3 = (0.5 * fy - 0.5) * fy * fy
                    for c in range(nch):
                        qc = q + c
                        acc = 0.0
                        for dj in range(4):
                            wy = ay0 if dj == 0 else (ay1 if dj == 1 else (ay2 if dj == 2 else ay3))
                            base = qc + (dj - 1) * nch + row_stride  # x = i0 - 1 is one tile row down
                            acc += wy * (
                                ax0 * flat[base]
                                + ax1 * flat[base - row_stride]
                                + ax2 * flat[base - 2 * row_stride]
                                + ax3 * flat[base - 3 * row_stride]
                            )
                        val = np.float32(acc)
                        if val != val:
                            val = _bilinear(
                                flat[qc], flat[qc - row_stride], flat[qc + nch], flat[qc - row_stride + nch], fx, fy
                            )
                        oflat[rowbase + chan_out[c] * npx + col] = val
                for e in range(ncub):
                    col = cub_col[e]
                    for c in range(nch):
                        oflat[rowbase + chan_out[c] * npx + col] = cub_val[e, c]
            elif bilinear:
                # gather and interpolate; +x is one tile row up, +y one column right
                for col in range(size):
                    q = src[col]
                    fx = fxo[col]
                    fy = fyo[col]
                    for c in range(nch):
                        qc = q + c
                        val = _bilinear(
                            flat[qc], flat[qc - row_stride], flat[qc + nch], flat[qc - row_stride + nch], fx, fy
                        )
                        o = rowbase + chan_out[c] * npx + col
                        oflat[o] = val
            else:
                for col in range(size):
                    q = src[col]
                    for c in range(nch):
                        val = flat[q + c]
                        o = rowbase + chan_out[c] * npx + col
                        oflat[o] = val
            # columns whose stencil crosses tiles or faces (bilinear and bicubic modes)
            for e in range(nspecial):
                col = special[e]
                for c in range(nch):
                    v0 = flat[sp_off[e, 0] + c] if sp_ok[e, 0] else nan
                    v1 = flat[sp_off[e, 1] + c] if sp_ok[e, 1] else nan
                    v2 = flat[sp_off[e, 2] + c] if sp_ok[e, 2] else nan
                    v3 = flat[sp_off[e, 3] + c] if sp_ok[e, 3] else nan
                    val = _weighted(v0, v1, v2, v3, sp_w[e, 0], sp_w[e, 1], sp_w[e, 2], sp_w[e, 3])
                    oflat[rowbase + chan_out[c] * npx + col] = val
        failed[t] = bad
    return missing[:nmiss]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _inverse_bilinear(px: np.ndarray, py: np.ndarray, s: float, t: float) -> tuple[float, float]:
    """(s, t) with bilinear(p0, p1, p2, p3; s, t) = 0, by Newton from the given start."""
    qx = px[3] - px[2] - px[1] + px[0]
    qy = py[3] - py[2] - py[1] + py[0]
    for _ in range(10):
        fxv = px[0] + s * (px[1] - px[0]) + t * (px[2] - px[0]) + s * t * qx
        fyv = py[0] + s * (py[1] - py[0]) + t * (py[2] - py[0]) + s * t * qy
        j00 = px[1] - px[0] + t * qx
        j01 = px[2] - px[0] + s * qx
        j10 = py[1] - py[0] + t * qy
        j11 = py[2] - py[0] + s * qy
        det = j00 * j11 - j01 * j10
        if det == 0.0:
            break
        ds = (j11 * fxv - j01 * fyv) / det
        dt = (j00 * fyv - j10 * fxv) / det
        s = min(max(s - ds, -1.0), 2.0)
        t = min(max(t - dt, -1.0), 2.0)
        if abs(ds) + abs(dt) < 1e-13:
            break
    return s, t


@numba.njit(cache=True, error_model="numpy")
def _geometric_weights(
    vx: float, vy: float, vz: float, cells: np.ndarray, exists: np.ndarray, fx: float, fy: float
) -> tuple[float, float, float, float]:
    """Bilinear weights of a stencil that crosses into another base face, or a move.

    Across a base-face edge the neighbouring face's grid is turned, so fractions in the
    face coordinates would put the far cells in the wrong place (a first-order error). Here
    the four cell centres ``cells`` (rows 0..3: origin, +x, +y, +x+y) are projected on the
    plane tangent at the pixel ``v`` and the bilinear parameters of ``v`` in that
    quadrilateral are solved for (Newton, from ``fx, fy``). Where a cell does not exist
    (a corner where only three faces meet) the weights are barycentric in the triangle of
    the other three. When the pixel lies outside the stencil it returns
    ``(ds, dt, -1, -1)``: the step (-1, 0 or 1 in x and y) to move the stencil by.
    Otherwise the weights are non-negative and sum to 1.
    """
    # tangent basis at v
    if abs(vz) < 0.9:
        ax, ay, az = 0.0, 0.0, 1.0
    else:
        ax, ay, az = 1.0, 0.0, 0.0
    e1x = ay * vz - az * vy
    e1y = az * vx - ax * vz
    e1z = ax * vy - ay * vx
    norm = math.sqrt(e1x * e1x + e1y * e1y + e1z * e1z)
    e1x /= norm
    e1y /= norm
    e1z /= norm
    e2x = vy * e1z - vz * e1y
    e2y = vz * e1x - vx * e1z
    e2z = vx * e1y - vy * e1x
    px = np.zeros(4)
    py = np.zeros(4)
    for q in range(4):
        if exists[q]:
            cx, cy, cz = cells[q, 0], cells[q, 1], cells[q, 2]
            d = cx * vx + cy * vy + cz * vz
            px[q] = (cx * e1x + cy * e1y + cz * e1z) / d
            py[q] = (cx * e2x + cy * e2y + cz * e2z) / d
    w = np.zeros(4)
    n_exist = exists[0] + exists[1] + exists[2] + exists[3]
    if n_exist == 4:
        s, t = _inverse_bilinear(px, py, fx, fy)
        # outside the quadrilateral: report how to move the stencil, weights unused
        if s < -1e-9 or s > 1.0 + 1e-9 or t < -1e-9 or t > 1.0 + 1e-9:
            return (
                -1.0 if s < -1e-9 else (1.0 if s > 1.0 + 1e-9 else 0.0),
                -1.0 if t < -1e-9 else (1.0 if t > 1.0 + 1e-9 else 0.0),
                -1.0,
                -1.0,
            )
        s = min(max(s, 0.0), 1.0)
        t = min(max(t, 0.0), 1.0)
        w[0] = (1.0 - s) * (1.0 - t)
        w[1] = s * (1.0 - t)
        w[2] = (1.0 - s) * t
        w[3] = s * t
    elif n_exist == 3:
        # barycentric in the triangle of the three cells; its affine map to the unit
        # square says whether the pixel lies in this stencil or which way to move it
        ia = -1
        ib = -1
        ic = -1
        for q in range(4):
            if exists[q]:
                if ia < 0:
                    ia = q
                elif ib < 0:
                    ib = q
                else:
                    ic = q
        ux = px[ib] - px[ia]
        uy = py[ib] - py[ia]
        vx2 = px[ic] - px[ia]
        vy2 = py[ic] - py[ia]
        det = ux * vy2 - vx2 * uy
        alpha = (-px[ia] * vy2 + py[ia] * vx2) / det
        beta = (-ux * py[ia] + uy * px[ia]) / det
        gamma = 1.0 - alpha - beta
        s = gamma * (ia & 1) + alpha * (ib & 1) + beta * (ic & 1)
        t = gamma * (ia >> 1) + alpha * (ib >> 1) + beta * (ic >> 1)
        if s < -1e-9 or s > 1.0 + 1e-9 or t < -1e-9 or t > 1.0 + 1e-9:
            return (
                -1.0 if s < -1e-9 else (1.0 if s > 1.0 + 1e-9 else 0.0),
                -1.0 if t < -1e-9 else (1.0 if t > 1.0 + 1e-9 else 0.0),
                -1.0,
                -1.0,
            )
        alpha = max(alpha, 0.0)
        beta = max(beta, 0.0)
        gamma = max(gamma, 0.0)
        total = alpha + beta + gamma
        w[ia] = gamma / total
        w[ib] = alpha / total
        w[ic] = beta / total
    else:
        w[0] = (1.0 - fx) * (1.0 - fy) if exists[0] else 0.0
        w[1] = fx * (1.0 - fy) if exists[1] else 0.0
        w[2] = (1.0 - fx) * fy if exists[2] else 0.0
        w[3] = fx * fy if exists[3] else 0.0
    return w[0], w[1], w[2], w[3]


@numba.njit(cache=True, inline="always", error_model="numpy")
def _weighted(v0: Real, v1: Real, v2: Real, v3: Real, w0: Real, w1: Real, w2: Real, w3: Real) -> np.float32:
    """Weighted stencil value, blank-aware like :func:`_bilinear` (the heaviest cell decides coverage)."""
    vn = v0
    wn = w0
    if w1 > wn:
        vn = v1
        wn = w1
    if w2 > wn:
        vn = v2
        wn = w2
    if w3 > wn:
        vn = v3
    if not (vn == vn):
        return np.float32(np.nan)
    acc = 0.0
    wsum = 0.0
    if v0 == v0:
        acc += w0 * v0
        wsum += w0
    if v1 == v1:
        acc += w1 * v1
        wsum += w1
    if v2 == v2:
        acc += w2 * v2
        wsum += w2
    if v3 == v3:
        acc += w3 * v3
        wsum += w3
    return np.float32(acc / wsum)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _cubic_weights(t: float, out: np.ndarray) -> None:
    """Catmull-Rom (Keys, a = -1/2) weights of the cells at -1, 0, 1, 2 for fraction ``t``."""
    out[0] = ((-0.5 * t + 1.0) * t - 0.5) * t
    out[1] = (1.5 * t - 2.5) * t * t + 1.0
    out[2] = ((-1.5 * t + 2.0) * t + 0.5) * t
    out[3] = (0.5 * t - 0.5) * t * t


@numba.njit(cache=True, inline="always", error_model="numpy")
def _bilinear(v0: Real, v1: Real, v2: Real, v3: Real, fx: Real, fy: Real) -> np.float32:
    """Bilinear value of a 2x2 stencil (v1 along +x, v2 along +y), blank-aware.

    The cell nearest the point decides coverage: NaN there gives NaN. Otherwise blank or
    missing neighbours are dropped and the remaining weights renormalised.
    """
    if v0 == v0 and v1 == v1 and v2 == v2 and v3 == v3:
        # the common case, kept short and predictable
        a = v0 + fx * (v1 - v0)
        b = v2 + fx * (v3 - v2)
        return np.float32(a + fy * (b - a))
    if fx >= 0.5:
        vn = v3 if fy >= 0.5 else v1
    else:
        vn = v2 if fy >= 0.5 else v0
    if not (vn == vn):
        return np.float32(np.nan)
    acc = 0.0
    wsum = 0.0
    if v0 == v0:
        w = (1.0 - fx) * (1.0 - fy)
        acc += w * v0
        wsum += w
    if v1 == v1:
        w = fx * (1.0 - fy)
        acc += w * v1
        wsum += w
    if v2 == v2:
        w = (1.0 - fx) * fy
        acc += w * v2
        wsum += w
    if v3 == v3:
        w = fx * fy
        acc += w * v3
        wsum += w
    return np.float32(acc / wsum)


def tile_keys_to_npix(keys: np.ndarray, korder: int) -> np.ndarray:
    """NESTED tile indices at order ``korder`` of packed ``(face, tx, ty)`` tile keys."""
    from hipsml.hips import interleave_bits

    keys = np.asarray(keys, dtype=np.int64)
    mask = (1 << korder) - 1
    face = keys >> (2 * korder)
    tx = (keys >> korder) & mask
    ty = keys & mask
    return face * (4**korder) + interleave_bits(tx, ty)


def npix_to_tile_keys(npix: np.ndarray, korder: int) -> np.ndarray:
    """Packed ``(face, tx, ty)`` tile keys of NESTED tile indices at order ``korder``."""
    from hipsml.hips import deinterleave_bits

    npix = np.asarray(npix, dtype=np.int64)
    face = npix >> (2 * korder)
    tx, ty = deinterleave_bits(npix & ((1 << (2 * korder)) - 1))
    return (face << (2 * korder)) | (tx << korder) | ty
