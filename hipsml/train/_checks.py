"""Checks shared by the SOM and the CNN: a finite loss, a model that fits its data, a real classification task.

Each is a small pure function that raises one-line :class:`~hipsml.errors.HipsmlError` messages, so
training, mapping, prediction and the CLI call the same check before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hipsml.errors import InvalidInputError, TrainingDivergedError

__all__ = ["check_class_count", "check_finite_loss", "check_finite_weights", "check_model_matches"]


def check_finite_loss(loss: float, *, epoch: int, model: str, cause: str) -> None:
    """Refuse a NaN or infinite training loss (or quantisation error) at ``epoch`` (0-based).

    Raises
    ------
    TrainingDivergedError
        ``loss`` is not finite; the message names the epoch (1-based, as progress shows it) and
        ``cause``, the options most likely to blame.

    Examples
    --------
    >>> check_finite_loss(0.5, epoch=0, model="CNN", cause="learning_rate")
    >>> check_finite_loss(float("nan"), epoch=2, model="CNN", cause="learning_rate too large")
    Traceback (most recent call last):
    ...
    hipsml.errors.TrainingDivergedError: CNN training diverged in epoch 3: the loss is nan; likely cause: ...
    """
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"{model} training diverged in epoch {epoch + 1}: the loss is {loss}; likely cause: {cause}"
        )


def check_finite_weights(finite: bool, *, epoch: int, model: str, cause: str) -> None:
    """Refuse weights holding NaN or infinite values after ``epoch`` (``finite``: the result of an all-finite test)."""
    if not finite:
        raise TrainingDivergedError(f"{model} training diverged in epoch {epoch + 1}: the weights hold NaN or infinite "
                                    f"values; likely cause: {cause}")  # fmt: skip


def _names(value: Any) -> list[str] | None:
    return None if value is None else [str(v) for v in value]


def check_model_matches(trained: Mapping[str, Any], given: Mapping[str, Any], *, model: str, data: str) -> None:
    """Refuse data whose image size, channel count or channel names differ from what ``model`` was trained on.

    Parameters
    ----------
    trained, given
        ``size`` (image side in pixels), ``channels`` (count) and optionally ``channel_names``
        (a list) of the training data and of the data now given. A key missing or None on
        either side is not compared (models saved before it was recorded, arrays without names).
    model, data
        How the message names the model (``"the SOM in soms/a"``) and the data (``"ds v2"``).

    Raises
    ------
    InvalidInputError
        The first difference, naming both values.

    Examples
    --------
    >>> check_model_matches({"size": 32, "channels": 1}, {"size": 16, "channels": 1}, model="the SOM", data="ds v1")
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: the SOM was trained on 32-pixel images; ds v1 has 16-pixel images: ...
    """
    for key, unit in (("size", "-pixel images"), ("channels", " channels")):
        was, now = trained.get(key), given.get(key)
        if was is not None and now is not None and int(was) != int(now):
            raise InvalidInputError(f"{model} was trained on {int(was)}{unit}; {data} has {int(now)}{unit}: "
                                    "map data cut like the training data")  # fmt: skip
    was_names, now_names = _names(trained.get("channel_names")), _names(given.get("channel_names"))
    if was_names is not None and now_names is not None and was_names != now_names:
        raise InvalidInputError(f"{model} was trained on channels {', '.join(was_names)}; {data} has "
                                f"{', '.join(now_names)}: "
                                "use data with the training channels, in that order")  # fmt: skip


def check_class_count(codes: np.ndarray, names: Sequence[str], *, split: str, where: str) -> None:
    """Refuse a classification task with fewer than 2 classes present in the training ``split``.

    Examples
    --------
    >>> check_class_count(np.array([0, 0, 0]), ["star", "galaxy"], split="train", where="ds v1")
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: split 'train' of ds v1 holds only class star: a classifier needs at least 2 ...
    """
    present = np.unique(np.asarray(codes))
    if present.size < 2:
        label = ", ".join(names[int(c)] if 0 <= int(c) < len(names) else str(int(c)) for c in present) or "none"
        raise InvalidInputError(f"split {split!r} of {where} holds only class {label}: a classifier needs at least "
                                "2 classes in its training split")  # fmt: skip
