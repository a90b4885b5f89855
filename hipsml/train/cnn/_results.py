"""What the CNN side returns: a loaded run (:class:`CNN`) and class predictions (:class:`CNNPredictions`).

They mirror the SOM's :class:`~hipsml.train.SOM` (``load_som``, ``SOM.map``) and
:class:`~hipsml.train.SOMMapping` (``read_som_mapping``): ``load_cnn(run).predict(images)``
classifies images in memory, ``read_cnn_predictions(dataset, name)`` reads stored ones, and
both give a :class:`CNNPredictions`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hipsml.errors import InvalidInputError

__all__ = ["CNN", "CNNPredictions"]


@dataclass(frozen=True)
class CNNPredictions:
    """Class probabilities of some cutouts by a CNN (one run, or the mean of an ensemble).

    Attributes
    ----------
    probabilities : ndarray of float32, shape (N, K)
        Softmax class probabilities.
    predicted : ndarray of int64, shape (N,)
        The most probable class of each cutout (an index into ``label_names``).
    label_names : list of str
        The class names, in order.
    rows : ndarray of int64, shape (N,), or None
        The dataset row of each cutout; None when an array was classified.
    attrs : dict or None
        The provenance block of stored predictions (model, dataset, split, count, created); None in memory.
    """

    probabilities: np.ndarray
    predicted: np.ndarray
    label_names: list[str]
    rows: np.ndarray | None = None
    attrs: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def predicted_names(self) -> list[str]:
        """The predicted class of each cutout, by name."""
        return [self.label_names[int(k)] for k in self.predicted]

    def __len__(self) -> int:
        return int(self.predicted.size)

    def __getitem__(self, key: str) -> Any:
        """Dict-style access (what ``read_cnn_predictions`` returned before): deprecated."""
        if key not in ("rows", "probabilities", "predicted", "label_names", "attrs"):
            raise KeyError(key)
        warnings.warn(f"predictions[{key!r}] is deprecated; read the attribute predictions.{key}",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return getattr(self, key)


@dataclass(frozen=True)
class CNN:
    """A trained CNN loaded from its run folder (:func:`hipsml.train.load_cnn`), ready to classify.

    Attributes
    ----------
    model : ResNet
        The best model of the run.
    run : dict
        The run's ``run.json`` (architecture, classes, channels, normalisation, config, dataset).
    folder : pathlib.Path
        The run folder.

    Examples
    --------
    >>> import hipsml
    >>> cnn = hipsml.train.load_cnn("runs/demo")
    >>> predictions = cnn.predict(hipsml.open_dataset("demo-output/datasets/demo").images[:8])
    >>> len(predictions.predicted_names), set(predictions.predicted_names) <= set(cnn.label_names)
    (8, True)
    """

    model: Any
    run: dict[str, Any]
    folder: Path

    @property
    def label_names(self) -> list[str]:
        """The class names, in the order of the model's outputs."""
        return list(self.run["label_names"])

    @property
    def channels(self) -> list[str]:
        """The dataset channels the model reads (the coverage mask is added when ``mask_channel``)."""
        return list(self.run.get("channels", []))

    @property
    def mask_channel(self) -> bool:
        """Whether the coverage mask is an extra input channel."""
        return bool(self.run.get("mask_channel", False))

    @property
    def normalisation(self) -> Any:
        """The :class:`~hipsml.train.Normalisation` the run trained with (its statistics included), or None."""
        from hipsml.train.loaders import parse_normalisation

        return parse_normalisation(self.run["normalisation"]) if self.run.get("normalisation") else None

    def predict(self, data: Any, *, split: str | None = None, batch_size: int = 256) -> CNNPredictions:
        """Classify images in memory, normalised as in training; nothing is written.

        Parameters
        ----------
        data : ndarray, Dataset or path
            Raw cutouts ``(N, C, H, W)`` as a dataset stores them (NaN where uncovered), or a
            dataset version (``"PATH[@vN]"``), read in storage order.
        split : str, optional
            With a dataset: only this split (default: every row). Arrays have no splits.
        batch_size : int
            Cutouts per device call.

        Returns
        -------
        CNNPredictions
            ``rows`` set for a dataset, None for an array. To store a dataset's predictions
            beside it, use :func:`hipsml.train.predict_cnn`.
        """
        import jax.numpy as jnp

        from hipsml.dataset import as_dataset, is_dataset_like
        from hipsml.train.cnn._predict import _member_probabilities
        from hipsml.train.cnn._steps import batch_probabilities
        from hipsml.train.loaders._normalise import prepare_batch
        from hipsml.train.loaders._zarr import check_positive_int

        batch_size = check_positive_int(batch_size, "batch_size")
        rows: np.ndarray | None = None
        if is_dataset_like(data):
            ds = as_dataset(data)
            check_channels(self, int(ds.images.shape[1]), f"{ds.path} v{ds.version} has")
            rows, probabilities = _member_probabilities(self.model, self.run, ds, split, batch_size)
        else:
            if split is not None:
                raise InvalidInputError(f"split={split!r} needs a Dataset; an array has no splits")
            images = np.asarray(data)
            if images.ndim != 4:
                raise InvalidInputError(f"images must be (N, C, H, W), got shape {images.shape}")
            check_channels(self, int(images.shape[1]), "the images have")
            parts = []
            for start in range(0, len(images), batch_size):
                block = prepare_batch(np.array(images[start : start + batch_size], dtype=np.float32),
                                      self.normalisation, nan_to=0.0, mask_channel=self.mask_channel)  # fmt: skip
                parts += [p for p, _l, _r in batch_probabilities(self.model, [(block, None, None)],
                                                                batch_size=batch_size, dtype=jnp.float32)]  # fmt: skip
            k = self.model.spec.num_classes
            probabilities = np.concatenate(parts) if parts else np.zeros((0, k), np.float32)
        probabilities = probabilities.astype(np.float32)
        return CNNPredictions(probabilities, probabilities.argmax(axis=1).astype(np.int64), self.label_names, rows)

    def __iter__(self) -> Iterator[Any]:
        """``model, run = load_cnn(path)`` (the old shape) still works, with a DeprecationWarning."""
        warnings.warn("unpacking load_cnn(...) as (model, run) is deprecated; use its .model and .run",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return iter((self.model, self.run))


def check_channels(cnn: CNN, channels: int, what: str) -> None:
    """Refuse data of ``channels`` channels that the model cannot take; ``what`` ends "has" or "have"."""
    have = channels + (1 if cnn.mask_channel else 0)
    if have != cnn.model.spec.in_channels:
        raise InvalidInputError(f"the model in {cnn.folder} takes {cnn.model.spec.in_channels} channels "
                                f"({', '.join(cnn.channels)}{' + mask' if cnn.mask_channel else ''}); {what} "
                                f"{channels}")  # fmt: skip
