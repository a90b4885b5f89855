"""CNN metrics and the confusion picture, against values worked out by hand.

Recall (not precision) per class, "balanced" class weights n / (K n_k), and a confusion image whose
cell colours are the row fractions in the Blues colour map, true classes top to bottom.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from hipsml.train import CNNConfig, plot_confusion
from hipsml.train.cnn._steps import metrics_of
from hipsml.train.cnn._train import _class_weights


def test_per_class_accuracy_is_recall_not_precision():
    confusion = np.array([[3, 1], [2, 4]])  # rows: true class, columns: predicted
    metrics = metrics_of(confusion, loss=0.5)
    # recall: 3/4 and 4/6; precision would be 3/5 and 4/5
    assert metrics["per_class"] == pytest.approx([0.75, 4 / 6])
    assert metrics["accuracy"] == pytest.approx(7 / 10)
    assert metrics["count"] == 10


def test_a_class_absent_from_the_split_has_no_accuracy():
    metrics = metrics_of(np.array([[2, 0, 1], [0, 0, 0], [1, 0, 3]]), loss=0.0)
    assert metrics["per_class"][1] is None
    assert metrics["per_class"][0] == pytest.approx(2 / 3) and metrics["per_class"][2] == pytest.approx(3 / 4)


def test_balanced_class_weights_by_hand():
    labels = np.array([0, 0, 0, 1, 2, 2])  # n = 6, K = 3, counts 3, 1, 2
    weights = _class_weights(CNNConfig(), labels, 3)
    np.testing.assert_allclose(weights, [6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)], rtol=1e-6)
    assert _class_weights(CNNConfig(class_weights=None), labels, 3).tolist() == [1.0, 1.0, 1.0]


def _pixels_of(rgb: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return np.argwhere(np.abs(rgb - colour).sum(axis=2) <= 6)


def test_confusion_colours_are_the_row_fractions_true_classes_top_down(tmp_path):
    # row fractions 0.8 0.2 / 0.5 0.5: the 0.2 colour is only in the top row, 0.5 only in the bottom one
    path = plot_confusion(np.array([[8, 2], [5, 5]]), ["a", "b"], tmp_path / "c.png")
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)
    blues = matplotlib.colormaps["Blues"]
    colour = {f: np.round(np.asarray(blues(f)[:3]) * 255).astype(np.int32) for f in (0.2, 0.5, 0.8)}
    found = {f: _pixels_of(rgb, c) for f, c in colour.items()}
    # each cell is a patch of its colour (the colour bar holds only a thin band of each)
    assert len(found[0.8]) > 500 and len(found[0.2]) > 500
    assert len(found[0.5]) > 2 * len(found[0.8]) * 0.8  # two cells of 0.5, one of 0.8
    # the top row (true class a) is drawn above the bottom row
    assert np.median(found[0.2][:, 0]) < np.median(found[0.5][:, 0])
    # in the top row the 0.8 cell (predicted a) is left of the 0.2 cell (predicted b)
    assert np.median(found[0.8][:, 1]) < np.median(found[0.2][:, 1])
    # darker means more: the 0.8 cell is darker than the 0.2 cell
    assert colour[0.8].sum() < colour[0.2].sum()
