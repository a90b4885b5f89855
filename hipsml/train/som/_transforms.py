"""PINK's spatial transforms, split into the part resampled per image and the part done by permutation.

PINK tries ``numrot * (2 if flip else 1)`` transforms of every image, numbered as PINK numbers
them (``SelfOrganizingMapLib/generate_rotated_images.h``)::

    t = f * numrot + k * (numrot / 4) + i        f in {0, 1}, k in {0, 1, 2, 3}, i < numrot / 4

Transform ``t`` takes the image, rotates it by ``i * 360° / numrot`` (interpolated, cropped or
zero-padded to the neuron side), then turns it ``k`` times by exactly 90°, then, when ``f == 1``,
mirrors it top to bottom (rows reversed). Its angle is ``(t mod numrot) * 360° / numrot``.

Direction. Arrays are ``[row, column]``. PINK's 90° turn is ``np.rot90(a, -1)`` (``a'[r, c] =
a[n-1-c, r]``), and its interpolated rotations turn the same way. Displayed as astronomers do,
with row 0 at the bottom (``origin='lower'``, north up for hipsml cutouts), that is a
**counter-clockwise** rotation. So ``angle`` is the counter-clockwise rotation (north towards
east on a north-up, east-left cutout) that, followed by the flip when ``flipped``, carries the
image onto its prototype. Equivalently, for ``k`` in 0..3: ``np.rot90(p, k)`` maps to ``p`` with
angle ``90*k``, and ``np.rot90(np.flipud(p), k)`` with angle ``90*k`` flipped.

The speed-up: only the ``numrot/4`` interpolated angles are resampled per image. The ``4 * 2``
exact variants (turns and flip) are permutations of pixels, so all ``numrot * 2`` transforms are
compared with matrix products rather than ``numrot * 2`` resamplings: the neurons permuted once
per batch, ``[B * numrot/4, D] x [D, 8 * neurons]``; or, when all 8 variants are tried and the
distance region is symmetric (PINK's defaults), the same correlations through the Fourier
transform on the dihedral group D4, 5.3 times fewer multiplications (see
:mod:`hipsml.train.som._kernels`).
"""

from __future__ import annotations

import math

import numpy as np

from hipsml.errors import InvalidInputError

__all__ = [
    "resampling_table",
    "exact_variant_permutations",
    "distance_mask",
    "transform_angles",
    "variant_count",
]


def variant_count(numrot: int, flip: bool) -> tuple[int, int]:
    """``(turns, flips)``: the exact variants done by permutation (4 turns when ``numrot > 1``)."""
    return (1 if numrot == 1 else 4), (2 if flip else 1)


