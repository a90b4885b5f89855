"""SOM figures checked by what they show, with expected values worked out by hand.

A U-matrix is checked on a 3x1 map whose neuron distances are known; a hit-count map is checked
by where its brightest cell lands in the PNG (neuron 0 is drawn at the top left, the last neuron
at the bottom right), so a reversed or transposed map fails.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from hipsml.train import SOM, SOMConfig, plot_hit_counts, umatrix


def _som(width: int, height: int, values: list[float]) -> SOM:
    config = SOMConfig(layout="cartesian", width=width, height=height, neuron_dim=2)
    weights = np.zeros((width * height, 1, 2, 2), dtype=np.float32)
    for n, v in enumerate(values):
        weights[n, 0, 0, 0] = v  # one pixel carries the value: distances are |v_a - v_b|
    return SOM(config, weights)


def test_umatrix_is_the_mean_distance_to_grid_neighbours_by_hand():
    # a line of three neurons holding 0, 1 and 3: neighbours are (0,1) and (1,2)
    u = umatrix(_som(3, 1, [0.0, 1.0, 3.0]))
    np.testing.assert_allclose(u, [1.0, (1.0 + 2.0) / 2.0, 2.0], rtol=1e-6)


def test_umatrix_of_a_square_map_by_hand():
    # 2x2 cartesian: a neuron's neighbours are the 8 around it (diagonals included), so here all three
    # others; values 0, 1, 4, 9: |differences| 1 4 9 / 3 8 / 5
    u = umatrix(_som(2, 2, [0.0, 1.0, 4.0, 9.0]))
    np.testing.assert_allclose(u, [(1 + 4 + 9) / 3, (1 + 3 + 8) / 3, (4 + 3 + 5) / 3, (9 + 8 + 5) / 3], rtol=1e-6)


def _bright_pixels(path: Path) -> np.ndarray:
    """(row, col) of the pixels drawn in magma's brightest colour."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    top = np.round(np.asarray(matplotlib.colormaps["magma"](1.0)[:3]) * 255).astype(np.int32)
    close = np.abs(rgb - top).sum(axis=2) <= 12
    return np.argwhere(close)


def test_hit_count_map_draws_the_busiest_neuron_where_it_sits(tmp_path):
    som = _som(3, 3, [0.0] * 9)
    first = np.zeros(9)
    first[0] = 50.0
    last = np.zeros(9)
    last[8] = 50.0
    shape = np.asarray(Image.open(plot_hit_counts(som, first, tmp_path / "first.png"))).shape
    height, width = shape[:2]
    at_first = _bright_pixels(tmp_path / "first.png")
    plot_hit_counts(som, last, tmp_path / "last.png")
    at_last = _bright_pixels(tmp_path / "last.png")
    # neuron 0 is the top-left cell: bright pixels in the left third, none in the lower half
    # (the colour bar's top, on the right, is the only other place with that colour)
    assert (at_first[:, 1] < width / 3).sum() > 100
    assert (at_first[:, 0] > height / 2).sum() == 0
    # neuron 8 is the bottom-right cell of the map: bright pixels in the lower half, none in the left third
    assert (at_last[:, 0] > height / 2).sum() > 100
    assert (at_last[:, 1] < width / 3).sum() == 0
