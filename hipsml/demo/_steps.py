"""The training steps of ``hipsml demo``: a brief SOM and a brief CNN on the demo dataset, reused when unchanged.

Each step owns one folder of the demo directory (``som/``, ``cnn/``) and leaves in it, last, a
``demo.json`` stamp naming the options and the dataset hash it was made from, and how long it
took. A later ``hipsml demo`` reuses a folder whose stamp matches (the same options on the same
dataset version) and trains afresh otherwise, in a staging folder renamed over the old one, so a
reader sees the old run or the new one. Each step also gives the ``hipsml`` command that makes
the same thing on its own (:func:`hipsml.cli.cli_command`), which the report prints.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hipsml._files import atomic_write_bytes, staged_folder
from hipsml._timestamps import now_iso
from hipsml.errors import OutputError

if TYPE_CHECKING:  # pragma: no cover
    from hipsml.dataset import Dataset
    from hipsml.train import SOM, SOMMapping

__all__ = [
    "DEMO_SOM",
    "DEMO_CNN",
    "SOM_MAPPING_NAME",
    "SomStep",
    "CnnStep",
    "check_step_folder",
    "som_step",
    "cnn_step",
]

logger = logging.getLogger(__name__)

#: the demo's SOM: hexagonal 7x7, 8 rotations (+ flip), a few epochs on the train split
DEMO_SOM: dict[str, Any] = {"layout": "hexagonal", "width": 7, "height": 7, "numrot": 8, "epochs": 3, "seed": 0}
#: the demo's CNN: the default residual network, briefly
DEMO_CNN: dict[str, Any] = {"epochs": 20, "batch_size": 64, "seed": 0}
#: the name of the demo SOM's mapping beside the dataset version (``hipsml som map``'s default for ``som/``)
SOM_MAPPING_NAME = "som"
_STAMP = "demo.json"


@dataclass(frozen=True)
class SomStep:
    """What the SOM step made: the SOM, its mapping of every cutout, where they are, and how long it took."""

    som: SOM
    mapping: SOMMapping
    folder: Path
    mapping_folder: Path
    seconds: float
    reused: bool
    command: str


@dataclass(frozen=True)
class CnnStep:
    """What the CNN step made: the run folder, its ``metrics.json`` and ``run.json``, and how long it took."""

    folder: Path
    metrics: dict[str, Any]
    run: dict[str, Any]
    seconds: float
    reused: bool
    command: str


def _stamp(options: Mapping[str, Any], dataset: Dataset) -> dict[str, Any]:
    return {"kind": "hipsml-demo-step", "options": dict(options), "dataset_hash": dataset.hash}


def _stamped(folder: Path, wanted: dict[str, Any], marker: str) -> dict[str, Any] | None:
    """The stamp of ``folder`` when it holds ``marker`` and was made with ``wanted``; else None."""
    try:
        stamp = json.loads((folder / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (folder / marker).is_file() or not isinstance(stamp, dict):
        return None
    same = all(stamp.get(key) == value for key, value in wanted.items())
    return stamp if same else None


def check_step_folder(folder: Path, marker: str, what: str) -> None:
    """Refuse to replace a non-empty ``folder`` that does not hold a ``what`` (no ``marker`` file)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; remove it so that the demo can write its {what} there")
    try:
        foreign = folder.is_dir() and any(folder.iterdir()) and not (folder / marker).is_file()
    except OSError as exc:
        raise OutputError(f"cannot read {folder}: {exc.strerror or exc}") from None
    if foreign:
        raise OutputError(f"{folder} is not empty and holds no {what}; remove it or choose another demo directory")


def _write_stamp(folder: Path, stamp: dict[str, Any], seconds: float) -> None:
    created = now_iso()
    atomic_write_bytes(
        folder / _STAMP, json.dumps({**stamp, "seconds": seconds, "created": created}, indent=2).encode("utf-8")
    )


