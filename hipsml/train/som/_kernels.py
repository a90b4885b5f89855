"""The jit-compiled SOM kernels: resample, search all transforms with matmuls, update.

Everything here is pure JAX on arrays. :class:`SearchTables` holds the constant arrays built once
per (config, image shape) by :func:`build_tables`; the kernels take them as arguments (not as
baked-in constants) so that compiling stays fast, and the geometry as a static argument.

Shapes: ``n`` neurons of ``D = C * neuron_dim**2`` values; ``R = numrot/4`` resampled angles;
``V`` exact variants (4 turns x 2 flips); ``T = R * V`` transforms, numbered as PINK numbers them
(``t = v * R + i`` with ``v = f * 4 + k``, see :mod:`hipsml.train.som._transforms`).

Three search paths give the same distances (``tests/test_som.py`` checks each against brute force):

* D4 Fourier (PINK's defaults: all 8 variants and a symmetric distance region). Pixels fall in
  orbits of 8 under the dihedral group D4 (turns and flip); on each orbit the 8 correlations of
  image and neuron are a group correlation, which D4's Fourier transform (four 1-D and one 2-D
  real irreducible representations) turns into 12 multiplications instead of 64. Online training
  keeps the neurons as these coefficients for a whole chunk of images: a neuron's target, the
  image in the neuron's own best transform, is then a sign flip or a 2x2 rotation of the image's
  coefficients, and pixels come back once per chunk. Each image is resampled straight into
  orbit order, one gathered row of the four bilinear taps per value (only for orbits some angle
  reaches), and transformed by one 8x8 matmul, so XLA cannot fuse the gathers into every
  coefficient and recompute them. Coefficients come first (``(8, ..., orbits)``) and the neurons
  are kept as three arrays, so the search matmuls take their operands without copies. Training
  and mapping share this search (:func:`features_search`); mapping resamples only the distance
  region's orbits, a few images per step, and recomputes the best match's distance in pixels.
* Images permuted (``B * R <= n``): ``[B*R*V, S] x [S, n]``.
* Neurons inverse-permuted (batches): ``[B*R, S] x [S, V*n]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from hipsml.train.som._config import SOMConfig
from hipsml.train.som._transforms import distance_mask, exact_variant_permutations, resampling_table

__all__ = [
    "SearchTables",
    "build_tables",
    "SearchResult",
    "resample",
    "search",
    "online_epoch_chunk",
    "batch_epoch_chunk",
    "map_chunk",
    "features_search",
    "neuron_features",
    "resample_angles",
]

#: Transforms whose squared distance is within this fraction of (|image|^2 + |neuron|^2) of the
#: best are ties; the first in PINK's order wins, so reported angles do not depend on rounding.
TIE_TOLERANCE = 1e-5


class SearchTables(NamedTuple):
    """Constant arrays of the transforms and the distance region (a JAX pytree)."""

    index: jax.Array  # type: ignore[assignment]  # a field named like tuple.index; (R, P, taps) int32: source pixel of each resampled pixel
    weight: jax.Array  # (R, P, taps) float32
    perm: jax.Array  # (V, D) int32: variant v of y is y[perm[v]]
    inv_support: jax.Array  # (V, S) int32: inverse permutation restricted to the support
    support: jax.Array  # (S,) int32: pixels compared by some variant's region
    mask_support: jax.Array  # (V, S) float32: the distance region, inverse-permuted, on the support
    region: jax.Array  # (S0,) int32: the pixels of the distance region itself
    perm_region: jax.Array  # (V, S0) int32: perm[:, region], the region's pixels in each variant
    mask_full: jax.Array  # (D,) float32: the distance region as 0/1
    orbit_index: (
        jax.Array
    )  # (8, O) int32: pixel perm_x[o] of each D4 orbit o of the neuron (order: see _dihedral_orbits)
    orbit_weight: jax.Array  # (O,) float32: 1 / stabiliser size of each orbit
    orbit_source: jax.Array  # (8, R, L) int32: first tap's source pixel (in C*H*W) of each resampled live orbit value
    orbit_source_weight: jax.Array  # (8, R, L, taps) float32: weights of the taps (see _tap_images)
    neighbourhood: jax.Array  # (n, n) float32: update factor of neuron j when i is the best match


@dataclass(frozen=True)
class Geometry:
    """Static sizes the kernels are specialised on."""

    channels: int
    image_side: int
    neuron_dim: int
    rotations: int  # R
    turns: int
    flips: int
    precision: str
    region_is_everything: bool  # the distance region covers the whole neuron (no gather needed)
    dihedral: bool  # all 8 turns x flips and a D4-invariant region: the group-Fourier matmul path
    region_orbits: int  # D4 orbits inside the distance region (the first ones of orbit_index)
    live_orbits: int  # D4 orbits that some resampled angle reaches (the first ones; the others stay 0)

    @property
    def variants(self) -> int:
        return self.turns * self.flips

    @property
    def size(self) -> int:
        return self.channels * self.neuron_dim * self.neuron_dim


def build_tables(
    config: SOMConfig, channels: int, image_side: int, neighbourhood: np.ndarray
) -> tuple[Geometry, SearchTables]:
    """The geometry and the constant tables for a resolved ``config`` and images ``(channels, side, side)``."""
    assert config.neuron_dim is not None and config.distance_dim is not None
    nd = config.neuron_dim
    index, weight = resampling_table(image_side, nd, config.numrot, config.interpolation)
    perm = exact_variant_permutations(channels, nd, config.numrot, config.flip)
    inverse = np.argsort(perm, axis=1).astype(np.int32)
    mask = np.broadcast_to(distance_mask(nd, config.distance_dim, config.distance_shape), (channels, nd, nd)).ravel()
    mask_inv = mask[inverse]  # (V, D): region of variant v, in the resampled image's pixels
    support = np.flatnonzero(mask_inv.any(axis=0)).astype(np.int32)
    turns = 1 if config.numrot == 1 else 4
    invariant = all(np.array_equal(mask[p], mask) for p in perm)
    dihedral = perm.shape[0] == 8 and invariant
    orbit_index, orbit_weight, region_orbits, live_orbits = (
        _dihedral_orbits(perm, mask, weight)
        if dihedral
        else (np.zeros((8, 0), np.int32), np.zeros((0,), np.float32), 0, 0)
    )
    orbit_source, orbit_source_weight = _orbit_sources(index, weight, orbit_index[:, :live_orbits], image_side, nd)
    geometry = Geometry(
        channels,
        image_side,
        nd,
        config.rotations_per_quarter,
        turns,
        2 if config.flip else 1,
        config.precision,
        bool(mask.all()),
        dihedral,
        region_orbits,
        live_orbits,
    )
    tables = SearchTables(
        index=jnp.asarray(index),
        weight=jnp.asarray(weight),
        perm=jnp.asarray(perm),
        inv_support=jnp.asarray(np.ascontiguousarray(inverse[:, support])),
        support=jnp.asarray(support),
        mask_support=jnp.asarray(mask_inv[:, support].astype(np.float32)),
        region=jnp.asarray(np.flatnonzero(mask).astype(np.int32)),
        perm_region=jnp.asarray(np.ascontiguousarray(perm[:, np.flatnonzero(mask)])),
        mask_full=jnp.asarray(mask.astype(np.float32)),
        orbit_index=jnp.asarray(orbit_index),
        orbit_weight=jnp.asarray(orbit_weight),
        orbit_source=jnp.asarray(orbit_source),
        orbit_source_weight=jnp.asarray(orbit_source_weight),
        neighbourhood=jnp.asarray(neighbourhood.astype(np.float32)),
    )
    return geometry, tables


def _dihedral_orbits(perm: np.ndarray, mask: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Every D4 orbit of the neuron's pixels: ``orbit_index`` ``(8, O)``, ``orbit_weight`` ``(O,)`` (1 / stabiliser
    size), the number of orbits in the distance region and the number of live ones (region included).

    Orbits come in three runs: inside the distance region; outside it but reached by some
    resampled angle; never reached (their resampled values are 0 whatever the image).
    """
    reps = np.unique(perm.min(axis=0))
    size = weight.shape[1]  # pixels of one channel
    reached = (weight != 0).any(axis=(0, 2))  # (P,)
    live = reached[perm[:, reps] % size].any(axis=0) | mask[reps]
    in_region = mask[reps]
    reps = np.concatenate([reps[in_region], reps[~in_region & live], reps[~live]])
    orbit_index = np.ascontiguousarray(perm[:, reps]).astype(np.int32)
    orbit_weight = np.array([1.0 / (8 // len(np.unique(perm[:, o]))) for o in reps], np.float32)
    return orbit_index, orbit_weight, int(in_region.sum()), int(live.sum())


def tap_offsets(image_side: int, taps: int) -> np.ndarray:
    """Offsets in one channel's flat pixels of the interpolation taps from the first: ``(taps,)``.

    :func:`~hipsml.train.som._transforms.resampling_table`'s bilinear taps are the pixels
    ``(r, c), (r, c+1), (r+1, c), (r+1, c+1)``, clamped at the last row and column where their weight is 0.
    """
    return np.array([0, 1, image_side, image_side + 1] if taps == 4 else [0], np.int64)[:taps]


def _orbit_sources(
    index: np.ndarray, weight: np.ndarray, orbit_index: np.ndarray, image_side: int, neuron_dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resampling tables composed with the orbit order, for orbits ``orbit_index`` ``(8, L)`` (the live ones):
    first tap ``(8, R, L)`` and tap weights ``(8, R, L, taps)``.

    Orbit value ``(x, o)`` (neuron pixel ``c * P + p``) of angle ``i`` is channel ``c``'s image
    resampled at ``index[i, p]``; the taps are stored as the first tap's pixel, the others being
    that pixel's neighbours (:func:`tap_offsets`), so that one gather of :func:`_tap_images` rows
    fetches them all.
    """
    taps = index.shape[-1]
    offsets = tap_offsets(image_side, taps)
    consistent = (weight == 0) | (index == index[..., :1] + offsets)
    if not consistent.all():
        raise AssertionError("resampling taps are not the 2x2 neighbourhood of the first tap")
    channel_of, pixel_of = np.divmod(orbit_index, neuron_dim * neuron_dim)  # (8, L)
    first = channel_of[:, None] * image_side * image_side + np.moveaxis(index[:, pixel_of, 0], 0, 1)  # (8, R, L)
    return first.astype(np.int32), np.moveaxis(weight[:, pixel_of, :], 0, 1).astype(np.float32)


def _tap_images(images: jax.Array, image_side: int, taps: int) -> jax.Array:
    """Each pixel's interpolation taps side by side: ``(B, C*H*W, taps)`` from ``(B, C, H*W)``.

    Row ``c*H*W + r*W + q`` holds channel ``c``'s pixels ``(r, q), (r, q+1), (r+1, q), (r+1, q+1)``
    (0 beyond the last row or column, where :func:`_orbit_sources`' weights are 0), so resampling
    gathers one row of ``taps`` values per output value instead of ``taps`` scattered pixels.
    """
    batch = images.shape[0]
    if taps == 1:
        return images.reshape(batch, -1, 1)
    square = images.reshape(batch, -1, image_side, image_side)
    padded = jnp.pad(square, ((0, 0), (0, 0), (0, 1), (0, 1)))
    stacked = jnp.stack(
        [padded[..., :-1, :-1], padded[..., :-1, 1:], padded[..., 1:, :-1], padded[..., 1:, 1:]], axis=-1
    )
    return stacked.reshape(batch, -1, taps)


def resample(images: jax.Array, tables: SearchTables, geometry: Geometry) -> jax.Array:
    """The ``R`` interpolated rotations of ``images`` ``(B, C, H*W)``: ``(B, R, D)`` float32."""
    batch = images.shape[0]
    out = None
    for tap in range(tables.index.shape[-1]):
        term = images[:, :, tables.index[:, :, tap]] * tables.weight[None, None, :, :, tap]  # (B, C, R, P)
        out = term if out is None else out + term
    assert out is not None
    return jnp.transpose(out, (0, 2, 1, 3)).reshape(batch, geometry.rotations, geometry.size)


def resample_angles(images: jax.Array, rotations: jax.Array, tables: SearchTables, geometry: Geometry) -> jax.Array:
    """Image ``b`` of ``images`` ``(B, C, H*W)`` resampled at its own angle ``rotations[b]`` only: ``(B, D)``,
    the same values as ``resample(images)[b, rotations[b]]``."""
    batch = images.shape[0]
    rows = jnp.arange(batch)[:, None, None]
    channels = jnp.arange(geometry.channels)[None, :, None]
    out = None
    for tap in range(tables.index.shape[-1]):
        source = tables.index[rotations, :, tap][:, None, :]  # (B, 1, P)
        term = images[rows, channels, source] * tables.weight[rotations, :, tap][:, None, :]  # (B, C, P)
        out = term if out is None else out + term
    assert out is not None
    return out.reshape(batch, geometry.size)


class SearchResult(NamedTuple):
    """Squared distances of every neuron in its best transform, and that transform."""

    neuron_distance: jax.Array  # (B, n) float32, squared, clamped at 0
    best_transform: jax.Array  # (B, n) int32, PINK's index t
    scale: jax.Array  # (B, n) float32: |M y|^2 + |M w|^2, the size of the terms (for tie tolerance)


def _dihedral_irreps() -> tuple[np.ndarray, np.ndarray]:
    """Real irreducible representations of D4 on the variants ``v = f*4 + k`` (operator ``F^f Q^k``).

    Returns ``chi`` ``(8, 4)``, the four 1-D characters ``a^f b^k`` (a, b = +-1), and ``rho``
    ``(8, 2, 2)``, the 2-D representation ``Fm^f Rm^k`` (a 90° rotation ``Rm`` and a mirror ``Fm``,
    which satisfy the group's relations ``Q^4 = F^2 = 1``, ``F Q F = Q^-1``).
    """
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    mirror = np.array([[1.0, 0.0], [0.0, -1.0]])
    chi = np.zeros((8, 4))
    rho = np.zeros((8, 2, 2))
    for f in range(2):
        for k in range(4):
            v = f * 4 + k
            chi[v] = [1.0, (-1.0) ** k, (-1.0) ** f, (-1.0) ** (f + k)]
            rho[v] = np.linalg.matrix_power(mirror, f) @ np.linalg.matrix_power(rotation, k)
    return chi, rho


_CHI, _RHO = _dihedral_irreps()
#: The Fourier transform on D4 as one matrix: coefficients ``f = _FOURIER @ g`` of orbit values ``g``
#: ``(8, ...)``; ``f[:4]`` are the 1-D irreps' ``sum_x g_x chi_a(x)``, ``f[4 + 2p + q]`` the 2-D irrep's
#: ``sum_x g_x rho(x)[p, q]``. Its inverse (Schur orthogonality) is :data:`_INVERSE_FOURIER`.
_FOURIER = np.concatenate([_CHI, _RHO.reshape(8, 4)], axis=1).T.astype(np.float32)
_INVERSE_FOURIER = np.concatenate([_CHI.T / 8.0, _RHO.reshape(8, 4).T / 4.0], axis=0).T.astype(np.float32)


def _fourier(values: jax.Array, matrix: np.ndarray) -> jax.Array:
    """``matrix (8, 8) @ values (8, ...)`` as one float32 matmul (which XLA does not fuse into its operand's
    producers, so gathered orbit values are materialised once rather than recomputed per coefficient)."""
    flat = jnp.matmul(jnp.asarray(matrix), values.reshape(8, -1), precision=jax.lax.Precision.HIGHEST)
    return flat.reshape(values.shape)


def to_features(pixels: jax.Array, tables: SearchTables, orbits: int | None = None) -> jax.Array:
    """D4 Fourier coefficients ``(8, ..., O)`` of images ``(..., D)`` (coefficients first, see :data:`_FOURIER`),
    or of their first ``orbits`` orbits only.

    Orbit ``o`` of the image is the function ``g_o(x) = pixels[perm_x[o]]`` on the group; its
    coefficients are ``sum_x g_o(x) chi_a(x)`` and ``sum_x g_o(x) rho(x)``. The transform is
    invertible (:func:`from_features`) and turns the exact variants into multiplications:
    variant ``v`` of the image has coefficients ``chi_a(v) f1_a`` and ``f2 rho(v)^T``.
    """
    index = tables.orbit_index[:, :orbits]  # (8, O)
    flat = pixels.reshape(-1, pixels.shape[-1])
    rows = jnp.arange(flat.shape[0])[None, :, None]
    values = flat[rows, index[:, None, :]]  # gathered straight into (8, N, O): no transposed copy
    return _fourier(values.reshape((8,) + pixels.shape[:-1] + (index.shape[-1],)), _FOURIER)


def resampled_features(
    images: jax.Array, tables: SearchTables, geometry: Geometry, *, region_only: bool = False
) -> tuple[jax.Array, jax.Array]:
    """D4 coefficients ``(8, B, R, L)`` of the ``R`` resampled rotations of ``images`` ``(B, C, H*W)`` on the
    ``L`` live orbits (the others are 0), or on the distance region's orbits only (``region_only``, all a
    search needs), and their squared norms over the distance region ``(B, R)``.

    The resampling gathers straight into orbit order (composed tables), one row of interpolation
    taps per value (:func:`_tap_images`), so it equals ``to_features(resample(images))[..., :L]``.
    """
    taps = tables.orbit_source_weight.shape[-1]
    orbits = geometry.region_orbits if region_only else geometry.live_orbits
    source, source_weight = tables.orbit_source[..., :orbits], tables.orbit_source_weight[..., :orbits, :]
    rows = _tap_images(images, geometry.image_side, taps)[:, source]  # (B, 8, R, L, taps)
    g = None
    for tap in range(taps):
        term = rows[..., tap] * source_weight[None, ..., tap]
        g = term if g is None else g + term
    assert g is not None
    region = geometry.region_orbits
    # reduce the last axis first: XLA's CPU reductions over a leading axis are many times slower
    norm = jnp.sum(jnp.sum(g[..., :region] ** 2 * tables.orbit_weight[:region], axis=-1), axis=1)
    return _fourier(jnp.moveaxis(g, 1, 0), _FOURIER), norm


def from_features(features: jax.Array, tables: SearchTables, size: int) -> jax.Array:
    """Pixels ``(..., D)`` back from :func:`to_features`' coefficients (inverse Fourier transform on D4)."""
    g = jnp.moveaxis(_fourier(features, _INVERSE_FOURIER), 0, -2)  # (..., 8, O)
    out = jnp.zeros(features.shape[1:-1] + (size,), jnp.float32)
    return out.at[..., tables.orbit_index].set(g)


#: Neuron coefficients kept as three arrays (rows 0-3, 4-5 and 6-7 of :func:`to_features`), the
#: operands of the search matmuls as they are, so XLA copies no slice of them per image.
NeuronFeatures = tuple[jax.Array, jax.Array, jax.Array]


def split_neurons(features: jax.Array) -> NeuronFeatures:
    """:func:`to_features`' neuron coefficients ``(8, n, O)`` as :data:`NeuronFeatures`."""
    return features[:4], features[4:6], features[6:8]


def _features_cross(y: jax.Array, w: NeuronFeatures, tables: SearchTables, geometry: Geometry) -> jax.Array:
    """``cross[b, n, v, i]`` from the D4 coefficients of images ``(8, B, R, O)`` and neurons (:data:`NeuronFeatures`).

    ``C(rho) = sum_o (1/|stab o|) W_o(rho)^T Y_o(rho)`` and ``c(v) = (1/8) sum_rho d_rho tr(rho(v)^T C(rho))``
    over the region's orbits: four scalar products and one 2x2 matrix product per orbit, 12
    multiplications instead of 64, as three matmuls whose neuron operands are whole arrays.
    """
    region = geometry.region_orbits
    y = y[..., :region] * tables.orbit_weight[:region]
    w1, w2p0, w2p1 = (part[..., :region] for part in w)  # [a, n, o]
    c1 = _cross(w1, y[:4], "ano,abro->anbr", geometry.precision)
    y2 = y[4:].reshape((2, 2) + y.shape[1:])  # [p, c, b, r, o]
    c2 = _cross(w2p0, y2[0], "ano,cbro->ancbr", geometry.precision)
    c2 = c2 + _cross(w2p1, y2[1], "ano,cbro->ancbr", geometry.precision)
    return jnp.stack([_signed_sum(c1, _CHI[v] / 8.0, c2, _RHO[v] / 4.0) for v in range(8)], axis=2)


def _signed_sum(c1: jax.Array, chi_v: np.ndarray, c2: jax.Array, rho_v: np.ndarray) -> jax.Array:
    """``sum_a chi_v[a] c1[a] + sum_ac rho_v[a, c] c2[a, :, c]`` for constant weights.

    ``(n, B, R)`` to ``(B, n, R)``.
    """
    total = c1[0] * float(chi_v[0])
    for a in range(1, 4):
        total = total + c1[a] * float(chi_v[a])
    for a in range(2):
        for c in range(2):
            if rho_v[a, c] != 0.0:
                total = total + c2[a, :, c] * float(rho_v[a, c])
    return jnp.swapaxes(total, 0, 1)


def _features_square_norm(w: NeuronFeatures, tables: SearchTables, geometry: Geometry) -> jax.Array:
    """``sum over the region of pixels^2`` of each neuron from its D4 coefficients (Plancherel): ``(n,)``."""
    region = geometry.region_orbits
    per_row = [jnp.sum(part[..., :region] ** 2 * tables.orbit_weight[:region], axis=-1) for part in w]  # (rows, n)
    total = sum(per_row[0][k] for k in range(4)) + 2.0 * sum(part[k] for part in per_row[1:] for k in range(2))
    return cast(jax.Array, total / 8.0)


def _dihedral_cross(resampled: jax.Array, weights: jax.Array, tables: SearchTables, geometry: Geometry) -> jax.Array:
    """``cross[b, i, v, n] = sum_j M_j w_nj (P_v y_bi)_j`` for all 8 variants, by D4's group Fourier transform.

    Every pixel orbit of D4 is an 8-vector on the group; the 8 correlations of a neuron's and an
    image's orbit vectors are one group correlation, which the Fourier transform on D4 turns into
    four scalar products and one 2x2 matrix product: 12 multiplications instead of 64, so the
    search matmuls are 5.3 times smaller than ``[B*R*8, S] x [S, n]``.
    """
    images = to_features(resampled, tables, geometry.region_orbits)  # the distance needs the region only
    return _features_cross(
        images, split_neurons(to_features(weights, tables, geometry.region_orbits)), tables, geometry
    )


def _cross(lhs: jax.Array, rhs: jax.Array, spec: str, precision: str) -> jax.Array:
    """The distance matmul in the configured precision (float32 accumulation always)."""
    if precision == "bfloat16" and jax.default_backend() == "cpu":
        # the same numbers (bf16 inputs, exact products, float32 sums); XLA's CPU dots lack most bf16 shapes
        lhs, rhs = (x.astype(jnp.bfloat16).astype(jnp.float32) for x in (lhs, rhs))
        return jnp.einsum(spec, lhs, rhs, precision=jax.lax.Precision.HIGHEST)
    if precision == "bfloat16":
        return jnp.einsum(spec, lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    level = jax.lax.Precision.HIGHEST if precision == "float32" else jax.lax.Precision.DEFAULT
    return jnp.einsum(spec, lhs, rhs, precision=level)


def search(
    weights: jax.Array, resampled: jax.Array, tables: SearchTables, geometry: Geometry, *, tie_tolerance: float = 0.0
) -> SearchResult:
    """Compare ``resampled`` ``(B, R, D)`` with ``weights`` ``(n, D)`` in all ``T`` transforms at once.

    ``d[b, j, v, i] = |M * (W[j] - P_v y[b, i])|^2``, by one matmul. When the neurons outnumber
    the resampled images (``B * R <= n``, online training) the ``V`` exact variants of the
    images are gathered: ``[B*R*V, S0] x [S0, n]``. Otherwise (batches) the neurons are
    inverse-permuted instead, ``W'_v = W[:, inv_v]`` and ``M'_v = M[inv_v]``, and
    ``d = |M'_v * (W'_v - y)|^2``: ``[B*R, S] x [S, V*n]``, the gather amortised over the batch.
    """
    batch, rotations, _ = resampled.shape
    n = weights.shape[0]
    if geometry.region_is_everything:
        ww = jnp.sum(weights * weights, axis=-1)  # (n,)
    else:
        ww = jnp.sum(weights * weights * tables.mask_full[None], axis=-1)
    if geometry.dihedral:
        region = resampled if geometry.region_is_everything else resampled[:, :, tables.region]
        yy = jnp.broadcast_to(jnp.sum(region * region, axis=-1)[:, None, :], (batch, geometry.variants, rotations))
        cross = _dihedral_cross(resampled, weights, tables, geometry)
    elif batch * rotations <= n:
        y = resampled[:, :, tables.perm_region]  # (B, R, V, S0)
        yy = jnp.transpose(jnp.sum(y * y, axis=-1), (0, 2, 1))  # (B, V, R)
        region_weights = weights if geometry.region_is_everything else weights[:, tables.region]
        cross = _cross(y, region_weights, "bivs,ns->bnvi", geometry.precision)
    else:
        y = resampled[:, :, tables.support]  # (B, R, S)
        masked = weights[:, tables.inv_support] * tables.mask_support[None]  # (n, V, S)
        yy = jnp.einsum("bis,vs->bvi", y * y, tables.mask_support, precision=jax.lax.Precision.HIGHEST)
        cross = _cross(y, masked, "bis,nvs->bnvi", geometry.precision)
    return _finish_search(cross, ww, yy, geometry, tie_tolerance=tie_tolerance)


def _finish_search(
    cross: jax.Array, ww: jax.Array, yy: jax.Array, geometry: Geometry, *, tie_tolerance: float = 0.0
) -> SearchResult:
    """Squared distances ``ww - 2 cross + yy`` from ``cross`` ``(B, n, V, R)``, ``ww`` ``(n,)`` and ``yy``
    ``(B, V, R)``; each neuron's best transform in PINK's order ``t = v * R + i``."""
    batch, n, variants, rotations = cross.shape
    distance = (ww[None, :, None, None] - 2.0 * cross + yy[:, None]).reshape(batch, n, variants * rotations)
    if tie_tolerance > 0.0:
        scale_t = (ww[None, :, None, None] + yy[:, None]).reshape(distance.shape)
        best_value = jnp.min(distance, axis=-1, keepdims=True)
        near = distance <= best_value + tie_tolerance * scale_t
        best = jnp.argmax(near, axis=-1).astype(jnp.int32)
        value = jnp.take_along_axis(distance, best[..., None], axis=-1)[..., 0]
    else:
        best = jnp.argmin(distance, axis=-1).astype(jnp.int32)
        value = jnp.min(distance, axis=-1)
    scale = ww[None, :] + jnp.mean(yy, axis=(1, 2))[:, None]
    return SearchResult(jnp.maximum(value, 0.0), best, scale)


def pick_best_neuron(result: SearchResult, *, tie_tolerance: float = 0.0) -> jax.Array:
    """The best-matching neuron ``(B,)``: the first within the tie tolerance of the smallest distance."""
    if tie_tolerance <= 0.0:
        return jnp.argmin(result.neuron_distance, axis=-1).astype(jnp.int32)
    best = jnp.min(result.neuron_distance, axis=-1, keepdims=True)
    near = result.neuron_distance <= best + tie_tolerance * result.scale
    return jnp.argmax(near, axis=-1).astype(jnp.int32)


def transformed_targets(
    resampled_one: jax.Array, best_transform: jax.Array, tables: SearchTables, geometry: Geometry
) -> jax.Array:
    """One image in each neuron's own best transform: ``(n, D)`` from ``(R, D)`` and ``(n,)``."""
    rotation = best_transform % geometry.rotations
    variant = best_transform // geometry.rotations
    return resampled_one[rotation[:, None], tables.perm[variant]]


def _second_best_adjacent(neuron_distance: jax.Array, bmu: jax.Array, adjacency: jax.Array) -> jax.Array:
    """Whether the second-best neuron is a grid neighbour of the best (per image, float 0/1)."""
    masked = neuron_distance.at[jnp.arange(neuron_distance.shape[0]), bmu].set(jnp.inf)
    second = jnp.argmin(masked, axis=-1)
    return adjacency[bmu, second].astype(jnp.float32)


class ChunkStats(NamedTuple):
    """Sums over the valid images of a chunk."""

    quantisation: jax.Array  # sum of sqrt(distance to the best match)
    topographic: jax.Array  # number of images whose 2nd best is not adjacent to the best
    hits: jax.Array  # (n,) best-match counts


def online_epoch_chunk(
    weights: jax.Array,
    images: jax.Array,
    valid: jax.Array,
    tables: SearchTables,
    adjacency: jax.Array,
    geometry: Geometry,
) -> tuple[jax.Array, ChunkStats]:
    """PINK-exact online training over a chunk ``(B, C, H*W)``, one image after the other (``lax.scan``).

    Each neuron ``j`` moves toward the image in its own best transform:
    ``w_j += h(bmu, j) * (T_j(x) - w_j)``. Images with ``valid == False`` (padding) change nothing.
    """

    def step(
        carry: tuple[jax.Array, ChunkStats], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[jax.Array, ChunkStats], None]:
        w, stats = carry
        image, ok = inputs
        resampled = jax.lax.optimization_barrier(resample(image[None], tables, geometry))  # (1, R, D)
        result = search(w, resampled, tables, geometry)
        bmu = pick_best_neuron(result)
        factor = tables.neighbourhood[bmu[0]] * ok.astype(jnp.float32)  # (n,)
        target = transformed_targets(resampled[0], result.best_transform[0], tables, geometry)
        w = w + factor[:, None] * (target - w)
        okf = ok.astype(jnp.float32)
        qe = jnp.sqrt(result.neuron_distance[0, bmu[0]]) * okf
        te = (1.0 - _second_best_adjacent(result.neuron_distance, bmu, adjacency)[0]) * okf
        hits = stats.hits.at[bmu[0]].add(ok.astype(jnp.int32))
        return (w, ChunkStats(stats.quantisation + qe, stats.topographic + te, hits)), None

    n = weights.shape[0]
    zero = ChunkStats(jnp.float32(0.0), jnp.float32(0.0), jnp.zeros((n,), jnp.int32))
    if geometry.dihedral:
        return _online_features_chunk(weights, images, valid, tables, adjacency, geometry, zero)
    (weights, stats), _ = jax.lax.scan(step, (weights, zero), (images, valid))
    return weights, stats


def _image_features(
    images: jax.Array, tables: SearchTables, geometry: Geometry, *, region_only: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Images' ``(B, C, H*W)`` resampled D4 coefficients ``(8, B, R, L)`` (:func:`resampled_features`) and their
    region norms per transform ``(B, 8, R)``."""
    y, norm = resampled_features(images, tables, geometry, region_only=region_only)
    return y, jnp.broadcast_to(norm[:, None, :], (images.shape[0], 8, geometry.rotations))


def neuron_features(
    weights: jax.Array, tables: SearchTables, geometry: Geometry, orbits: int | None = None
) -> tuple[NeuronFeatures, jax.Array]:
    """Neurons ``(n, D)`` as :data:`NeuronFeatures` (all orbits, or the first ``orbits``), and region norms ``(n,)``."""
    w = split_neurons(to_features(weights, tables, orbits))
    return w, _features_square_norm(w, tables, geometry)


def features_search(
    images: jax.Array,
    w: NeuronFeatures,
    ww: jax.Array,
    tables: SearchTables,
    geometry: Geometry,
    *,
    tie_tolerance: float = 0.0,
    region_only: bool = False,
) -> tuple[SearchResult, jax.Array]:
    """The D4 search of images ``(B, C, H*W)`` against neurons held as coefficients (:func:`neuron_features`):
    the search result and the images' resampled coefficients ``(8, B, R, L)`` (for the update; only the
    distance region's orbits with ``region_only``, which mapping uses).

    The one search of the D4 path, for online and batch training and for mapping.
    """
    # the resampled coefficients, materialised once (a barrier against XLA fusing the
    # resampling gathers into each consumer and recomputing them)
    y, yy = jax.lax.optimization_barrier(_image_features(images, tables, geometry, region_only=region_only))
    result = _finish_search(_features_cross(y, w, tables, geometry), ww, yy, geometry, tie_tolerance=tie_tolerance)
    return result, y


def _transformed_features(
    y: jax.Array, best_transform: jax.Array, tables: SearchTables, geometry: Geometry
) -> NeuronFeatures:
    """The image in each neuron's own best transform, as :data:`NeuronFeatures` from ``y`` ``(8, R, L)``.

    Rotation ``i_j`` in variant ``v_j`` has coefficients ``chi_a(v_j) y1_a[i_j]`` and
    ``y2[i_j] rho(v_j)^T``, so no pixel is gathered per neuron; the orbits no angle reaches are 0.
    """
    rotation, variant = best_transform % geometry.rotations, best_transform // geometry.rotations
    chi, rho = jnp.asarray(_CHI, jnp.float32)[variant], jnp.asarray(_RHO, jnp.float32)[variant]  # (n, 4), (n, 2, 2)
    chosen = y[:, rotation]  # (8, n, O)
    planes = [chosen[a] * chi[:, a, None] for a in range(4)]
    for p in range(2):  # (y2 rho^T)[p, q] = sum_c y2[p, c] rho[q, c]
        for q in range(2):
            planes.append(chosen[4 + 2 * p] * rho[:, q, 0, None] + chosen[5 + 2 * p] * rho[:, q, 1, None])
    dead = tables.orbit_weight.shape[0] - geometry.live_orbits
    first, second, third = (
        jnp.pad(jnp.stack(rows), ((0, 0), (0, 0), (0, dead))) for rows in (planes[:4], planes[4:6], planes[6:])
    )
    return first, second, third


def _online_features_chunk(
    weights: jax.Array,
    images: jax.Array,
    valid: jax.Array,
    tables: SearchTables,
    adjacency: jax.Array,
    geometry: Geometry,
    zero: ChunkStats,
) -> tuple[jax.Array, ChunkStats]:
    """Online training with the neurons held as D4 Fourier coefficients for the whole chunk.

    The same PINK update, written in coefficients (:func:`_transformed_features`); the pixels
    come back once per chunk.
    """

    def step(
        carry: tuple[NeuronFeatures, ChunkStats], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[NeuronFeatures, ChunkStats], None]:
        w, stats = carry
        image, ok = inputs
        okf = ok.astype(jnp.float32)
        result, y = features_search(image[None], w, _features_square_norm(w, tables, geometry), tables, geometry)
        bmu = pick_best_neuron(result)
        factor = tables.neighbourhood[bmu[0]] * okf  # (n,)
        target = _transformed_features(y[:, 0], result.best_transform[0], tables, geometry)
        moved = (part + factor[:, None] * (goal - part) for part, goal in zip(w, target, strict=True))
        w = cast(NeuronFeatures, tuple(moved))
        qe = jnp.sqrt(result.neuron_distance[0, bmu[0]]) * okf
        te = (1.0 - _second_best_adjacent(result.neuron_distance, bmu, adjacency)[0]) * okf
        hits = stats.hits.at[bmu[0]].add(ok.astype(jnp.int32))
        return (w, ChunkStats(stats.quantisation + qe, stats.topographic + te, hits)), None

    (w, stats), _ = jax.lax.scan(step, (split_neurons(to_features(weights, tables)), zero), (images, valid))
    return from_features(jnp.concatenate(w), tables, geometry.size), stats


def batch_epoch_chunk(
    weights: jax.Array,
    images: jax.Array,
    valid: jax.Array,
    tables: SearchTables,
    adjacency: jax.Array,
    geometry: Geometry,
    *,
    update_by_matmul: bool,
) -> tuple[jax.Array, ChunkStats]:
    """One mini-batch step: search ``B`` images against the same neurons, then one summed update.

    ``w_j += (sum_b h_bj T_bj(x_b) - sum_b h_bj w_j) / max(1, sum_b h_bj)``. With
    ``update_by_matmul`` (the GPU path) the whole batch is resampled and searched at once and the
    sum is one matmul ``[V*n, B*R] x [B*R, D]`` of one-hot weights. Otherwise (a CPU) a scan
    visits the images one by one against the same neurons, which keeps each image's resampled
    rotations in cache and gathers its targets directly.
    """
    batch = images.shape[0]
    n = weights.shape[0]
    okf = valid.astype(jnp.float32)
    if update_by_matmul:
        resampled = resample(images, tables, geometry)  # (B, R, D)
        result = search(weights, resampled, tables, geometry)
        bmu = pick_best_neuron(result)
        factor = tables.neighbourhood[bmu] * okf[:, None]  # (B, n)
        transforms = geometry.variants * geometry.rotations
        coef = jax.nn.one_hot(result.best_transform, transforms, dtype=jnp.float32) * factor[..., None]  # (B, n, T)
        coef = coef.reshape(batch, n, geometry.variants, geometry.rotations)
        coef = jnp.transpose(coef, (2, 1, 0, 3)).reshape(geometry.variants * n, batch * geometry.rotations)
        summed = jnp.matmul(
            coef, resampled.reshape(batch * geometry.rotations, geometry.size), precision=jax.lax.Precision.HIGHEST
        ).reshape(geometry.variants, n, geometry.size)
        target_sum = jnp.zeros_like(weights)
        for v in range(geometry.variants):
            target_sum = target_sum + summed[v][:, tables.perm[v]]
        total = jnp.sum(factor, axis=0)  # (n,)
        rows = jnp.arange(batch)
        qe = jnp.sum(jnp.sqrt(result.neuron_distance[rows, bmu]) * okf)
        te = jnp.sum((1.0 - _second_best_adjacent(result.neuron_distance, bmu, adjacency)) * okf)
        hits = jnp.zeros((n,), jnp.int32).at[bmu].add(valid.astype(jnp.int32))
    else:

        def visit(
            carry: tuple[jax.Array, jax.Array, ChunkStats], inputs: tuple[jax.Array, jax.Array]
        ) -> tuple[tuple[jax.Array, jax.Array, ChunkStats], None]:
            summed, factors, stats = carry
            image, ok = inputs
            okf_one = ok.astype(jnp.float32)
            resampled = jax.lax.optimization_barrier(resample(image[None], tables, geometry))
            result = search(weights, resampled, tables, geometry)
            bmu = pick_best_neuron(result)
            factor = tables.neighbourhood[bmu[0]] * okf_one
            target = transformed_targets(resampled[0], result.best_transform[0], tables, geometry)
            qe = jnp.sqrt(result.neuron_distance[0, bmu[0]]) * okf_one
            te = (1.0 - _second_best_adjacent(result.neuron_distance, bmu, adjacency)[0]) * okf_one
            stats = ChunkStats(
                stats.quantisation + qe, stats.topographic + te, stats.hits.at[bmu[0]].add(ok.astype(jnp.int32))
            )
            return (summed + factor[:, None] * target, factors + factor, stats), None

        zero = ChunkStats(jnp.float32(0.0), jnp.float32(0.0), jnp.zeros((n,), jnp.int32))
        if geometry.dihedral:
            target_sum, total, stats = _batch_features_sums(weights, images, valid, tables, adjacency, geometry, zero)
        else:
            (target_sum, total, stats), _ = jax.lax.scan(
                visit, (jnp.zeros_like(weights), jnp.zeros((n,), jnp.float32), zero), (images, valid)
            )
        qe, te, hits = stats
    weights = weights + (target_sum - total[:, None] * weights) / jnp.maximum(1.0, total)[:, None]
    return weights, ChunkStats(qe, te, hits)


def _batch_features_sums(
    weights: jax.Array,
    images: jax.Array,
    valid: jax.Array,
    tables: SearchTables,
    adjacency: jax.Array,
    geometry: Geometry,
    zero: ChunkStats,
) -> tuple[jax.Array, jax.Array, ChunkStats]:
    """Batch sums ``sum_b h_bj T_bj(x_b)`` and ``sum_b h_bj`` accumulated as D4 coefficients (CPU path)."""
    w, ww = neuron_features(weights, tables, geometry)

    def visit(
        carry: tuple[NeuronFeatures, jax.Array, ChunkStats], inputs: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[NeuronFeatures, jax.Array, ChunkStats], None]:
        summed, factors, stats = carry
        image, ok = inputs
        okf = ok.astype(jnp.float32)
        result, y = features_search(image[None], w, ww, tables, geometry)
        bmu = pick_best_neuron(result)
        factor = tables.neighbourhood[bmu[0]] * okf
        target = _transformed_features(y[:, 0], result.best_transform[0], tables, geometry)
        qe = jnp.sqrt(result.neuron_distance[0, bmu[0]]) * okf
        te = (1.0 - _second_best_adjacent(result.neuron_distance, bmu, adjacency)[0]) * okf
        stats = ChunkStats(
            stats.quantisation + qe, stats.topographic + te, stats.hits.at[bmu[0]].add(ok.astype(jnp.int32))
        )
        added = (part + factor[:, None] * goal for part, goal in zip(summed, target, strict=True))
        summed = cast(NeuronFeatures, tuple(added))
        return (summed, factors + factor, stats), None

    n = weights.shape[0]
    start = (cast(NeuronFeatures, tuple(jnp.zeros_like(part) for part in w)), jnp.zeros((n,), jnp.float32), zero)
    (summed, total, stats), _ = jax.lax.scan(visit, start, (images, valid))
    return from_features(jnp.concatenate(summed), tables, geometry.size), total, stats


#: the arrays of a :class:`ChunkMapping`: JAX's from the kernel, numpy's once gathered on the host
MappingArray = TypeVar("MappingArray", jax.Array, np.ndarray)


class ChunkMapping(NamedTuple, Generic[MappingArray]):
    """Mapping of a chunk of images."""

    bmu: MappingArray  # (B,) int32
    distance: MappingArray  # (B,) float32, euclidean (not squared), computed directly
    best_transform: MappingArray  # (B,) int32, the BMU's transform
    neuron_distance: MappingArray  # (B, n) float32 euclidean, from the matmul expansion
    neuron_transform: MappingArray  # (B, n) int32
    second_adjacent: MappingArray  # (B,) float32


#: Images searched together per step when mapping on the D4 path (a scan over groups of this many).
MAP_GROUP = 2  # 2 measured faster than 1, 4 and 8 for RGZ on 2 CPU cores


def map_chunk(
    weights: jax.Array,
    images: jax.Array,
    tables: SearchTables,
    adjacency: jax.Array,
    geometry: Geometry,
    group: int = MAP_GROUP,
) -> ChunkMapping[jax.Array]:
    """Map a chunk ``(B, C, H*W)``: best neuron, its exact distance, its transform (ties go to PINK's first).

    On the D4 path the images are searched as in training (:func:`features_search`), ``group``
    images at a time in a scan against the neurons' coefficients; the distance to the best
    neuron is then recomputed in pixels from the one resampled angle it needs.
    """
    batch = images.shape[0]
    if geometry.dihedral:
        group = math.gcd(batch, max(1, group))
        w, ww = neuron_features(weights, tables, geometry, geometry.region_orbits)

        def visit(_: None, block: jax.Array) -> tuple[None, tuple[jax.Array, jax.Array, jax.Array]]:
            result, _unused = features_search(
                block, w, ww, tables, geometry, tie_tolerance=TIE_TOLERANCE, region_only=True
            )
            return None, (
                result.neuron_distance,
                result.best_transform,
                pick_best_neuron(result, tie_tolerance=TIE_TOLERANCE),
            )

        grouped = images.reshape((batch // group, group) + images.shape[1:])
        _, (neuron_distance, neuron_transform, bmu) = jax.lax.scan(visit, None, grouped)
        neuron_distance = neuron_distance.reshape(batch, -1)
        neuron_transform = neuron_transform.reshape(batch, -1)
        bmu = bmu.reshape(batch)
        best = neuron_transform[jnp.arange(batch), bmu]
        resampled = resample_angles(images, best % geometry.rotations, tables, geometry)  # (B, D)
    else:
        full = resample(images, tables, geometry)
        result = search(weights, full, tables, geometry, tie_tolerance=TIE_TOLERANCE)
        bmu = pick_best_neuron(result, tie_tolerance=TIE_TOLERANCE)
        neuron_distance, neuron_transform = result.neuron_distance, result.best_transform
        best = neuron_transform[jnp.arange(batch), bmu]
        resampled = full[jnp.arange(batch), best % geometry.rotations]

    def exact(resampled_one: jax.Array, transform: jax.Array, neuron: jax.Array) -> jax.Array:
        target = resampled_one[tables.perm[transform // geometry.rotations]]
        region = jnp.zeros((geometry.size,), jnp.float32).at[tables.support].set(tables.mask_support[0])
        # the region of variant 0 is the region itself (identity permutation)
        return jnp.sqrt(jnp.sum(region * (target - weights[neuron]) ** 2))

    distance = jax.vmap(exact)(resampled, best, bmu)
    adjacent = _second_best_adjacent(neuron_distance, bmu, adjacency)
    return ChunkMapping(bmu, distance, best, jnp.sqrt(neuron_distance), neuron_transform, adjacent)
