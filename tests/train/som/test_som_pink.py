"""PINK 2 binary files: round trips, and files built byte by byte from PINK's FILE_FORMATS.md."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from hipsml.errors import InvalidInputError
from hipsml.train import (
    SOM,
    PinkMapping,
    PinkRotFlip,
    SOMConfig,
    read_pink,
    read_pink_data,
    read_pink_mapping,
    read_pink_rot_flip,
    read_pink_som,
    write_pink_data,
)
from hipsml.train.som._layout import grid_positions


def file_formats_hex_index(d: int, row: int, column: int) -> int:
    """FILE_FORMATS.md's memory position of hexagonal element [row, column] (its Python snippet, spelled out)."""
    r = (d - 1) // 2
    row_size = [d - abs(r - i) for i in range(d)]
    row_offset = [sum(row_size[0:i]) for i in range(d + 1)]
    p = row_offset[row] + column
    if r > row:
        p -= r - row
    return p


def test_hexagonal_storage_order_is_file_formats_order():
    for d in (3, 5, 21):
        positions = grid_positions("hexagonal", d, d)  # axial (q, r) per stored neuron
        for stored, (q, r) in enumerate(positions):
            assert file_formats_hex_index(d, r, q) == stored


@pytest.mark.parametrize("channels", [1, 3])
def test_data_round_trip(tmp_path, channels):
    images = np.random.default_rng(0).random((5, channels, 6, 6), dtype=np.float32)
    path = write_pink_data(tmp_path / "data.bin", images, header="made by a test")
    assert path.read_bytes().startswith(b"# made by a test\n# END OF HEADER\n")
    np.testing.assert_array_equal(read_pink_data(path), images)
    np.testing.assert_array_equal(read_pink(path), images)


@pytest.mark.parametrize("layout, width, height, count", [("cartesian", 3, 2, 6), ("hexagonal", 5, 5, 19)])
def test_som_mapping_and_rot_flip_round_trip(tmp_path, layout, width, height, count):
    config = SOMConfig(layout=layout, width=width, height=height, neuron_dim=6, numrot=4)
    weights = np.random.default_rng(1).random((count, 1, 6, 6), dtype=np.float32)
    som = SOM(config, weights)
    back = read_pink_som(som.to_pink(tmp_path / "som.bin"), numrot=4)
    assert (back.config.layout, back.config.width, back.config.height, back.config.neuron_dim) == (
        layout,
        width,
        height,
        6,
    )
    np.testing.assert_array_equal(back.weights, weights)

    images = np.random.default_rng(2).random((4, 1, 6, 6), dtype=np.float32)
    mapping = som.map(images, full=True)
    mapping.to_pink(tmp_path / "map.bin", rot_flip_path=tmp_path / "rotflip.bin")
    distances = read_pink_mapping(tmp_path / "map.bin")
    assert (distances.layout, distances.width, distances.height) == (layout, width, height)
    np.testing.assert_array_equal(distances.distances, mapping.neuron_distance)
    rot_flip = read_pink_rot_flip(tmp_path / "rotflip.bin")
    np.testing.assert_array_equal(rot_flip.flipped, mapping.neuron_flipped)
    np.testing.assert_allclose(rot_flip.angle_degrees, mapping.neuron_angle, atol=1e-4)
    assert isinstance(read_pink(tmp_path / "map.bin"), PinkMapping)
    assert isinstance(read_pink(tmp_path / "rotflip.bin"), PinkRotFlip)


