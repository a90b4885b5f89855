"""The images a SOM learns from or maps: a :class:`~hipsml.Dataset` split or a plain array, normalised.

A dataset is read in storage order and whole Zarr chunks at a time (each chunk is decoded once,
however many of its rows are wanted), then normalised as PINK's users do by default: each
cutout's channel min-max scaled to [0, 1], NaN (uncovered) pixels set to 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hipsml.dataset import Dataset
from hipsml.errors import InvalidInputError
from hipsml.train.loaders import parse_normalisation
from hipsml.train.loaders._normalise import prepare_batch
from hipsml.train.loaders._zarr import split_rows
from hipsml.train.som._config import Normalise

__all__ = [
    "SOM_NORMALISATIONS",
    "normalise_images",
    "resolve_normalise",
    "dataset_rows",
    "read_rows",
    "iter_row_blocks",
    "normalised_blocks",
    "TrainingData",
    "training_data",
]

logger = logging.getLogger(__name__)


#: the per-cutout normalisations a SOM can use: the loaders' own (:func:`~hipsml.train.parse_normalisation`)
SOM_NORMALISATIONS = ("minmax", "asinh", "percentile")


def normalise_images(images: np.ndarray, how: str) -> np.ndarray:
    """Images ``(N, C, S, S)`` normalised by ``how`` as the loaders do it, NaN then set to 0, as float32.

    ``how`` is ``'none'`` (unchanged: NaN stays NaN, which training refuses) or one of the
    loaders' per-cutout normalisations, :data:`SOM_NORMALISATIONS` (``'minmax'``: each
    cutout's channel to [0, 1] over its finite pixels, a constant or all-NaN channel to 0;
    ``'asinh'``, ``'percentile'``): one implementation, :func:`~hipsml.train.loaders.prepare_batch`.

    Examples
    --------
    >>> images = np.array([[[[2.0, 4.0], [np.nan, 3.0]]]], np.float32)
    >>> normalise_images(images, "minmax")[0, 0].tolist()
    [[0.0, 1.0], [0.0, 0.5]]
    """
    if how != "none" and how not in SOM_NORMALISATIONS:
        raise InvalidInputError(f"normalise must be 'none' or one of {', '.join(SOM_NORMALISATIONS)} here, got {how!r}")
    out = np.array(images, dtype=np.float32, copy=True)
    if how == "none" or out.size == 0:
        return out
    return prepare_batch(out, parse_normalisation(how), nan_to=0.0)


def resolve_normalise(how: Normalise, data: Any) -> Normalise:
    """``'auto'`` made concrete for ``data``: ``'minmax'`` for a Dataset, ``'none'`` for an array."""
    if how != "auto":
        return how
    return "minmax" if isinstance(data, Dataset) else "none"


def dataset_rows(dataset: Dataset, split: str | None) -> np.ndarray:
    """Sorted row indices of ``split`` (all rows when ``split`` is None).

    Raises
    ------
    InvalidInputError
        The dataset has no such split (the message lists its splits), or the split is empty.
    """
    if split is not None and not isinstance(split, str):
        raise InvalidInputError(f"split must be a split name or None, got {split!r}")
    rows = split_rows(dataset, split)
    if rows.size == 0:
        raise InvalidInputError(f"split {split!r} of {dataset.location} is empty; choose another split")
    return rows


def iter_row_blocks(
    dataset: Dataset, rows: np.ndarray, *, max_rows: int = 4096
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(row_indices, images)`` of sorted ``rows``, reading whole chunks of ``dataset.images``.

    Each block covers consecutive chunks (at least one, about ``max_rows`` rows); only the
    chunks holding wanted rows are read, each once, as one contiguous slice.
    """
    if rows.size == 0:
        return
    if np.any(np.diff(rows) < 0):
        raise InvalidInputError("rows must be sorted (storage order)")
    array = dataset.images
    chunk = int(array.chunks[0])
    step = max(chunk, (max_rows // chunk) * chunk)
    chunk_of = rows // chunk
    edges = np.flatnonzero(np.diff(chunk_of // (step // chunk))) + 1
    for part in np.split(rows, edges):
        first, last = int(part[0]) // chunk * chunk, min((int(part[-1]) // chunk + 1) * chunk, array.shape[0])
        block = np.asarray(dataset.read_image_slice(first, last), dtype=np.float32)
        yield part, block[part - first]


def normalised_blocks(
    dataset: Dataset, rows: np.ndarray, normalise: str, *, max_rows: int = 4096
) -> Iterator[np.ndarray]:
    """Images of sorted ``rows`` in blocks of whole chunks (about ``max_rows``), normalised, NaN set to 0."""
    for _part, block in iter_row_blocks(dataset, rows, max_rows=max_rows):
        yield np.nan_to_num(normalise_images(block, normalise), nan=0.0)


def read_rows(dataset: Dataset, rows: np.ndarray, normalise: str) -> np.ndarray:
    """Images ``(len(rows), C, S, S)`` float32 of sorted ``rows``, normalised; NaN set to 0 in any case.

    Examples
    --------
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")  # doctest: +SKIP
    >>> read_rows(ds, ds.split("train"), "minmax").max()  # doctest: +SKIP
    1.0
    """
    shape = tuple(int(s) for s in dataset.images.shape[1:])
    out = np.empty((rows.size, *shape), np.float32)
    done = 0
    for block in normalised_blocks(dataset, rows, normalise):
        out[done : done + len(block)] = block
        done += len(block)
    return out


@dataclass(frozen=True)
class TrainingData:
    """The images a SOM trains on, and where they came from.

    Attributes
    ----------
    images : ndarray of float32, shape (N, C, S, S)
        Normalised as ``normalise`` says.
    normalise : str
        ``'minmax'`` or ``'none'``: what was done.
    rows : ndarray of int64 or None
        The dataset rows of the images (None for an array).
    provenance : dict or None
        ``dataset`` (folder), ``version``, ``hash``, ``split``, ``count``, ``channels`` (None for an array).
    """

    images: np.ndarray
    normalise: Normalise
    rows: np.ndarray | None = None
    provenance: dict[str, Any] | None = None


def training_data(data: Any, normalise: Normalise, *, split: str | None = "train") -> TrainingData:
    """Read ``data`` (a Dataset's ``split``, or an array ``(N, C, S, S)`` / ``(N, S, S)``) for training or mapping.

    ``normalise`` may be ``'auto'`` (see :class:`~hipsml.train.SOMConfig`).
    """
    how = resolve_normalise(normalise, data)
    if isinstance(data, Dataset):
        rows = dataset_rows(data, split)
        images = read_rows(data, rows, how)
        provenance = {
            "dataset": str(data.path.resolve()),
            "version": data.version,
            "hash": data.hash,
            "split": split,
            "count": int(rows.size),
            "channels": data.channels,
        }
        logger.info(
            "read %d cutouts of %s v%d (split %s), normalise %s", rows.size, data.path, data.version, split, how
        )
        return TrainingData(images, how, rows, provenance)
    if split not in (None, "train"):
        raise InvalidInputError(f"split={split!r} needs a Dataset; an array has no splits")
    array = np.asarray(data)
    if array.ndim == 3:
        array = array[:, None]
    if how != "none" and array.ndim == 4:
        array = normalise_images(array, how)
    return TrainingData(array, how)
