"""Issue 13 §5: a non-square cartesian SOM trains the map PINK trains with the translated options.

PINK's ``CartesianLayout`` stores rows of length ``--som-height`` (neuron ``i`` at ``x = i % som_height``,
``y = i // som_height``); hipsml stores rows of length ``width``. :func:`pink_options` translates,
and this test checks the translation against a transcription of PINK's training loop in PINK's
own index order (no rotations, no flips, so the loop is a few lines of numpy), from the same
PINK start file.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from hipsml.train import (
    SOMConfig,
    pink_options,
    read_pink_som,
    train_som,
    write_pink_som,
)


def pink_order_training(
    start: np.ndarray, images: np.ndarray, *, som_width: int, som_height: int, sigma: float, damping: float, epochs: int
) -> tuple[np.ndarray, np.ndarray]:
    """PINK's online SOM, no rotations or flips, unshuffled: neurons and the last epoch's BMUs.

    Positions are PINK's ``CartesianLayout<2>::get_position`` with dimension ``{som_width, som_height}``.
    """
    n = som_width * som_height
    index = np.arange(n)
    x, y = index % som_height, index // som_height
    grid = np.sqrt((x[:, None] - x[None, :]) ** 2.0 + (y[:, None] - y[None, :]) ** 2.0)
    factor = damping / (sigma * math.sqrt(2.0 * math.pi)) * np.exp(-0.5 * (grid / sigma) ** 2)
    weights = start.reshape(n, -1).astype(np.float64)
    flat = images.reshape(len(images), -1).astype(np.float64)
    bmus = np.zeros(len(images), np.int64)
    for _epoch in range(epochs):
        for i, image in enumerate(flat):
            best = int(np.argmin(np.sum((weights - image) ** 2, axis=1)))
            weights += factor[best][:, None] * (image - weights)
            bmus[i] = best
    return weights.reshape(start.shape), bmus


@pytest.mark.parametrize(("width", "height"), [(3, 2), (2, 4)])
def test_non_square_map_equals_the_pink_order_transcription(tmp_path, width, height):
    rng = np.random.default_rng(7)
    images = rng.random((12, 1, 8, 8), dtype=np.float32)
    start = rng.random((width * height, 1, 8, 8), dtype=np.float32)
    config = SOMConfig(
        width=width,
        height=height,
        numrot=1,
        flip=False,
        shuffle=False,
        neuron_dim=8,
        epochs=2,
        sigma=1.1,
        damping=0.2,
        init="file_init",
        init_file=str(tmp_path / "start.bin"),
    )
    options = pink_options(config)
    som_width = int(options[options.index("--som-width") + 1])
    som_height = int(options[options.index("--som-height") + 1])
    assert (som_width, som_height) == (height, width)

    write_pink_som(tmp_path / "start.bin", start, layout="cartesian", width=width, height=height)
    raw = (tmp_path / "start.bin").read_bytes()
    assert struct.unpack("<7i", raw[:28])[3:] == (0, 2, som_width, som_height)  # the file's header is PINK's order
    assert read_pink_som(tmp_path / "start.bin").config.width == width  # and reads back as it was written

    som = train_som(images, config, progress=False)
    expected, _ = pink_order_training(start, images, som_width=som_width, som_height=som_height,
                                         sigma=1.1, damping=0.2, epochs=2)  # fmt: skip
    np.testing.assert_allclose(som.weights, expected, atol=1e-5)
    np.testing.assert_array_equal(som.map(images).bmu, [int(np.argmin(np.sum((expected.reshape(len(expected), -1)
                                  - im.ravel()) ** 2, axis=1))) for im in images])  # fmt: skip

    # the transposed reading (rows of length som_width) trains a different map: the test tells them apart
    transposed, _ = pink_order_training(start, images, som_width=som_height, som_height=som_width,
                                        sigma=1.1, damping=0.2, epochs=2)  # fmt: skip
    assert not np.allclose(som.weights, transposed, atol=1e-3)

    pink_file = som.to_pink(tmp_path / "trained.bin")
    assert struct.unpack("<7i", pink_file.read_bytes()[:28])[3:] == (0, 2, som_width, som_height)
    np.testing.assert_array_equal(read_pink_som(pink_file).weights, som.weights)
