"""SOM mappings stored beside a dataset version, as plain Zarr v3 arrays.

A published dataset version is never modified. The mapping of version ``N`` by a SOM is
written under the dataset folder, beside the versions::

    DATASET/
      versions.json  v1/  v2/ ...                 the published versions (untouched)
      derived/v1/som/<name>/                      one Zarr v3 group per mapping of v1
        zarr.json                                 attrs["hipsml"]: kind, SOM, dataset, split, errors
        rows/      int64   (cutout,)              the dataset row of each mapped cutout
        bmu/       int64   (cutout,)              best-matching neuron (SOM storage order)
        distance/  float32 (cutout,)              euclidean distance to it
        angle/     float64 (cutout,)              degrees, counter-clockwise as displayed north up
        flipped/   bool    (cutout,)              mirrored top-bottom after the rotation
      derived/v1/som/.staging-<name>-<random>/    a mapping being written (renamed to <name> when complete)

Each array has ``dimension_names == ["cutout"]``; the group's ``hipsml`` attributes name the
SOM (folder, weights SHA-256, config) and the dataset (folder, version, hash), so a reader
without hipsml (``zarr.open_group(path)``) knows what it holds. A mapping is written in a
staging folder and published by one ``rename``; writing the same SOM's mapping of the same
data again leaves the published one as it is.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from hipsml.dataset import (
    DERIVED_KINDS,
    Dataset,
    as_dataset,
    check_derived_name,
    derived_folder,
    derived_names,
    derived_provenance,
    hipsml_attrs,
    open_derived,
    publish_derived,
)
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train.som._config import SOMConfig
from hipsml.train.som._som import SOM, SOMMapping

__all__ = [
    "mapping_folder",
    "read_som_mapping",
    "same_mapping",
    "som_mapping_names",
    "stored_som_mapping",
    "weights_digest",
    "write_som_mapping",
]

logger = logging.getLogger(__name__)

_KIND = DERIVED_KINDS["som"]
_ARRAYS = ("rows", "bmu", "distance", "angle", "flipped")


def weights_digest(som: SOM) -> str:
    """SHA-256 of the SOM's float32 weights (little-endian): identifies the SOM a mapping came from."""
    return hashlib.sha256(np.ascontiguousarray(som.weights, dtype="<f4").tobytes()).hexdigest()


def _check_name(name: str) -> str:
    return check_derived_name(name, "som")


def mapping_folder(dataset: Dataset, name: str) -> Path:
    """``DATASET/derived/vN/som/<name>``: where the mapping ``name`` of this version lives.

    Examples
    --------
    >>> import hipsml
    >>> folder = mapping_folder(hipsml.open_dataset("demo-output/datasets/demo@v1"), "som10")
    >>> folder.relative_to(folder.parents[4]).as_posix()
    'demo/derived/v1/som/som10'
    """
    return derived_folder(dataset, "som", name)


def som_mapping_names(dataset: Dataset | str | os.PathLike[str]) -> list[str]:
    """The names of the published SOM mappings of this dataset version (a Dataset or ``"PATH[@vN]"``), sorted.

    :func:`hipsml.train.cnn_prediction_names` is its CNN sibling.
    """
    return derived_names(as_dataset(dataset), "som")


def _attrs(som: SOM, dataset: Dataset, mapping: SOMMapping, split: str | None, som_path: str | None) -> dict[str, Any]:
    return derived_provenance(
        dataset,
        "som",
        split=split,
        count=int(mapping.bmu.size),
        som={
            "path": som_path,
            "weights_sha256": weights_digest(som),
            "config": som.config.to_dict(),
            "training": som.training,
        },
        quantisation_error=mapping.quantisation_error,
        topographic_error=mapping.topographic_error,
    )


def same_mapping(folder: Path, som: SOM, dataset: Dataset, split: str | None) -> bool:
    """True when ``folder`` holds this SOM's mapping of this dataset version and split."""
    import zarr

    try:
        attrs = hipsml_attrs(zarr.open_group(folder, mode="r"))
    except (OSError, ValueError):
        return False
    return (
        attrs.get("som", {}).get("weights_sha256") == weights_digest(som)
        and attrs.get("dataset", {}).get("hash") == dataset.hash
        and attrs.get("split") == split
    )


def stored_som_mapping(som: SOM, dataset: Dataset | str | os.PathLike[str], name: str, *,
                       split: str | None = None) -> SOMMapping | None:  # fmt: skip
    """The stored mapping ``name`` of ``dataset`` when it is this SOM's mapping of this version and ``split``.

    ``None`` when there is no such mapping, when ``name`` cannot name one, or when the stored one
    was made by other weights, of another version or of another split: then map afresh
    (``som.map(dataset, split=split)``). The one place that decides whether a stored mapping may
    stand in for mapping now (the CLI's ``som outliers`` and ``som explore``, and the report).

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
    >>> som = hipsml.train_som(ds, {"width": 2, "height": 2, "numrot": 4, "epochs": 1}, progress=False)
    >>> stored_som_mapping(som, ds, "nothing-stored") is None
    True
    """
    ds = as_dataset(dataset)
    try:
        folder = mapping_folder(ds, name)
    except InvalidInputError:  # a name that cannot name a mapping
        return None
    if name not in som_mapping_names(ds) or not same_mapping(folder, som, ds, split):
        return None
    logger.info("using the stored mapping %s", folder)
    return read_som_mapping(ds, name)