def transform_angles(numrot: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Angle in degrees (float64, exact multiples of ``360/numrot``) and flip flag of every transform ``t``.

    Examples
    --------
    >>> angles, flipped = transform_angles(8, True)
    >>> angles.tolist()[:8], flipped.tolist()[7:9]
    ([0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0], [False, True])
    """
    count = numrot * (2 if flip else 1)
    t = np.arange(count)
    return (t % numrot) * (360.0 / numrot), t >= numrot


def resampling_table(
    image_side: int, neuron_dim: int, numrot: int, interpolation: str
) -> tuple[np.ndarray, np.ndarray]:
    """Source pixels and weights of the ``numrot/4`` interpolated angles, for one square image.

    Output pixel ``p`` (of ``neuron_dim**2``, row-major) of angle ``i`` is
    ``sum_k image.flat[index[i, p, k]] * weight[i, p, k]``. Angle 0 is PINK's plain crop (or
    zero pad) to the neuron side, centred with ``(image_side - neuron_dim) // 2`` pixels cut on
    the top and left. Angle ``i > 0`` rotates about the centres ``(side-1)/2`` of both images,
    as PINK does; pixels whose source falls outside the image are 0.

    Returns
    -------
    index : ndarray of int32, shape (numrot/4, neuron_dim**2, taps)
    weight : ndarray of float32, same shape
        ``taps`` is 4 for bilinear, 1 for nearest.

    Examples
    --------
    >>> index, weight = resampling_table(4, 2, 1, "bilinear")
    >>> index[0, :, 0].tolist(), weight[0, :, 0].tolist()
    ([5, 6, 9, 10], [1.0, 1.0, 1.0, 1.0])
    """
    if interpolation not in ("bilinear", "nearest"):
        raise InvalidInputError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    quarter = 1 if numrot == 1 else numrot // 4
    taps = 4 if interpolation == "bilinear" else 1
    size = neuron_dim * neuron_dim
    index = np.zeros((quarter, size, taps), dtype=np.int32)
    weight = np.zeros((quarter, size, taps), dtype=np.float32)
    grid_rows, grid_cols = np.meshgrid(np.arange(neuron_dim), np.arange(neuron_dim), indexing="ij")
    rows, cols = grid_rows.ravel(), grid_cols.ravel()

    # angle 0: PINK's resize (central crop or zero pad, integer margins)
    src_margin = max(image_side - neuron_dim, 0) // 2
    dst_margin = max(neuron_dim - image_side, 0) // 2
    src_r, src_c = rows - dst_margin + src_margin, cols - dst_margin + src_margin
    inside = (src_r >= 0) & (src_r < image_side) & (src_c >= 0) & (src_c < image_side)
    index[0, :, 0] = np.where(inside, src_r * image_side + src_c, 0)
    weight[0, :, 0] = inside

    step = 2.0 * math.pi / numrot
    src_centre = (image_side - 1) * 0.5
    dst_centre = (neuron_dim - 1) * 0.5
    dr, dc = rows - dst_centre, cols - dst_centre
    for i in range(1, quarter):
        cos_a, sin_a = math.cos(i * step), math.sin(i * step)
        pos_r = dr * cos_a - dc * sin_a + src_centre
        pos_c = dr * sin_a + dc * cos_a + src_centre
        eps = 1e-9
        inside = (pos_r >= -eps) & (pos_r <= image_side - 1 + eps) & (pos_c >= -eps) & (pos_c <= image_side - 1 + eps)
        if interpolation == "nearest":
            near_r = np.clip(np.floor(pos_r + 0.5), 0, image_side - 1).astype(np.int64)
            near_c = np.clip(np.floor(pos_c + 0.5), 0, image_side - 1).astype(np.int64)
            index[i, :, 0] = np.where(inside, near_r * image_side + near_c, 0)
            weight[i, :, 0] = inside
            continue
        pos_r = np.clip(pos_r, 0.0, image_side - 1)
        pos_c = np.clip(pos_c, 0.0, image_side - 1)
        r0 = np.floor(pos_r).astype(np.int64)
        c0 = np.floor(pos_c).astype(np.int64)
        fr, fc = pos_r - r0, pos_c - c0
        r1 = np.minimum(r0 + 1, image_side - 1)
        c1 = np.minimum(c0 + 1, image_side - 1)
        for tap, (rr, cc, w) in enumerate(
            ((r0, c0, (1 - fr) * (1 - fc)), (r0, c1, (1 - fr) * fc), (r1, c0, fr * (1 - fc)), (r1, c1, fr * fc))
        ):
            index[i, :, tap] = np.where(inside, rr * image_side + cc, 0)
            weight[i, :, tap] = np.where(inside, w, 0.0)
    return index, weight


def exact_variant_permutations(channels: int, neuron_dim: int, numrot: int, flip: bool) -> np.ndarray:
    """Gather indices ``(V, C * neuron_dim**2)`` of the exact variants ``v = f * turns + k``.

    ``variant.ravel() = resampled.ravel()[perm[v]]`` turns ``k`` times by 90° (``np.rot90(., -1)``
    per channel, PINK's turn) then mirrors top to bottom when ``f == 1``.

    Examples
    --------
    >>> perm = exact_variant_permutations(1, 2, 4, True)
    >>> a = np.array([[1, 2], [3, 4]])
    >>> a.ravel()[perm[1]].reshape(2, 2).tolist() == np.rot90(a, -1).tolist()
    True
    """
    turns, flips = variant_count(numrot, flip)
    base = np.arange(channels * neuron_dim * neuron_dim).reshape(channels, neuron_dim, neuron_dim)
    perms = []
    for f in range(flips):
        for k in range(turns):
            variant = np.rot90(base, -k, axes=(1, 2))
            if f:
                variant = variant[:, ::-1, :]
            perms.append(variant.ravel())
    return np.ascontiguousarray(np.stack(perms), dtype=np.int32)


def distance_mask(neuron_dim: int, distance_dim: int, shape: str) -> np.ndarray:
    """Boolean ``(neuron_dim, neuron_dim)``: the pixels the euclidean distance compares (PINK's regions).

    Quadratic: the central ``distance_dim`` square starting at ``int((neuron_dim - distance_dim) / 2)``.
    Circular: PINK's disc of diameter ``distance_dim``: row ``i`` of the central band spans the
    columns ``round(c - delta) .. round(c + delta) - 1`` with ``c = neuron_dim // 2`` and
    ``delta = sqrt(2 * (distance_dim // 2) * (i + 0.5) - (i + 0.5)**2)``.

    Examples
    --------
    >>> distance_mask(4, 2, "quadratic").astype(int).tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    if distance_dim > neuron_dim:
        raise InvalidInputError(f"distance_dim {distance_dim} is larger than neuron_dim {neuron_dim}")
    mask = np.zeros((neuron_dim, neuron_dim), dtype=bool)
    begin = int((neuron_dim - distance_dim) * 0.5)
    if shape == "quadratic":
        mask[begin : begin + distance_dim, begin : begin + distance_dim] = True
        return mask
    if shape != "circular":
        raise InvalidInputError(f"distance_shape must be 'quadratic' or 'circular', got {shape!r}")
    centre = neuron_dim // 2
    radius = distance_dim // 2
    for i in range(distance_dim):
        delta = math.sqrt(max(2 * radius * (i + 0.5) - (i + 0.5) ** 2, 0.0))
        row = i + (neuron_dim - distance_dim) // 2
        lo, hi = math.floor(centre - delta + 0.5), math.floor(centre + delta + 0.5)  # C++ std::round
        mask[row, max(lo, 0) : max(min(hi, neuron_dim), 0)] = True
    return mask