def test_files_built_from_the_format_description_read_back(tmp_path):
    rng = np.random.default_rng(3)
    # data: 2 0 <dtype> <N> <layout: 0 2 H W> <data>, after comment lines
    images = rng.random((3, 4, 4), dtype=np.float32)
    raw = b"# PINK data file\n# second comment\n" + struct.pack("<8i", 2, 0, 0, 3, 0, 2, 4, 4)
    raw += struct.pack(f"<{images.size}f", *images.ravel())
    (tmp_path / "data.bin").write_bytes(raw)
    np.testing.assert_array_equal(read_pink_data(tmp_path / "data.bin"), images[:, None])

    # 3-D data: 0 3 C H W
    cube = rng.random((2, 2, 3, 3), dtype=np.float32)
    raw = struct.pack("<9i", 2, 0, 0, 2, 0, 3, 2, 3, 3) + struct.pack(f"<{cube.size}f", *cube.ravel())
    (tmp_path / "cube.bin").write_bytes(raw)
    np.testing.assert_array_equal(read_pink_data(tmp_path / "cube.bin"), cube)

    # hexagonal SOM 3x3 (7 neurons) of 2x2 neurons, layout 1 as FILE_FORMATS says ...
    neurons = rng.random((7, 2, 2), dtype=np.float32)
    body = struct.pack(f"<{neurons.size}f", *neurons.ravel())
    (tmp_path / "hex1.bin").write_bytes(struct.pack("<11i", 2, 1, 0, 1, 2, 3, 3, 0, 2, 2, 2) + body)
    # ... and layout 0 as PINK 2.5 itself writes hexagonal maps
    (tmp_path / "hex0.bin").write_bytes(struct.pack("<11i", 2, 1, 0, 0, 2, 3, 3, 0, 2, 2, 2) + body)
    for name in ("hex1.bin", "hex0.bin"):
        som = read_pink_som(tmp_path / name)
        assert som.config.layout == "hexagonal" and som.config.neuron_count == 7
        np.testing.assert_array_equal(som.weights[:, 0], neurons)

    # cartesian SOM 2 rows x 3 columns: element [i, j] at i * 3 + j
    grid = rng.random((6, 2, 2), dtype=np.float32)
    raw = struct.pack("<11i", 2, 1, 0, 0, 2, 2, 3, 0, 2, 2, 2) + struct.pack(f"<{grid.size}f", *grid.ravel())
    (tmp_path / "cart.bin").write_bytes(raw)
    som = read_pink_som(tmp_path / "cart.bin")
    assert (som.config.width, som.config.height) == (3, 2)
    np.testing.assert_array_equal(som.weights[:, 0], grid)

    # mapping: 2 2 <dtype> <N> <som layout> <N x neurons floats>
    distances = rng.random((4, 6), dtype=np.float32)
    raw = struct.pack("<8i", 2, 2, 0, 4, 0, 2, 2, 3) + struct.pack(f"<{distances.size}f", *distances.ravel())
    (tmp_path / "map.bin").write_bytes(raw)
    mapping = read_pink_mapping(tmp_path / "map.bin")
    np.testing.assert_array_equal(mapping.distances, distances)

    # rot/flip: 2 3 <N> <som layout> <per image, per neuron: bool flipped, float32 angle (radians)>
    flips = rng.random((2, 6)) < 0.5
    angles = rng.random((2, 6)).astype(np.float32) * 6.28
    raw = struct.pack("<7i", 2, 3, 2, 0, 2, 2, 3)
    for flip, angle in zip(flips.ravel(), angles.ravel(), strict=True):
        raw += struct.pack("<?f", bool(flip), float(angle))
    (tmp_path / "rotflip.bin").write_bytes(raw)
    rot_flip = read_pink_rot_flip(tmp_path / "rotflip.bin")
    np.testing.assert_array_equal(rot_flip.flipped, flips)
    np.testing.assert_array_equal(rot_flip.angle, angles)


def test_pink_som_initialises_training_and_maps(tmp_path):
    neurons = np.random.default_rng(4).random((4, 1, 6, 6), dtype=np.float32)
    som = SOM(SOMConfig(width=2, height=2, neuron_dim=6, numrot=4), neurons)
    path = som.to_pink(tmp_path / "som.bin")
    copies = np.rot90(neurons, 1, axes=(2, 3))
    mapping = read_pink_som(path, numrot=4).map(copies)
    assert mapping.bmu.tolist() == [0, 1, 2, 3]
    assert mapping.angle.tolist() == [90.0] * 4


def test_broken_files_are_refused_with_the_file_name(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(struct.pack("<8i", 2, 0, 0, 10, 0, 2, 4, 4) + b"\0" * 16)
    with pytest.raises(InvalidInputError, match="short.bin"):
        read_pink_data(path)
    wrong = tmp_path / "v1.bin"
    wrong.write_bytes(struct.pack("<4i", 1, 0, 0, 0))
    with pytest.raises(InvalidInputError, match="not a PINK 2"):
        read_pink(wrong)
    with pytest.raises(InvalidInputError, match="not a SOM file"):
        read_pink_som(write_pink_data(tmp_path / "d.bin", np.zeros((1, 2, 2), np.float32)))
