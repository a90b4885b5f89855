"""CNN predictions stored beside a dataset version, as plain Zarr v3 arrays.

A published version is never modified. The predictions of version ``N`` by a trained CNN run::

    DATASET/derived/vN/cnn/<name>/              one Zarr v3 group per prediction run
      zarr.json                                 attrs["hipsml"]: kind, model (run folder, weights SHA-256),
                                                classes, dataset, split
      rows/           int64   (cutout,)         the dataset row of each cutout
      probabilities/  float32 (cutout, class)   softmax class probabilities
      predicted/      int64   (cutout,)         the most probable class (names in its attributes)
    DATASET/derived/vN/cnn/.staging-<name>-<random>/   being written (renamed to <name> when complete)

The name rule, paths, staging, provenance block and listing are :mod:`hipsml.dataset._derived`'s,
shared with the SOM mappings (``derived/vN/som/<name>``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from hipsml.dataset import (
    DERIVED_KINDS,
    Dataset,
    as_dataset,
    derived_folder,
    derived_names,
    derived_provenance,
    open_derived,
    publish_derived,
)
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train._checks import check_model_matches
from hipsml.train.cnn._results import CNNPredictions, check_channels
from hipsml.train.cnn._run import load_cnn, run_folder
from hipsml.train.cnn._steps import batch_probabilities
from hipsml.train.loaders import parse_normalisation, zarr_batches

__all__ = ["cnn_prediction_names", "predict_cnn", "prediction_folder", "prediction_scores", "read_cnn_predictions"]

logger = logging.getLogger(__name__)

_KIND = DERIVED_KINDS["cnn"]


def prediction_folder(dataset: Any, name: str) -> Path:
    """``DATASET/derived/vN/cnn/<name>``: where the predictions ``name`` of this version live."""
    return derived_folder(as_dataset(dataset), "cnn", name)


def cnn_prediction_names(dataset: Dataset | str | os.PathLike[str]) -> list[str]:
    """The names of the stored CNN predictions of this dataset version (a Dataset or ``"PATH[@vN]"``), sorted.

    The CNN sibling of :func:`hipsml.train.som_mapping_names`.
    """
    return derived_names(as_dataset(dataset), "cnn")


def predict_cnn(
    checkpoint: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    dataset: Any,
    *,
    split: str | None = None,
    name: str | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
) -> Path:
    """Class probabilities of a dataset version's cutouts, written beside the version.

    Parameters
    ----------
    checkpoint : path or list of paths
        A run folder of :func:`hipsml.train.train_cnn` (or its ``model.eqx``). Several run
        folders make an ensemble: each model sees the cutouts normalised its own way and the
        class probabilities are their mean (the runs must share the class names, in order).
    dataset : Dataset or path
        The dataset version to classify (``PATH@vN``); its channels must match the model's.
    split : str, optional
        Only this split (default: every cutout).
    name : str, optional
        The predictions' name (default: the run folder's name; ``<first>-ensemble<K>`` for K runs).
    batch_size : int
    overwrite : bool
        Replace existing predictions of that name.

    Returns
    -------
    pathlib.Path
        ``DATASET/derived/vN/cnn/<name>`` (a Zarr v3 group: ``rows``, ``probabilities``, ``predicted``).

    Raises
    ------
    InvalidInputError
        Channel counts or cutout sizes differ between the model and the dataset, or the runs
        of an ensemble have different classes.
    OutputError
        Predictions of that name exist (without ``overwrite``), or the folder cannot be written.

    Examples
    --------
    >>> import zarr
    >>> folder = predict_cnn("runs/demo", "demo-output/datasets/demo")
    >>> folder.relative_to(folder.parents[4]).as_posix()  # beside the version, never inside it
    'demo/derived/v1/cnn/demo'
    >>> zarr.open_group(folder)["probabilities"].shape  # every cutout, one probability per class
    (120, 4)
    """
    from hipsml.train.loaders._zarr import check_positive_int

    batch_size = check_positive_int(batch_size, "batch_size")
    ds = as_dataset(dataset)
    given = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
    if not given:
        raise InvalidInputError("predict needs at least one CNN run folder")
    folders = [run_folder(c) for c in given]
    members = [_member(folder, ds) for folder in folders]
    names = members[0][1]["label_names"]
    for folder, (_model, run) in zip(folders[1:], members[1:], strict=True):
        if run["label_names"] != names:
            raise InvalidInputError(f"the runs of an ensemble must share their classes: {folders[0]} has "
                                    f"{', '.join(names)}; {folder} has {', '.join(run['label_names'])}")  # fmt: skip
    default = folders[0].resolve().name + (f"-ensemble{len(folders)}" if len(folders) > 1 else "")
    target = prediction_folder(ds, name or default)
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; give another name or overwrite=True")
    rows, probabilities = _member_probabilities(*members[0], ds, split, batch_size)
    for model, run in members[1:]:  # the same rows in the same (storage) order for every member
        probabilities += _member_probabilities(model, run, ds, split, batch_size)[1]
    probabilities /= np.float32(len(members))
    predicted = probabilities.argmax(axis=1).astype(np.int64)
    n, k = rows.size, probabilities.shape[1]
    run = members[0][1]
    with publish_derived(ds, "cnn", target.name, _attrs(folders, [r for _m, r in members], ds, split, n)) as group:
        chunk = max(1, min(n, 1 << 18))
        group.create_array("rows", data=rows.astype(np.int64), chunks=(chunk,), dimension_names=["cutout"])
        group.create_array("probabilities", data=probabilities, chunks=(chunk, k), dimension_names=["cutout", "class"])
        pred = group.create_array("predicted", data=predicted, chunks=(chunk,), dimension_names=["cutout"])
        pred.attrs["names"] = list(run["label_names"])
    logger.info("wrote CNN predictions %s (%d cutouts)", target, n)
    return target


def _member(folder: Path, ds: Any) -> tuple[Any, dict[str, Any]]:
    """The best model of a run folder and its ``run.json``, checked against the dataset's channels."""
    loaded = load_cnn(folder)
    check_channels(loaded, int(ds.images.shape[1]), f"{ds.path} v{ds.version} has")
    run = loaded.run
    trained = {"size": run["dataset"].get("size"), "channel_names": run.get("channels")}
    check_model_matches(trained, {"size": int(ds.images.shape[-1]), "channel_names": list(ds.channels)},
                        model=f"the model in {folder}", data=f"{ds.path} v{ds.version}")  # fmt: skip
    return loaded.model, loaded.run


