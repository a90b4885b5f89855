"""Neuron grids: where each neuron sits, and grid distances, for PINK's two layouts.

Cartesian: neuron ``p`` is at row ``p // width``, column ``p % width`` (row-major); the grid
distance is euclidean, optionally on a torus (``pbc``).

Hexagonal (PINK's storage, https://www.redblobgames.com/grids/hexagons/#map-storage): a map of
odd side ``d`` and radius ``r = (d-1)/2`` stores its rows ``0..d-1`` one after the other, row ``i``
holding ``d - |r - i|`` neurons; a neuron has axial coordinates ``(q, i)`` with
``q = j + max(r - i, 0)`` for the ``j``-th neuron of its row. The grid distance is the number of
hexagon steps (axial distance).
"""

from __future__ import annotations

import numpy as np

from hipsml.train.som._config import SOMConfig

__all__ = ["grid_positions", "grid_distances", "plot_centres", "neighbour_mask"]


def grid_positions(layout: str, width: int, height: int) -> np.ndarray:
    """Integer grid coordinates ``(n, 2)`` of every neuron, in storage order.

    Cartesian: ``(row, column)``. Hexagonal: axial ``(q, r)`` as PINK's ``HexagonalLayout``.

    Examples
    --------
    >>> grid_positions("hexagonal", 3, 3).tolist()
    [[1, 0], [2, 0], [0, 1], [1, 1], [2, 1], [0, 2], [1, 2]]
    """
    if layout == "hexagonal":
        radius = (width - 1) // 2
        rows: list[tuple[int, int]] = []
        for r in range(width):
            size = width - abs(radius - r)
            start = max(radius - r, 0)
            rows.extend((start + j, r) for j in range(size))
        return np.asarray(rows, dtype=np.int64)
    index = np.arange(width * height)
    return np.stack([index // width, index % width], axis=1).astype(np.int64)


def grid_distances(config: SOMConfig) -> np.ndarray:
    """Grid distance ``(n, n)`` (float64) between every pair of neurons of ``config``'s map.

    Examples
    --------
    >>> d = grid_distances(SOMConfig(layout="hexagonal", width=3, height=3))
    >>> d[3].tolist()  # the centre neuron is one step from all six others
    [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    >>> grid_distances(SOMConfig(width=4, height=1, pbc=True))[0].tolist()
    [0.0, 1.0, 2.0, 1.0]
    """
    pos = grid_positions(config.layout, config.width, config.height)
    delta = pos[:, None, :] - pos[None, :, :]
    if config.layout == "hexagonal":
        dq, dr = delta[..., 0], delta[..., 1]
        same_sign = (dq >= 0) == (dr >= 0)
        return np.where(same_sign, np.abs(dq + dr), np.maximum(np.abs(dq), np.abs(dr))).astype(np.float64)
    drow = np.abs(delta[..., 0]).astype(np.float64)
    dcol = np.abs(delta[..., 1]).astype(np.float64)
    if config.pbc:
        drow = np.minimum(drow, config.height - drow)
        dcol = np.minimum(dcol, config.width - dcol)
    return np.sqrt(drow**2 + dcol**2)


def neighbour_mask(config: SOMConfig) -> np.ndarray:
    """Boolean ``(n, n)``: the neurons adjacent on the grid (6 hexagon neighbours; 8 on a cartesian grid).

    This is the adjacency of the topographic error and of the U-matrix.
    """
    distances = grid_distances(config)
    limit = 1.0 if config.layout == "hexagonal" else np.sqrt(2.0)
    return (distances > 0) & (distances <= limit + 1e-9)


def plot_centres(config: SOMConfig) -> np.ndarray:
    """Centre ``(x, y)`` of each neuron in a picture, ``(n, 2)``: unit spacing, first row on top.

    Hexagonal maps use pointy-top hexagons of unit width (rows ``sqrt(3)/2`` apart).
    """
    pos = grid_positions(config.layout, config.width, config.height).astype(np.float64)
    if config.layout == "hexagonal":
        q, r = pos[:, 0], pos[:, 1]
        return np.stack([q + 0.5 * r, -r * np.sqrt(3.0) / 2.0], axis=1)
    return np.stack([pos[:, 1], -pos[:, 0]], axis=1)
