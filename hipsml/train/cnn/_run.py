"""The run folder of a CNN: ``run.json``, checkpoints, the best model, and :func:`load_cnn`."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from hipsml._files import atomic_write_bytes, user_path
from hipsml.errors import InvalidInputError
from hipsml.train.cnn._limits import check_record
from hipsml.train.cnn._model import (
    ModelSpec,
    build_model,
)
from hipsml.train.cnn._results import CNN
from hipsml.train.loaders import Normalisation

__all__ = ["load_cnn", "read_run", "run_folder"]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# the run folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_tree(path: Path, tree: Any) -> Path:
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    return atomic_write_bytes(path, buffer.getvalue())


def _load_tree(path: Path, like: Any) -> Any:
    try:
        with open(path, "rb") as fh:
            return eqx.tree_deserialise_leaves(fh, like)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{path}: cannot read the weights ({exc})") from None


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write_bytes(path, (json.dumps(data, indent=1, allow_nan=True) + "\n").encode())


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{path.parent} holds no {what} ({path.name} is missing)") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: unreadable {what} ({exc})") from None


_RUN_KEYS = ("kind", "model", "label_names", "channels", "normalisation", "config", "dataset")
_DATASET_KEYS = ("path", "version", "hash")
_CHECKPOINT_KEYS = ("file", "sha256", "epoch", "step", "history", "best", "best_epoch", "stale")


def read_run(folder: Path) -> dict[str, Any]:
    """``folder/run.json``, checked: an object with every field a run needs, its model readable.

    Raises
    ------
    InvalidInputError
        Missing, unreadable or damaged (not an object, a field missing), naming the file.
    """
    path = folder / "run.json"
    run = check_record(_read_json(path, "CNN run"), path, "CNN run", _RUN_KEYS)
    check_record(run["dataset"], path, "CNN run dataset", _DATASET_KEYS)
    try:
        ModelSpec.from_dict(run["model"])
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"{path}: unreadable model ({exc}); the run folder is damaged") from None
    return run


def _normalisation_dict(norm: Normalisation | None) -> dict[str, Any] | None:
    if norm is None:
        return None
    data: dict[str, Any] = {"name": norm.name, **norm.options}
    if norm.stats is not None:
        data["stats"] = norm.stats.to_dict()
    return data


def run_folder(path: str | os.PathLike[str]) -> Path:
    """The run folder of ``path`` (a run folder, or its ``model.eqx``)."""
    p = user_path(path, what="checkpoint")
    return p.parent if p.name.endswith(".eqx") else p


def load_cnn(path: str | os.PathLike[str]) -> CNN:
    """The best model of a run folder (or its ``model.eqx``), as a :class:`CNN` (model, ``run.json``, folder).

    ``cnn.predict(images)`` classifies in memory, as ``load_som(folder).map(images)`` does for a SOM.
    (Unpacking ``model, run = load_cnn(path)``, the old shape, still works with a
    ``DeprecationWarning``.)

    Examples
    --------
    >>> import hipsml
    >>> cnn = load_cnn("runs/demo")
    >>> cnn.label_names == hipsml.open_dataset("demo-output/datasets/demo").label_names
    True
    """
    folder = run_folder(path)
    run = read_run(folder)
    spec = ModelSpec.from_dict(run["model"])
    skeleton = build_model(spec, key=jax.random.PRNGKey(0))
    return CNN(_load_tree(folder / "model.eqx", skeleton), run, folder)