def _member_probabilities(model: Any, run: dict[str, Any], ds: Any, split: str | None, batch_size: int
                          ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(rows, probabilities)`` of one model over the dataset (or a split), in storage order."""
    norm = parse_normalisation(run["normalisation"]) if run.get("normalisation") else None
    loader = zarr_batches(ds, split, batch_size=batch_size, shuffle=False, normalise=norm,
                          mask_channel=bool(run.get("mask_channel", False)), labels=False)  # fmt: skip
    n = loader.rows.size
    probabilities = np.zeros((n, model.spec.num_classes), dtype=np.float32)
    rows = np.zeros(n, dtype=np.int64)
    start = 0
    for probs, _labels, batch_rows in batch_probabilities(model, loader, batch_size=batch_size, dtype=jnp.float32):
        probabilities[start : start + batch_rows.size] = probs
        rows[start : start + batch_rows.size] = batch_rows
        start += batch_rows.size
    return rows, probabilities


def _model_attrs(folder: Path, run: dict[str, Any]) -> dict[str, Any]:
    weights = hashlib.sha256((folder / "model.eqx").read_bytes()).hexdigest()
    return {"path": str(folder.resolve()), "weights_sha256": weights, "spec": run["model"],
            "trained_on": run.get("dataset")}  # fmt: skip


def _attrs(folders: list[Path], runs: list[dict[str, Any]], ds: Any, split: str | None, count: int) -> dict[str, Any]:
    models = [_model_attrs(folder, run) for folder, run in zip(folders, runs, strict=True)]
    return derived_provenance(ds, "cnn", split=split, count=count, model=models[0],
                              ensemble=models if len(models) > 1 else None,
                              label_names=list(runs[0]["label_names"]))  # fmt: skip


def read_cnn_predictions(dataset: Dataset | str | os.PathLike[str], name: str) -> CNNPredictions:
    """The stored predictions ``name`` of this dataset version (see :func:`predict_cnn`).

    The CNN sibling of :func:`hipsml.train.read_som_mapping`.

    Returns
    -------
    CNNPredictions
        ``rows``, ``probabilities``, ``predicted``, ``label_names`` and the provenance ``attrs``.

    Raises
    ------
    DatasetNotFoundError
        No predictions of that name (the message lists those there are).
    InvalidInputError
        The folder holds something else, or predictions of another dataset version.

    Examples
    --------
    >>> p = read_cnn_predictions("demo-output/datasets/demo", "demo")  # written by predict_cnn's example
    >>> p.probabilities.shape, p.label_names[p.predicted[0]] in p.label_names
    ((120, 4), True)
    """
    ds = as_dataset(dataset)
    group, attrs = open_derived(ds, "cnn", name, hint="write them with predict_cnn (hipsml predict)")
    return CNNPredictions(
        probabilities=np.asarray(group["probabilities"][:]),
        predicted=np.asarray(group["predicted"][:]),
        label_names=list(attrs["label_names"]),
        rows=np.asarray(group["rows"][:]),
        attrs=attrs,
    )


def prediction_scores(dataset: Any, predictions: CNNPredictions) -> dict[str, dict[str, Any]] | None:
    """Accuracy of stored predictions against the dataset's labels, per split and per class.

    Parameters
    ----------
    dataset : Dataset
        The labelled dataset version the predictions are of.
    predictions : CNNPredictions
        From :func:`read_cnn_predictions`.

    Returns
    -------
    dict or None
        ``{split: {"count", "correct", "accuracy", "per_class": {class: {"count", "correct",
        "accuracy"}}}}`` for every split with predicted cutouts, in the dataset's split order
        (``accuracy`` is None for a class without cutouts there); None when the dataset has no
        labels. Labels are matched to the model's classes by name.

    Raises
    ------
    InvalidInputError
        A dataset class the model does not know.

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
    >>> scores = prediction_scores(ds, hipsml.train.load_cnn("runs/demo").predict(ds))
    >>> "test" in scores, all(0.0 <= s["accuracy"] <= 1.0 for s in scores.values())
    (True, True)
    """
    ds = as_dataset(dataset)
    names = ds.class_names  # integer labels are named by their codes, as training names them
    if not names:
        return None
    classes = list(predictions.label_names)
    unknown = [n for n in names if n not in classes]
    rows = np.asarray(predictions.rows, np.int64)
    labels = np.asarray(ds.column("label"), np.int64)[rows]
    if unknown and np.isin(labels, [names.index(n) for n in unknown]).any():
        raise InvalidInputError(
            f"{ds.path} v{ds.version} has classes {unknown} that the model does not know "
            f"(its classes: {', '.join(classes)})"
        )
    truth = np.array([classes.index(n) if n in classes else -1 for n in names], np.int64)[labels]
    correct = truth == np.asarray(predictions.predicted, np.int64)
    splits = np.asarray(ds.column("split"))[rows]
    scores: dict[str, dict[str, Any]] = {}
    for s, split in enumerate(ds.split_names):
        here = splits == s
        if not here.any():
            continue
        per_class = {}
        for k, name in enumerate(classes):
            mine = here & (truth == k)
            count = int(mine.sum())
            per_class[name] = {
                "count": count,
                "correct": int(correct[mine].sum()),
                "accuracy": float(correct[mine].mean()) if count else None,
            }
        scores[split] = {
            "count": int(here.sum()),
            "correct": int(correct[here].sum()),
            "accuracy": float(correct[here].mean()),
            "per_class": per_class,
        }
    return scores
