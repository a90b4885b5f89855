"""Pictures of a CNN run: the confusion matrix and the loss and accuracy curves (best epoch marked)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import user_path, write_figure_png

__all__ = ["curves_figure", "plot_confusion", "plot_curves"]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# pictures


def plot_confusion(confusion: np.ndarray, names: list[str], path: str | os.PathLike[str], *, title: str = ""
                   ) -> Path:  # fmt: skip
    """A confusion matrix (rows: true class, columns: predicted) as a PNG, counts and row fractions shown.

    Examples
    --------
    >>> import tempfile, os
    >>> plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], os.path.join(tempfile.mkdtemp(), "c.png")).name
    'c.png'
    """
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, dtype=np.int64)
    k = confusion.shape[0]
    rows = confusion.sum(axis=1, keepdims=True)
    frac = confusion / np.maximum(rows, 1)
    figure = Figure(figsize=(1.2 * k + 2.5, 1.1 * k + 1.8), dpi=100)
    ax = figure.add_subplot(1, 1, 1)
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{confusion[i, j]}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="fraction of the true class")
    figure.tight_layout()
    return write_figure_png(figure, user_path(path, what="output"))


def curves_figure(history: Sequence[Mapping[str, Any]], *, best_epoch: int | None = None) -> Any:
    """The figure :func:`plot_curves` saves (a matplotlib ``Figure``), the best epoch marked on both panels."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] + 1 for r in history]
    figure = Figure(figsize=(9, 3.5), dpi=100)
    for panel, what in enumerate(("loss", "accuracy")):
        ax = figure.add_subplot(1, 2, panel + 1)
        ax.plot(epochs, [r[f"train_{what}"] for r in history], "o-", label="train (augmented)")
        if all(f"val_{what}" in r for r in history):
            ax.plot(epochs, [r[f"val_{what}"] for r in history], "s-", label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle="--", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        if what == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, best_epoch: int | None = None
                ) -> Path:  # fmt: skip
    """Loss and accuracy per epoch (training and validation) as a PNG with two panels.

    Epochs are counted from 1 on the x axis; ``best_epoch`` (counted from 1, as in
    ``metrics.json``) is marked by a dashed line labelled "best epoch N".

    Examples
    --------
    >>> import tempfile, os
    >>> h = [{"epoch": 0, "train_loss": 1.0, "train_accuracy": 0.5},
    ...      {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8}]
    >>> plot_curves(h, os.path.join(tempfile.mkdtemp(), "curves.png"), best_epoch=2).name
    'curves.png'
    """
    return write_figure_png(curves_figure(history, best_epoch=best_epoch), user_path(path, what="output"))
