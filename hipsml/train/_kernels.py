"""The jit-compiled SOM kernels: resample, search all transforms with one matmul, update.

Everything here is pure JAX on arrays. :class:`SearchTables` holds the constant arrays built once
per (config, image shape) by :func:`build_tables`; the kernels take them as arguments (not as
baked-in constants) so that compiling stays fast.

Shapes: ``n`` neurons of ``D = C * neuron_dim**2`` values; ``R = numrot/4`` resampled angles;
``V`` exact variants (4 turns x 2 flips); ``T = R * V`` transforms, numbered as PINK numbers them
(``t = v * R + i`` with ``v = f * 4 + k``, see :mod:`hipsml.train._transforms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hipsml.train._config import SOMConfig
from hipsml.train._transforms import distance_mask, exact_variant_permutations, resampling_table

__all__ = ["SearchTables", "build_tables", "SearchResult", "resample", "search", "online_epoch_chunk",
           "batch_epoch_chunk", "map_chunk"]

#: Transforms whose squared distance is within this fraction of (|image|^2 + |neuron|^2) of the
#: best are ties; the first in PINK's order wins, so reported angles do not depend on rounding.
TIE_TOLERANCE = 1e-5


class SearchTables(NamedTuple):
    """Constant arrays of the transforms and the distance region (a JAX pytree)."""

    index: jax.Array  # (R, P, taps) int32: source pixel of each resampled pixel
    weight: jax.Array  # (R, P, taps) float32
    perm: jax.Array  # (V, D) int32: variant v of y is y[perm[v]]
    inv_support: jax.Array  # (V, S) int32: inverse permutation restricted to the support
    support: jax.Array  # (S,) int32: pixels compared by some variant's region
    mask_support: jax.Array  # (V, S) float32: the distance region, inverse-permuted, on the support
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

    @property
    def variants(self) -> int:
        return self.turns * self.flips

    @property
    def size(self) -> int:
        return self.channels * self.neuron_dim * self.neuron_dim


def build_tables(config: SOMConfig, channels: int, image_side: int, neighbourhood: np.ndarray) -> tuple[Geometry, SearchTables]:
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
    geometry = Geometry(channels, image_side, nd, config.rotations_per_quarter, turns,
                        2 if config.flip else 1, config.precision)
    tables = SearchTables(
        index=jnp.asarray(index), weight=jnp.asarray(weight), perm=jnp.asarray(perm),
        inv_support=jnp.asarray(np.ascontiguousarray(inverse[:, support])), support=jnp.asarray(support),
        mask_support=jnp.asarray(mask_inv[:, support].astype(np.float32)),
        neighbourhood=jnp.asarray(neighbourhood.astype(np.float32)),
    )
    return geometry, tables


def resample(images: jax.Array, tables: SearchTables, geometry: Geometry) -> jax.Array:
    """The ``R`` interpolated rotations of ``images`` ``(B, C, H*W)``: ``(B, R, D)`` float32."""
    batch = images.shape[0]
    out = None
    for tap in range(tables.index.shape[-1]):
        term = images[:, :, tables.index[:, :, tap]] * tables.weight[None, None, :, :, tap]  # (B, C, R, P)
        out = term if out is None else out + term
    assert out is not None
    return jnp.transpose(out, (0, 2, 1, 3)).reshape(batch, geometry.rotations, geometry.size)


class SearchResult(NamedTuple):
    """Squared distances of every neuron in its best transform, and that transform."""

    neuron_distance: jax.Array  # (B, n) float32, squared, clamped at 0
    best_transform: jax.Array  # (B, n) int32, PINK's index t
    scale: jax.Array  # (B, n) float32: |M y|^2 + |M w|^2, the size of the terms (for tie tolerance)


def search(weights: jax.Array, resampled: jax.Array, tables: SearchTables, geometry: Geometry,
           *, tie_tolerance: float = 0.0) -> SearchResult:
    """Compare ``resampled`` ``(B, R, D)`` with ``weights`` ``(n, D)`` in all ``T`` transforms at once.

    ``d[b, i, v, j] = |M'_v * (W'_v[j] - y[b, i])|^2`` where ``W'_v`` and ``M'_v`` are the neurons
    and the region under the inverse of variant ``v``: one matmul ``[B*R, S] x [S, V*n]``.
    """
    batch, rotations, _ = resampled.shape
    n = weights.shape[0]
    y = resampled[:, :, tables.support]  # (B, R, S)
    w_variants = weights[:, tables.inv_support]  # (n, V, S)
    masked = w_variants * tables.mask_support[None]  # (n, V, S)
    ww = jnp.sum(masked * w_variants, axis=-1)  # (n, V)
    yy = jnp.einsum("bis,vs->biv", y * y, tables.mask_support, precision=jax.lax.Precision.HIGHEST)
    if geometry.precision == "bfloat16":
        cross = jnp.einsum("bis,nvs->bivn", y.astype(jnp.bfloat16), masked.astype(jnp.bfloat16),
                           preferred_element_type=jnp.float32)
    else:
        precision = jax.lax.Precision.HIGHEST if geometry.precision == "float32" else jax.lax.Precision.DEFAULT
        cross = jnp.einsum("bis,nvs->bivn", y, masked, precision=precision)
    distance = ww.T[None, None] - 2.0 * cross + yy[..., None]  # (B, R, V, n)
    # PINK order: t = v * R + i
    distance = jnp.transpose(distance, (0, 3, 2, 1)).reshape(batch, n, geometry.variants * rotations)
    if tie_tolerance > 0.0:
        scale_t = jnp.transpose(ww.T[None, None] + yy[..., None], (0, 3, 2, 1)).reshape(distance.shape)
        best_value = jnp.min(distance, axis=-1, keepdims=True)
        near = distance <= best_value + tie_tolerance * scale_t
        best = jnp.argmax(near, axis=-1).astype(jnp.int32)
    else:
        best = jnp.argmin(distance, axis=-1).astype(jnp.int32)
    value = jnp.take_along_axis(distance, best[..., None], axis=-1)[..., 0]
    scale = jnp.sum(ww, axis=1)[None, :] / geometry.variants + jnp.mean(yy, axis=(1, 2))[:, None]
    return SearchResult(jnp.maximum(value, 0.0), best, scale)


def pick_best_neuron(result: SearchResult, *, tie_tolerance: float = 0.0) -> jax.Array:
    """The best-matching neuron ``(B,)``: the first within the tie tolerance of the smallest distance."""
    if tie_tolerance <= 0.0:
        return jnp.argmin(result.neuron_distance, axis=-1).astype(jnp.int32)
    best = jnp.min(result.neuron_distance, axis=-1, keepdims=True)
    near = result.neuron_distance <= best + tie_tolerance * result.scale
    return jnp.argmax(near, axis=-1).astype(jnp.int32)


def transformed_targets(resampled_one: jax.Array, best_transform: jax.Array, tables: SearchTables,
                        geometry: Geometry) -> jax.Array:
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


def online_epoch_chunk(weights: jax.Array, images: jax.Array, valid: jax.Array, tables: SearchTables,
                       adjacency: jax.Array, geometry: Geometry) -> tuple[jax.Array, ChunkStats]:
    """PINK-exact online training over a chunk ``(B, C, H*W)``, one image after the other (``lax.scan``).

    Each neuron ``j`` moves toward the image in its own best transform:
    ``w_j += h(bmu, j) * (T_j(x) - w_j)``. Images with ``valid == False`` (padding) change nothing.
    """

    def step(carry: tuple[jax.Array, ChunkStats], inputs: tuple[jax.Array, jax.Array]) -> tuple[tuple[jax.Array, ChunkStats], None]:
        w, stats = carry
        image, ok = inputs
        resampled = resample(image[None], tables, geometry)  # (1, R, D)
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
    (weights, stats), _ = jax.lax.scan(step, (weights, zero), (images, valid))
    return weights, stats


def batch_epoch_chunk(weights: jax.Array, images: jax.Array, valid: jax.Array, tables: SearchTables,
                      adjacency: jax.Array, geometry: Geometry, *, update_by_matmul: bool) -> tuple[jax.Array, ChunkStats]:
    """One mini-batch step: search ``B`` images against the same neurons, then one summed update.

    ``w_j += (sum_b h_bj T_bj(x_b) - sum_b h_bj w_j) / max(1, sum_b h_bj)``. With
    ``update_by_matmul`` the sum is one matmul ``[V*n, B*R] x [B*R, D]`` of one-hot weights (the
    GPU path); otherwise a scan over the batch gathers each image's targets (cheaper on a CPU).
    """
    batch = images.shape[0]
    n = weights.shape[0]
    resampled = resample(images, tables, geometry)  # (B, R, D)
    result = search(weights, resampled, tables, geometry)
    bmu = pick_best_neuron(result)
    factor = tables.neighbourhood[bmu] * valid[:, None].astype(jnp.float32)  # (B, n)
    if update_by_matmul:
        transforms = geometry.variants * geometry.rotations
        coef = jax.nn.one_hot(result.best_transform, transforms, dtype=jnp.float32) * factor[..., None]  # (B, n, T)
        coef = coef.reshape(batch, n, geometry.variants, geometry.rotations)
        coef = jnp.transpose(coef, (2, 1, 0, 3)).reshape(geometry.variants * n, batch * geometry.rotations)
        summed = jnp.matmul(coef, resampled.reshape(batch * geometry.rotations, geometry.size),
                            precision=jax.lax.Precision.HIGHEST).reshape(geometry.variants, n, geometry.size)
        target_sum = jnp.zeros_like(weights)
        for v in range(geometry.variants):
            target_sum = target_sum + summed[v][:, tables.perm[v]]
    else:
        def accumulate(total: jax.Array, inputs: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            resampled_one, best_one, factor_one = inputs
            target = transformed_targets(resampled_one, best_one, tables, geometry)
            return total + factor_one[:, None] * target, None

        target_sum, _ = jax.lax.scan(accumulate, jnp.zeros_like(weights), (resampled, result.best_transform, factor))
    total = jnp.sum(factor, axis=0)  # (n,)
    weights = weights + (target_sum - total[:, None] * weights) / jnp.maximum(1.0, total)[:, None]
    okf = valid.astype(jnp.float32)
    rows = jnp.arange(batch)
    qe = jnp.sum(jnp.sqrt(result.neuron_distance[rows, bmu]) * okf)
    te = jnp.sum((1.0 - _second_best_adjacent(result.neuron_distance, bmu, adjacency)) * okf)
    hits = jnp.zeros((n,), jnp.int32).at[bmu].add(valid.astype(jnp.int32))
    return weights, ChunkStats(qe, te, hits)


class ChunkMapping(NamedTuple):
    """Mapping of a chunk of images."""

    bmu: jax.Array  # (B,) int32
    distance: jax.Array  # (B,) float32, euclidean (not squared), computed directly
    best_transform: jax.Array  # (B,) int32, the BMU's transform
    neuron_distance: jax.Array  # (B, n) float32 euclidean, from the matmul expansion
    neuron_transform: jax.Array  # (B, n) int32
    second_adjacent: jax.Array  # (B,) float32


def map_chunk(weights: jax.Array, images: jax.Array, tables: SearchTables, adjacency: jax.Array,
              geometry: Geometry) -> ChunkMapping:
    """Map a chunk ``(B, C, H*W)``: best neuron, its exact distance, its transform (ties go to PINK's first)."""
    resampled = resample(images, tables, geometry)
    result = search(weights, resampled, tables, geometry, tie_tolerance=TIE_TOLERANCE)
    bmu = pick_best_neuron(result, tie_tolerance=TIE_TOLERANCE)
    rows = jnp.arange(images.shape[0])
    best = result.best_transform[rows, bmu]

    def exact(resampled_one: jax.Array, transform: jax.Array, neuron: jax.Array) -> jax.Array:
        target = transformed_targets(resampled_one, transform[None], tables, geometry)[0]
        region = jnp.zeros((geometry.size,), jnp.float32).at[tables.support].set(tables.mask_support[0])
        # the region of variant 0 is the region itself (identity permutation)
        return jnp.sqrt(jnp.sum(region * (target - weights[neuron]) ** 2))

    distance = jax.vmap(exact)(resampled, best, bmu)
    adjacent = _second_best_adjacent(result.neuron_distance, bmu, adjacency)
    return ChunkMapping(bmu, distance, best, jnp.sqrt(result.neuron_distance), result.best_transform, adjacent)