def write_som_mapping(
    som: SOM,
    dataset: Dataset | str | os.PathLike[str],
    *,
    name: str,
    split: str | None = None,
    mapping: SOMMapping | None = None,
    overwrite: bool = False,
    som_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Path:
    """Map ``dataset`` (or its ``split``) with ``som`` and publish the result beside the version.

    The arrays go to ``DATASET/derived/vN/som/<name>`` (see this module's layout), written in a
    staging folder and published by rename; the version folder itself is not touched.

    Parameters
    ----------
    som : SOM
    dataset : Dataset
    name : str
        The mapping's name (letters, digits, ``._-``), e.g. the SOM folder's name.
    split : str, optional
        Map only this split (default: every row).
    mapping : SOMMapping, optional
        A mapping of exactly these rows already computed (``som.map(dataset, split=split)``).
    overwrite : bool
        Replace a mapping of that name made by another SOM or of other rows. The same SOM's
        mapping of the same rows is never rewritten (the call returns its folder).
    som_path : path, optional
        The SOM's folder, recorded in the attributes.
    progress : bool
        Show a progress bar while mapping.

    Returns
    -------
    pathlib.Path
        The mapping's folder (a Zarr v3 group).

    Raises
    ------
    OutputError
        A different mapping of that name exists and ``overwrite`` is False, or the folder cannot be written.

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
    >>> som = hipsml.train_som(ds, {"width": 2, "height": 2, "numrot": 4, "epochs": 1}, progress=False)
    >>> write_som_mapping(som, ds, name="demo", overwrite=True).name
    'demo'
    >>> read_som_mapping(ds, "demo").bmu.shape  # every cutout of the version
    (120,)
    """
    dataset = as_dataset(dataset)
    target = mapping_folder(dataset, name)
    if target.exists() and same_mapping(target, som, dataset, split):
        logger.info("%s already holds this SOM's mapping; kept", target)
        return target
    if target.exists() and not overwrite:
        raise OutputError(
            f"{target} holds another mapping (another SOM or other rows); give another name or overwrite=True"
        )
    if mapping is None:
        mapping = som.map(dataset, split=split, progress=progress)
    if mapping.rows is None:
        raise InvalidInputError("the mapping has no dataset rows: map the Dataset itself, not an array of it")
    attrs = _attrs(som, dataset, mapping, split, None if som_path is None else str(Path(som_path).resolve()))
    with publish_derived(dataset, "som", name, attrs) as group:
        values: dict[str, np.ndarray] = {
            "rows": mapping.rows.astype(np.int64),
            "bmu": mapping.bmu.astype(np.int64),
            "distance": mapping.distance.astype(np.float32),
            "angle": mapping.angle.astype(np.float64),
            "flipped": mapping.flipped.astype(bool),
        }
        for key in _ARRAYS:
            data = values[key]
            array = group.create_array(
                key,
                shape=data.shape,
                dtype=data.dtype,
                chunks=(max(1, min(len(data), 1 << 20)),),
                dimension_names=["cutout"],
            )
            array[:] = data
    logger.info("wrote the SOM mapping %s (%d cutouts)", target, mapping.bmu.size)
    return target


def read_som_mapping(dataset: Dataset | str | os.PathLike[str], name: str) -> SOMMapping:
    """Read the SOM mapping ``name`` of this dataset version (see :func:`write_som_mapping`).

    Returns
    -------
    SOMMapping
        With ``rows`` (the dataset rows) and the SOM's ``config``.

    Raises
    ------
    DatasetNotFoundError
        No mapping of that name (the message lists those there are).
    InvalidInputError
        The folder is not a SOM mapping of this version (another dataset hash).

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
    >>> som = hipsml.train_som(ds, {"width": 2, "height": 2, "numrot": 4, "epochs": 1}, progress=False)
    >>> folder = write_som_mapping(som, ds, name="tiny", overwrite=True)
    >>> mapping = read_som_mapping(ds, "tiny")
    >>> len(mapping.rows), int(mapping.bmu.max()) < 4
    (120, True)
    """
    dataset = as_dataset(dataset)
    group, attrs = open_derived(dataset, "som", name, hint="write one with write_som_mapping (hipsml som map)")
    values = {key: np.asarray(group[key][:]) for key in _ARRAYS}
    return SOMMapping(
        bmu=values["bmu"],
        distance=values["distance"],
        angle=values["angle"],
        flipped=values["flipped"],
        config=SOMConfig.from_mapping(attrs["som"]["config"]),
        topographic_error=float(attrs.get("topographic_error", float("nan"))),
        rows=values["rows"],
    )
