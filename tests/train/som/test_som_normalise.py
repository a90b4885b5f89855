"""The SOM normalises cutouts with the loaders' own normalisations (one implementation), values by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hipsml.errors import InvalidInputError
from hipsml.train import SOMConfig, train_som
from hipsml.train.som._data import normalise_images

IMAGE = np.array([[[[2.0, 4.0], [np.nan, 3.0]]]], np.float32)


def test_minmax_by_hand():
    assert normalise_images(IMAGE, "minmax")[0, 0].tolist() == [[0.0, 1.0], [0.0, 0.5]]


def test_asinh_by_hand():
    # min-max to [0, 1] first, then asinh(y / 0.1) / asinh(10); NaN to 0
    half = math.asinh(0.5 / 0.1) / math.asinh(1 / 0.1)
    np.testing.assert_allclose(normalise_images(IMAGE, "asinh")[0, 0], [[0.0, 1.0], [0.0, half]], rtol=1e-6)


def test_none_keeps_the_values_and_nan():
    out = normalise_images(IMAGE, "none")
    assert np.isnan(out[0, 0, 1, 0]) and out[0, 0, 0, 1] == 4.0


def test_a_som_trains_on_asinh_normalised_images_and_refuses_unknown_names():
    images = np.random.default_rng(0).random((8, 1, 8, 8)).astype(np.float32) * 1000.0
    som = train_som(images, {"width": 2, "height": 2, "numrot": 4, "neuron_dim": 8, "normalise": "asinh"},
                    progress=False)  # fmt: skip
    assert som.config.normalise == "asinh" and 0.0 <= som.weights.min() and som.weights.max() <= 1.0
    with pytest.raises(InvalidInputError, match="did you mean 'asinh'"):
        SOMConfig(normalise="asinhh")
