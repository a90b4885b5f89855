"""What a dataset build will need, worked out from its parameters before anything is allocated.

:func:`grid_cell_count` counts a grid's cells without enumerating them; :func:`estimate_build_memory`
adds up a build's peak memory (the target table, and per worker slot one chunk of cutouts and
the decoded tiles); :func:`check_memory` compares an estimate with the budget and refuses with
one line that gives both figures.

The budget and the refusal are :mod:`hipsml._memory`'s, shared with the SOM and the CNN.
"""

from __future__ import annotations

import math
from typing import Any

from hipsml._memory import check_memory, format_bytes, memory_budget
from hipsml.errors import RecipeError

__all__ = [
    "GRID_MAX_CELLS",
    "grid_cell_count",
    "estimate_build_memory",
    "check_memory",
    "memory_budget",
    "format_bytes",
]

#: the most cells a ``targets.grid`` may hold
GRID_MAX_CELLS = 50_000_000
#: bytes per target of the build's 1-D arrays (positions, ids, labels, splits, sort keys, their copies)
TABLE_BYTES_PER_TARGET = 256
#: what a survey process keeps of decoded tiles at most (``open_survey``'s ``memory_cache_bytes``)
SURVEY_CACHE_BYTES = 512 * 2**20


def grid_cell_count(order: int, *, radius: float | None = None, ranges: Any = None) -> int:
    """Cells of a HEALPix grid at ``order``, counted without listing them.

    For a disc of ``radius`` degrees: its area over a cell's area (``query_disc`` keeps the cells
    whose centres fall inside, about as many). For a MOC: the exact count of cells wholly inside
    its ``ranges`` (``(starts, ends)`` at order 29).

    Examples
    --------
    >>> grid_cell_count(20, radius=180.0)
    13194139533312
    >>> grid_cell_count(1, ranges=([0], [3 << 56]))  # 3 cells of order 1
    3
    """
    ncells = 12 * 4**order
    if ranges is not None:
        shift = 2 * (29 - order)
        return sum(max(0, (int(b) >> shift) - (-(-int(a) >> shift))) for a, b in zip(*ranges, strict=True))
    assert radius is not None
    return math.ceil(ncells * (1.0 - math.cos(math.radians(radius))) / 2.0)


def check_grid_cells(count: int, where: str) -> None:
    """Refuse a grid of more than :data:`GRID_MAX_CELLS` cells (``where`` describes the grid)."""
    if count > GRID_MAX_CELLS:
        raise RecipeError(
            f"targets.grid: {where} holds about {count:,} cells ({format_bytes(8 * count)} of cell indices alone), "
            f"more than the {GRID_MAX_CELLS:,} a grid may hold; lower the order or the region"
        )


def estimate_build_memory(
    n_targets: int, *, spec: Any, surveys: list[Any], chunk_rows: int, unit_targets: int, slots: int,
    processes: int = 1, id_bytes: int = 8,
) -> float:  # fmt: skip
    """Peak bytes of a dataset build (a float, so huge parameters never overflow).

    The target table (:data:`TABLE_BYTES_PER_TARGET` and the ids, per target), and per worker
    slot: three chunks of cutouts (the float32 buffer, its cast or padded copy, the compressed
    bytes) and the decoded tiles of its unit (at most ``spec.memory_limit`` per group of
    surveys, at least 64 tiles); per worker process, each survey's tile cache. A unit's memory
    follows the chunk size (``output.chunk_mb``), not the number of targets in it.
    """
    nch = sum(sv.channels for sv in surveys)
    chunk = 3.0 * chunk_rows * nch * float(spec.size) ** 2 * 4
    fov = spec.size * spec.pixel_scale / 3600.0
    cache = 0.0
    groups: dict[tuple[Any, int, int], list[float]] = {}  # surveys sharing frame, order, width share a slab
    for sv, k in zip(surveys, spec.orders, strict=True):
        tile_deg = math.degrees(math.sqrt(4 * math.pi / (12 * 4.0**k)))
        per_cutout = (math.ceil(fov / tile_deg) + 1) ** 2
        tile_bytes = float(sv.tile_width) ** 2 * sv.channels * 4
        cache += min(float(SURVEY_CACHE_BYTES), n_targets * per_cutout * tile_bytes)
        group = groups.setdefault((sv.frame, int(k), int(sv.tile_width)), [0.0, 0.0])
        group[0] = max(group[0], per_cutout)
        group[1] += tile_bytes
    tiles = 0.0
    for per_cutout, tile_bytes in groups.values():
        slab = max(float(spec.memory_limit), 64 * tile_bytes)
        tiles += min(slab, unit_targets * per_cutout * tile_bytes)
    table = float(n_targets) * (TABLE_BYTES_PER_TARGET + 2 * id_bytes)
    return table + slots * (chunk + tiles) + processes * cache
