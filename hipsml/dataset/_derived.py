"""Results derived from a dataset version, stored beside it: ``DATASET/derived/vN/<kind>/<name>``.

A published version is never modified. What a model makes of it (a SOM mapping, CNN
predictions) is a Zarr v3 group of its own under the dataset folder::

    DATASET/
      versions.json  v1/  v2/ ...                 the published versions (untouched)
      derived/v1/<kind>/<name>/                   one Zarr v3 group per result (kind: som, cnn)
        zarr.json                                 attrs["hipsml"]: the provenance block (see derived_provenance)
      derived/v1/<kind>/.staging-<name>-<random>/ a result being written (renamed to <name> when complete)

This module is the one home of the name rule, the paths, the staging, the provenance block and
the listing; :mod:`hipsml.train.som` (mappings) and :mod:`hipsml.train.cnn` (predictions) use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hipsml._files import staged_folder
from hipsml._timestamps import now_iso
from hipsml.dataset._dataset import Dataset
from hipsml.dataset._store import hipsml_attrs
from hipsml.errors import DatasetNotFoundError, InvalidInputError

__all__ = [
    "DERIVED_KINDS",
    "check_derived_name",
    "derived_folder",
    "derived_names",
    "derived_provenance",
    "open_derived",
    "publish_derived",
]

#: the kinds of derived results, and the ``kind`` their provenance block records
DERIVED_KINDS: dict[str, str] = {"som": "som-mapping", "cnn": "cnn-predictions"}
#: what a user calls each kind in a message
_WHAT = {"som": "SOM mapping", "cnn": "CNN predictions"}
_PLURAL = {"som": "mappings", "cnn": "predictions"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_derived_name(name: Any, kind: str = "som") -> str:
    """``name`` when it is a valid result name (1-100 letters, digits, ``._-``, not starting with ``._-``).

    Examples
    --------
    >>> check_derived_name("som10")
    'som10'
    >>> check_derived_name("../x")
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: SOM mapping name must be 1-100 letters, digits, '.', '_' or '-' ...
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(f"{_what(kind)} name must be 1-100 letters, digits, '.', '_' or '-' "
                                f"(not starting with '.', '_' or '-'), got {name!r}")  # fmt: skip
    return name


def _what(kind: str) -> str:
    if kind not in DERIVED_KINDS:
        raise InvalidInputError(f"derived kind must be one of {', '.join(DERIVED_KINDS)}, got {kind!r}")
    return _WHAT[kind]


def derived_folder(dataset: Dataset, kind: str, name: str) -> Path:
    """``DATASET/derived/vN/<kind>/<name>``: where the result ``name`` of this version lives.

    Examples
    --------
    >>> import hipsml
    >>> folder = derived_folder(hipsml.open_dataset("demo-output/datasets/demo@v1"), "som", "som10")
    >>> folder.relative_to(folder.parents[4]).as_posix()
    'demo/derived/v1/som/som10'
    """
    return dataset.path / "derived" / f"v{dataset.version}" / kind / check_derived_name(name, kind)


def derived_names(dataset: Dataset, kind: str) -> list[str]:
    """The names of the published results of ``kind`` (``"som"``, ``"cnn"``) of this version, sorted."""
    _what(kind)
    parent = dataset.path / "derived" / f"v{dataset.version}" / kind
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir() if _NAME.match(p.name) and (p / "zarr.json").is_file())


def derived_provenance(dataset: Dataset, kind: str, *, split: str | None, count: int, **fields: Any) -> dict[str, Any]:
    """The ``hipsml`` attributes of a derived result: its kind, the dataset version, split, count, time, software.

    ``fields`` (what made it: the SOM, the CNN runs, errors) are added as they are, after ``kind``.
    """
    from hipsml import __version__

    _what(kind)
    return {
        "kind": DERIVED_KINDS[kind],
        **fields,
        "dataset": {"path": str(dataset.path.resolve()), "version": dataset.version, "hash": dataset.hash},
        "split": split,
        "count": int(count),
        "created": now_iso(),
        "software": {"hipsml": __version__},
    }


@contextmanager
def publish_derived(dataset: Dataset, kind: str, name: str, attrs: dict[str, Any]) -> Iterator[Any]:
    """Write a derived result: yield a new Zarr v3 group (``attrs`` set) in a staging folder, renamed when done.

    A reader sees the previous result of that name or the new one, never half of either; on
    an error the staging folder is removed.
    """
    import zarr

    target = derived_folder(dataset, kind, name)
    with staged_folder(target) as staging:
        group = zarr.open_group(staging, mode="w", zarr_format=3)
        group.attrs["hipsml"] = attrs
        yield group


def open_derived(dataset: Dataset, kind: str, name: str, *, hint: str) -> tuple[Any, dict[str, Any]]:
    """The Zarr group of the result ``name`` of this version and its ``hipsml`` attributes, checked.

    Raises
    ------
    DatasetNotFoundError
        No result of that name (the message lists those there are and ``hint``: how to make one).
    InvalidInputError
        The folder holds another kind of result, or a result of another dataset version (hash).
    """
    import zarr

    what = _what(kind)
    folder = derived_folder(dataset, kind, name)
    if not (folder / "zarr.json").is_file():
        have = ", ".join(derived_names(dataset, kind)) or "none"
        raise DatasetNotFoundError(f"no {what} {name!r} of {dataset.path} v{dataset.version} "
                                   f"(at {folder}; {_PLURAL[kind]} there: {have}); {hint}")  # fmt: skip
    group = zarr.open_group(folder, mode="r")
    attrs = hipsml_attrs(group)
    if attrs.get("kind") != DERIVED_KINDS[kind]:
        raise InvalidInputError(f"{folder} is not a hipsml {what}")
    if attrs.get("dataset", {}).get("hash") != dataset.hash:
        raise InvalidInputError(f"{folder} belongs to another dataset (hash {attrs.get('dataset', {}).get('hash')!r}, "
                                f"this version's is {dataset.hash!r}); make it again")  # fmt: skip
    return group, attrs