def stamp_seconds(folder: Path) -> float:
    """The training time recorded in ``folder``'s stamp (NaN when there is none)."""
    try:
        return float(json.loads((folder / _STAMP).read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("nan")


def som_step(dataset: Dataset, folder: Path, options: Mapping[str, Any], *, dataset_arg: str, progress: bool,
             say: Callable[[str], None]) -> SomStep:  # fmt: skip
    """Train (or reuse) the demo SOM in ``folder``, map every cutout beside the version, draw its pictures.

    ``dataset_arg`` is the ``--dataset`` argument of the printed command (relative to the demo folder).
    """
    from hipsml.cli import SOM_FLAGS, cli_command
    from hipsml.train import load_som, plot_som_pictures, read_som_mapping, train_som, write_som_mapping

    command = cli_command(["hipsml", "som", "train", "--dataset", dataset_arg, "--split", "train"], options,
                          SOM_FLAGS) + " --out som-again"  # fmt: skip
    wanted = _stamp(options, dataset)
    stamp = _stamped(folder, wanted, "som.json")
    if stamp is not None:
        say(f"reusing the demo SOM in {folder} (same options, same dataset)")
        som = load_som(folder)
    else:
        check_step_folder(folder, "som.json", "SOM")
        say(f"\ntraining the demo SOM: {command}")
        t0 = time.perf_counter()
        with staged_folder(folder) as staging:
            som = train_som(dataset, split="train", progress=progress, on_epoch=lambda r: say(
                f"  SOM epoch {r.epoch + 1}: quantisation error {r.quantisation_error:.4g}, "
                f"topographic error {r.topographic_error:.4f}"), **options)  # fmt: skip
            som.save(staging)
    where = write_som_mapping(som, dataset, name=SOM_MAPPING_NAME, overwrite=True, som_path=folder, progress=progress)
    mapping = read_som_mapping(dataset, SOM_MAPPING_NAME)
    if stamp is None:
        assert mapping.rows is not None  # a stored mapping keeps its dataset rows
        train = np.isin(mapping.rows, dataset.split("train"))
        plot_som_pictures(som, np.bincount(mapping.bmu[train], minlength=som.neuron_count), folder)
        _write_stamp(folder, wanted, time.perf_counter() - t0)
    return SomStep(som, mapping, folder, where, stamp_seconds(folder), stamp is not None, command)


def cnn_step(dataset: Dataset, folder: Path, options: Mapping[str, Any], *, dataset_arg: str,
             say: Callable[[str], None]) -> CnnStep:  # fmt: skip
    """Train (or reuse) the demo CNN in the run folder ``folder`` (published whole, with its stamp, when done)."""
    from hipsml.cli import CNN_FLAGS, cli_command
    from hipsml.train import train_cnn

    command = cli_command(["hipsml", "cnn", "train", "--dataset", dataset_arg], options, CNN_FLAGS) + " --out cnn-again"
    wanted = _stamp(options, dataset)
    stamp = _stamped(folder, wanted, "metrics.json") if (folder / "run.json").is_file() else None
    if stamp is not None:
        say(f"reusing the demo CNN run in {folder} (same options, same dataset)")
    else:
        check_step_folder(folder, "run.json", "CNN run")
        say(f"\ntraining the demo CNN: {command}")
        t0 = time.perf_counter()
        with staged_folder(folder) as staging:
            train_cnn(dataset, dict(options), workdir=staging, progress=False, on_epoch=lambda r: say(
                f"  CNN epoch {r.epoch + 1}/{r.epochs}: loss {r.train_loss:.4f}, accuracy "
                f"{r.train_accuracy:.3f}, val accuracy {r.get('val_accuracy', float('nan')):.3f}"))  # fmt: skip
            _write_stamp(staging, wanted, time.perf_counter() - t0)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    return CnnStep(folder, metrics, run, stamp_seconds(folder), stamp is not None, command)
