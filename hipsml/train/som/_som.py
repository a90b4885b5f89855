"""Train and map a rotation- and flip-invariant self-organizing map (PINK's algorithm in JAX).

Public entry points: :func:`train_som`, :class:`SOM` (``map``, ``save``, ``to_pink``),
:class:`SOMMapping`, :func:`load_som`. The jit-compiled kernels are in
:mod:`hipsml.train.som._kernels`; the transforms and their angle convention in
:mod:`hipsml.train.som._transforms`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from hipsml._files import atomic_write, atomic_write_bytes, user_path
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train._checks import check_finite_loss, check_finite_weights, check_model_matches
from hipsml.train._records import EpochRecord
from hipsml.train.som import _kernels
from hipsml.train.som._config import SOMConfig
from hipsml.train.som._layout import grid_distances, neighbour_mask
from hipsml.train.som._limits import check_som_memory, read_npz_array
from hipsml.train.som._transforms import transform_angles

__all__ = [
    "SOM",
    "SOMMapping",
    "EpochRecord",
    "train_som",
    "load_som",
    "read_pink",
    "read_pink_som",
    "neighbourhood_factors",
    "schedule_value",
]

logger = logging.getLogger(__name__)

_FORMAT = "hipsml-som"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SOMMapping:
    """Where each image falls on a SOM, and how it is turned to get there.

    Attributes
    ----------
    bmu : ndarray of int64, shape (N,)
        Best-matching neuron (storage order, see :mod:`hipsml.train.som._layout`).
    distance : ndarray of float32, shape (N,)
        Euclidean distance (over the distance region) between the image in its best transform
        and the best neuron.
    angle : ndarray of float64, shape (N,)
        Degrees in [0, 360), an exact multiple of ``360/numrot``: the counter-clockwise rotation
        of the image as displayed north up (row 0 at the bottom) that, followed by a top-bottom
        mirror when ``flipped``, best matches the neuron. Ties go to the first transform in PINK's
        order, so the angle is deterministic.
    flipped : ndarray of bool, shape (N,)
    neuron_distance, neuron_angle, neuron_flipped : ndarray, shape (N, n), or None
        The full distance map and each neuron's own best transform (``map(..., full=True)``),
        what PINK's ``--map`` and ``--store-rot-flip`` write.
    config : SOMConfig
        The SOM's configuration (layout and size, for the PINK files).
    rows : ndarray of int64, shape (N,), or None
        The dataset row of each image when a :class:`~hipsml.Dataset` was mapped; None for an array.
    """

    bmu: np.ndarray
    distance: np.ndarray
    angle: np.ndarray
    flipped: np.ndarray
    config: SOMConfig
    neuron_distance: np.ndarray | None = None
    neuron_angle: np.ndarray | None = None
    neuron_flipped: np.ndarray | None = None
    topographic_error: float = float("nan")
    rows: np.ndarray | None = None

    @property
    def quantisation_error(self) -> float:
        """Mean of :attr:`distance`."""
        return float(np.mean(self.distance)) if self.distance.size else float("nan")

    def hit_counts(self) -> np.ndarray:
        """Images per neuron, ``(n,)`` int64."""
        return np.bincount(self.bmu, minlength=self.config.neuron_count)

    def to_pink(self, path: str | os.PathLike[str], *, rot_flip_path: str | os.PathLike[str] | None = None) -> Path:
        """Write PINK's mapping file (and its rot/flip file) from a ``full=True`` mapping; return the path."""
        from hipsml.train.som._pink import write_pink_mapping, write_pink_rot_flip

        if self.neuron_distance is None or self.neuron_angle is None or self.neuron_flipped is None:
            raise InvalidInputError("a PINK mapping file needs the full distance map: map the data with full=True")
        written = write_pink_mapping(
            path, self.neuron_distance, layout=self.config.layout, width=self.config.width, height=self.config.height
        )
        if rot_flip_path is not None:
            write_pink_rot_flip(
                rot_flip_path,
                np.deg2rad(self.neuron_angle),
                self.neuron_flipped,
                layout=self.config.layout,
                width=self.config.width,
                height=self.config.height,
            )
        return written


@dataclass(frozen=True)
class SOM:
    """A trained (or loaded) SOM: its configuration, its neurons and its training history.

    Attributes
    ----------
    config : SOMConfig
        The options it was trained with (``neuron_dim`` filled in).
    weights : ndarray of float32, shape (n, C, neuron_dim, neuron_dim)
        The neurons (prototypes) in storage order.
    history : tuple of EpochRecord
        One record per training epoch (the record type :func:`hipsml.train.train_cnn` uses too).
    training : dict or None
        Where the training images came from, when they were a :class:`~hipsml.Dataset` split:
        ``dataset`` (folder), ``version``, ``hash``, ``split``, ``count``, ``channels``.
    training_rows : ndarray of int64 or None
        The dataset rows it trained on (saved with the weights).
    images : dict or None
        The training images: ``size`` (side in pixels), ``channels`` (count) and ``channel_names``
        (a dataset's channels, None for an array). :meth:`map` refuses images that differ.
        None for a SOM read from a PINK file or saved before hipsml recorded it.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    >>> som = train_som(images, width=2, height=2, numrot=4, neuron_dim=8, progress=False)
    >>> som.weights.shape, som.map(images).bmu.shape
    ((4, 1, 8, 8), (20,))
    """

    config: SOMConfig
    weights: np.ndarray
    history: tuple[EpochRecord, ...] = field(default=())
    training: dict[str, Any] | None = None
    training_rows: np.ndarray | None = field(default=None, compare=False)
    images: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.weights.ndim != 4 or self.weights.shape[0] != self.config.neuron_count:
            raise InvalidInputError(
                f"SOM weights must be (neurons={self.config.neuron_count}, C, side, side), got {self.weights.shape}"
            )

    @property
    def neuron_count(self) -> int:
        """Number of neurons."""
        return self.weights.shape[0]

    def map(
        self,
        data: Any,
        *,
        split: str | None = None,
        full: bool = False,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> SOMMapping:
        """Map images ``(N, C, H, W)`` (or ``(N, H, W)``), or a :class:`~hipsml.Dataset`, onto the SOM.

        The images are normalised as in training (``config.normalise``). To store a dataset's
        mapping beside it, use :func:`hipsml.train.write_som_mapping`.

        Parameters
        ----------
        data : ndarray, Dataset or path
            Square images with the SOM's channel count, or a dataset (``"PATH[@vN]"``; read in storage order,
            whole chunks at a time; its ``rows`` are recorded in the mapping).
        split : str, optional
            Map only this split of a dataset (default: every row).
        full : bool
            Also return the distance to every neuron and each neuron's best transform
            (``N * n`` values each; PINK's mapping and rot/flip files).
        batch_size : int, optional
            Images per device call (default: the config's ``batch_size``, at most 64).
        progress : bool
            Show a progress bar.

        Returns
        -------
        SOMMapping

        Examples
        --------
        >>> import numpy as np
        >>> images = np.random.default_rng(1).random((6, 1, 8, 8), dtype=np.float32)
        >>> som = train_som(images, width=2, height=1, numrot=4, neuron_dim=8, progress=False)
        >>> mapping = som.map(np.rot90(images, 1, axes=(2, 3)))
        >>> sorted(set(mapping.angle.tolist()) - {0.0, 90.0, 180.0, 270.0})
        []
        """
        from hipsml.dataset import Dataset, as_dataset, is_dataset_like
        from hipsml.train.som._data import dataset_rows, normalised_blocks, resolve_normalise, training_data

        if is_dataset_like(data):
            data = as_dataset(data)
        rows: np.ndarray | None = None
        if isinstance(data, Dataset):  # read, normalise and map a few chunks at a time (bounded memory)
            rows = dataset_rows(data, split)
            blocks: Any = normalised_blocks(data, rows, resolve_normalise(self.config.normalise, data))
            total, (channels, side) = int(rows.size), (int(data.images.shape[1]), int(data.images.shape[2]))
        else:
            images = as_images(training_data(data, self.config.normalise, split=split).images)
            blocks, total, channels, side = iter([images]), len(images), images.shape[1], images.shape[2]
        trained = {"channels": int(self.weights.shape[1]), **(self.images or {})}
        given = {
            "size": side,
            "channels": channels,
            "channel_names": list(data.channels) if isinstance(data, Dataset) else None,
        }
        where = f"{data.path} v{data.version}" if isinstance(data, Dataset) else "the array"
        check_model_matches(trained, given, model="the SOM", data=where)
        config = self.config.resolved(side)
        check_som_memory(config, channels, side, chunk=batch_size or min(config.batch_size, 64))
        engine = _Engine(config, channels, side, neighbourhood_factors(config, config.sigma, config.damping))
        chunk = min(batch_size or min(config.batch_size, 64), 1 << max(total - 1, 0).bit_length())  # few compiles
        weights = jnp.asarray(self.weights.reshape(self.neuron_count, -1))
        parts: list[_kernels.ChunkMapping[np.ndarray]] = []
        with tqdm(total=total, desc="SOM map", unit="img", disable=not progress) as bar:
            for images in blocks:
                images = as_images(images)
                flat = images.reshape(len(images), channels, side * side)
                for start in range(0, len(images), chunk):
                    block, count = _padded(flat, np.arange(start, min(start + chunk, len(images))), chunk)
                    result = engine.map(weights, jnp.asarray(block))
                    parts.append(jax.tree_util.tree_map(lambda a, c=count: np.asarray(a)[:c], result))
                    bar.update(count)
        joined = _kernels.ChunkMapping(*(np.concatenate(arrays) for arrays in zip(*parts, strict=True)))
        angles, flips = transform_angles(config.numrot, config.flip)
        mapping = SOMMapping(
            bmu=joined.bmu.astype(np.int64),
            distance=joined.distance.astype(np.float32),
            angle=angles[joined.best_transform],
            flipped=flips[joined.best_transform],
            config=config,
            topographic_error=float(1.0 - np.mean(joined.second_adjacent)) if total else float("nan"),
            rows=rows,
        )
        if full:
            mapping = dataclasses.replace(
                mapping,
                neuron_distance=joined.neuron_distance.astype(np.float32),
                neuron_angle=angles[joined.neuron_transform],
                neuron_flipped=flips[joined.neuron_transform],
            )
        return mapping

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to a folder: ``weights.npz`` and ``som.json`` (config, history, training data), each written atomically.

        ``weights.npz`` holds the weights, the training rows and a copy of ``som.json``'s content
        in one atomic file; ``som.json`` (the readable copy) is written last, so a folder without
        it holds no SOM, and a crash between the two writes is repaired by :func:`load_som`,
        which trusts the archive. Saving after every epoch therefore always leaves a consistent SOM.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> som = SOM(SOMConfig(width=2, height=1, neuron_dim=4), np.zeros((2, 1, 4, 4), np.float32))
        >>> folder = som.save(tempfile.mkdtemp() + "/som")
        >>> load_som(folder).config == som.config
        True
        """
        folder = user_path(path, what="SOM folder")
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "config": self.config.to_dict(),
            "weights_shape": list(self.weights.shape),
            "history": [dict(r) for r in self.history],
            "training": self.training,
            "images": self.images,
        }
        arrays = {"weights": self.weights.astype(np.float32), "meta": np.array(json.dumps(meta))}
        if self.training_rows is not None:
            arrays["training_rows"] = np.asarray(self.training_rows, dtype=np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stubs match **arrays against allow_pickle: bool
        atomic_write_bytes(folder / "weights.npz", buffer.getvalue())
        with atomic_write(folder / "som.json") as fh:
            fh.write(json.dumps(meta, indent=2).encode())
        return folder

    def to_pink(self, path: str | os.PathLike[str]) -> Path:
        """Write the SOM as a PINK 2 binary SOM file (see :func:`hipsml.train.write_pink_som`)."""
        from hipsml.train.som._pink import write_pink_som

        return write_pink_som(
            path, self.weights, layout=self.config.layout, width=self.config.width, height=self.config.height
        )


def load_som(path: str | os.PathLike[str]) -> SOM:
    """Load a SOM saved by :meth:`SOM.save`.

    Raises
    ------
    InvalidInputError
        The folder holds no finished SOM, or its files do not agree.
    """
    folder = user_path(path, what="SOM folder")
    meta_path = folder / "som.json"
    if not meta_path.is_file():
        raise InvalidInputError(f"{folder} holds no saved SOM (no som.json); train one or give the right folder")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read {meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InvalidInputError(f"{meta_path} is not a hipsml SOM (format {found!r})")
    npz = folder / "weights.npz"
    if not npz.is_file():
        raise InvalidInputError(f"{folder} holds no weights.npz; the SOM folder is damaged (train or save it again)")
    weights = read_npz_array(npz, "weights").astype(np.float32, copy=False)
    rows = read_npz_array(npz, "training_rows").astype(np.int64) if _npz_has(npz, "training_rows") else None
    if _npz_has(npz, "meta"):
        try:
            saved = json.loads(str(read_npz_array(npz, "meta")))
        except ValueError as exc:
            raise InvalidInputError(f"cannot read {npz}: its copy of som.json is not JSON ({exc})") from None
        if json.dumps(saved, sort_keys=True) != json.dumps(meta, sort_keys=True):  # crashed between the writes
            logger.warning("%s: som.json is older than weights.npz; using the archive's copy", folder)
            meta = saved
    return _som_from_meta(meta, weights, rows, meta_path)


def _npz_has(path: Path, name: str) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return f"{name}.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False  # read_npz_array has refused a damaged archive already


def _som_from_meta(meta: Any, weights: np.ndarray, rows: np.ndarray | None, meta_path: Path) -> SOM:
    """The SOM described by ``meta`` (som.json's content), each field checked."""
    if not isinstance(meta, dict):
        raise InvalidInputError(f"{meta_path} is not a hipsml SOM (a {type(meta).__name__}, not an object)")
    for key, kind in (("config", dict), ("weights_shape", list), ("history", list)):
        if not isinstance(meta.get(key, [] if key == "history" else None), kind):
            raise InvalidInputError(
                f"{meta_path}: field {key!r} is missing or not a {kind.__name__}; the SOM folder is damaged"
            )
    config = SOMConfig.from_mapping(meta["config"])
    if list(weights.shape) != list(meta["weights_shape"]):
        raise InvalidInputError(
            f"{meta_path.parent}: weights.npz holds {weights.shape}, som.json says {meta['weights_shape']}"
        )
    records = meta.get("history", [])
    needed = ("epoch", "quantisation_error", "topographic_error")
    bad = next((r for r in records if not isinstance(r, dict) or any(k not in r for k in needed)), None)
    if bad is not None:
        raise InvalidInputError(f"{meta_path}: bad history record {str(bad)[:80]} (a SOM epoch records "
                                f"{', '.join(needed)}); the SOM folder is damaged")  # fmt: skip
    history = tuple(EpochRecord(**record) for record in records)
    training, images = meta.get("training"), meta.get("images")
    for key, value in (("training", training), ("images", images)):
        if value is not None and not isinstance(value, dict):
            raise InvalidInputError(f"{meta_path}: field {key!r} is not an object; the SOM folder is damaged")
    return SOM(config, weights, history, training, rows, images)


def as_images(data: Any) -> np.ndarray:
    """``data`` as float32 ``(N, C, S, S)`` square images; ``(N, S, S)`` gets one channel.

    Raises
    ------
    InvalidInputError
        Wrong number of dimensions, non-square or empty images, or non-finite values.
    """
    array = np.asarray(data)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise InvalidInputError(f"images must be an array (N, C, H, W) or (N, H, W), got shape {array.shape}")
    if array.shape[2] != array.shape[3] or array.shape[2] == 0:
        raise InvalidInputError(
            f"images must be square (H == W, as PINK requires), got {array.shape[2]}x{array.shape[3]}"
        )
    if array.shape[0] == 0:
        raise InvalidInputError("no images to train on or map (N == 0)")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError("images hold NaN or infinite values; fill or drop them first")
    return array


def schedule_value(start: float, end: float | None, epoch: int, epochs: int, schedule: str) -> float:
    """Value of a parameter at ``epoch`` (0-based) of ``epochs`` going from ``start`` to ``end``.

    Examples
    --------
    >>> schedule_value(2.0, 0.5, 2, 3, "linear"), schedule_value(2.0, 0.5, 2, 3, "exponential")
    (0.5, 0.5)
    """
    if schedule == "constant" or end is None or epochs <= 1:
        return float(start)
    fraction = epoch / (epochs - 1)
    if schedule == "linear":
        return float(start + (end - start) * fraction)
    return float(start * (end / start) ** fraction)


def neighbourhood_factors(config: SOMConfig, sigma: float, damping: float) -> np.ndarray:
    """Update factor ``(n, n)``: how much neuron ``j`` moves when ``i`` is the best match (PINK's functions).

    Gaussian ``damping / (sigma sqrt(2 pi)) exp(-d^2 / (2 sigma^2))``; mexican hat
    ``2 damping / (sqrt(3 sigma) pi^(1/4)) (1 - d^2/sigma^2) exp(-d^2 / (2 sigma^2))``; 0 where
    ``max_update_distance > 0`` and ``d >= max_update_distance``.

    Examples
    --------
    >>> f = neighbourhood_factors(SOMConfig(width=2, height=1), 1.1, 0.2)
    >>> round(float(f[0, 0]), 6)
    0.072535
    """
    distance = grid_distances(config)
    if config.neighbourhood == "gaussian":
        factor = damping / (sigma * math.sqrt(2.0 * math.pi)) * np.exp(-0.5 * (distance / sigma) ** 2)
    else:
        factor = (
            2.0
            * damping
            / (math.sqrt(3.0 * sigma) * math.pi**0.25)
            * (1.0 - distance**2 / sigma**2)
            * np.exp(-(distance**2) / (2.0 * sigma**2))
        )
    if config.max_update_distance > 0:
        factor = np.where(distance < config.max_update_distance, factor, 0.0)
    return factor.astype(np.float32)


_online_step = jax.jit(_kernels.online_epoch_chunk, static_argnames=("geometry",), donate_argnums=0)
_batch_step = jax.jit(_kernels.batch_epoch_chunk, static_argnames=("geometry", "update_by_matmul"), donate_argnums=0)
_map_step = jax.jit(_kernels.map_chunk, static_argnames=("geometry",))


class _Engine:
    """The constant tables for one (config, channels, image side) and the compiled kernels.

    The kernels are compiled once per geometry and process (module-level ``jax.jit`` with the
    geometry as a static argument), so mapping or training again with the same shapes reuses them.
    """

    def __init__(self, config: SOMConfig, channels: int, side: int, neighbourhood: np.ndarray) -> None:
        self.geometry, self.tables = _kernels.build_tables(config, channels, side, neighbourhood)
        self.adjacency = jnp.asarray(neighbour_mask(config))
        self.update_by_matmul = jax.default_backend() != "cpu"

    def set_neighbourhood(self, factors: np.ndarray) -> None:
        self.tables = self.tables._replace(neighbourhood=jnp.asarray(factors))

    def train(
        self, mode: str, weights: jax.Array, images: jax.Array, valid: jax.Array
    ) -> tuple[jax.Array, _kernels.ChunkStats]:
        if mode == "online":
            return _online_step(weights, images, valid, self.tables, self.adjacency, geometry=self.geometry)
        return _batch_step(
            weights,
            images,
            valid,
            self.tables,
            self.adjacency,
            geometry=self.geometry,
            update_by_matmul=self.update_by_matmul,
        )

    def map(self, weights: jax.Array, images: jax.Array) -> _kernels.ChunkMapping[jax.Array]:
        return _map_step(weights, images, self.tables, self.adjacency, geometry=self.geometry)


def _padded(flat: np.ndarray, rows: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """``flat[rows]`` padded with zero images to ``size`` rows; and the real row count."""
    block = flat[rows]
    if len(rows) < size:
        block = np.concatenate([block, np.zeros((size - len(rows),) + flat.shape[1:], flat.dtype)])
    return block, len(rows)


def read_pink_som(path: str | os.PathLike[str], **options: object) -> SOM:
    """Read a PINK SOM file as a :class:`SOM` (layout, size and neuron side from the file).

    ``options`` set the other :class:`~hipsml.train.SOMConfig` options the file does not hold
    (``numrot``, ``flip``, ``distance_dim``, ...), which :meth:`SOM.map` uses. The file itself is
    read by :func:`hipsml.train.som._pink.read_pink_som_file` (arrays only).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from hipsml.train import write_pink_som
    >>> path = tempfile.mkdtemp() + "/som.bin"
    >>> _ = write_pink_som(path, np.zeros((7, 1, 4, 4), np.float32), layout="hexagonal", width=3, height=3)
    >>> read_pink_som(path, numrot=4).config.layout
    'hexagonal'
    """
    from hipsml.train.som._pink import read_pink_som_file

    return _som_of_pink(read_pink_som_file(path), options)


def read_pink(path: str | os.PathLike[str], **options: object) -> Any:
    """Read any PINK binary file, by the type its header announces.

    Returns
    -------
    ndarray (data file: images ``(N, C, H, W)``), SOM (SOM file; ``options`` as
    :func:`read_pink_som`), PinkMapping (mapping file) or PinkRotFlip (rot/flip file).
    """
    from hipsml.train.som._pink import PinkSom, read_pink_file

    content = read_pink_file(path)
    return _som_of_pink(content, options) if isinstance(content, PinkSom) else content


def _som_of_pink(pink: Any, options: dict[str, object]) -> SOM:
    config = SOMConfig.from_mapping(
        {"layout": pink.layout, "width": pink.width, "height": pink.height, "neuron_dim": pink.weights.shape[-1],
         **options}
    )  # fmt: skip
    return SOM(config, pink.weights)


def initial_weights(config: SOMConfig, images: np.ndarray) -> np.ndarray:
    """The neurons before training ``(n, C, nd, nd)``, by ``config.init`` (PINK's schemes, plus 'samples')."""
    assert config.neuron_dim is not None
    n, channels, nd = config.neuron_count, images.shape[1], config.neuron_dim
    shape = (n, channels, nd, nd)
    if config.init == "zero":
        return np.zeros(shape, np.float32)
    if config.init in ("random", "random_with_preferred_direction"):
        weights = np.asarray(jax.random.uniform(jax.random.key(config.seed), shape, jnp.float32))
        if config.init == "random_with_preferred_direction":
            weights = weights.copy()
            weights[:, 0, np.arange(nd), np.arange(nd)] = 1.0
        return weights
    if config.init == "samples":
        rng = np.random.default_rng(config.seed)
        chosen = rng.choice(len(images), size=n, replace=len(images) < n)
        return _crop_or_pad(images[chosen], nd)
    assert config.init_file is not None
    source = user_path(config.init_file, what="init_file")
    loaded = load_som(source).weights if source.is_dir() else read_pink_som(source).weights
    if loaded.shape != shape:
        raise InvalidInputError(f"init_file {source} holds neurons {loaded.shape}, this SOM needs {shape}")
    return loaded.astype(np.float32)


def _crop_or_pad(images: np.ndarray, side: int) -> np.ndarray:
    """Centre-crop or zero-pad square images to ``side`` (PINK's resize: integer margins)."""
    src = images.shape[-1]
    out = np.zeros(images.shape[:2] + (side, side), np.float32)
    cut, pad = max(src - side, 0) // 2, max(side - src, 0) // 2
    keep = min(src, side)
    out[..., pad : pad + keep, pad : pad + keep] = images[..., cut : cut + keep, cut : cut + keep]
    return out


def training_summary(data: Any, config: SOMConfig | None = None, *, split: str | None = "train", **options: Any) -> str:
    """What ``train_som(data, config, split=split, **options)`` will do, in one line; reads no images.

    ``"training a SOM: layout ..., width ..., numrot ..., epochs ..., from <init>, ..., on N images of
    C×H×W (PATH@vN split S)"``, with ``neuron_dim`` and ``normalise`` as training resolves them.

    Examples
    --------
    >>> import numpy as np
    >>> line = training_summary(np.zeros((16, 8, 8)), width=2, height=2, numrot=4, neuron_dim=8)
    >>> line.split(" (")[0], line.split(", on ")[1]
    ('training a SOM: layout cartesian, width 2, height 2, numrot 4', '16 images of 1×8×8')
    """
    from hipsml.dataset import Dataset
    from hipsml.train.som._data import dataset_rows, resolve_normalise

    config = SOMConfig.from_mapping(options, base=config)
    if isinstance(data, Dataset):
        count, shape = int(dataset_rows(data, split).size), tuple(data.images.shape[1:])
        where = f" ({data.path}@v{data.version} split {split if split is not None else 'all'})"
    else:
        array = np.asarray(data)
        count, shape, where = array.shape[0], (array.shape[1:] if array.ndim == 4 else (1, *array.shape[1:])), ""
    config = dataclasses.replace(config, normalise=resolve_normalise(config.normalise, data)).resolved(shape[-1])
    return f"training a SOM: {config.describe()}, on {count} images of {'×'.join(map(str, shape))}{where}"


def train_som(
    data: Any,
    config: SOMConfig | Mapping[str, Any] | None = None,
    *,
    split: str | None = "train",
    workdir: str | os.PathLike[str] | None = None,
    resume: bool | SOM | None = False,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SOM:
    """Train a rotation- and flip-invariant SOM on images ``(N, C, H, W)`` or a dataset split, as PINK does.

    Each epoch visits the images (shuffled with ``seed + epoch`` unless ``shuffle=False``). For
    each image every neuron finds its best of the ``numrot * 2`` transforms; the best-matching
    neuron's grid neighbours move toward the image, each in its *own* best transform (PINK's
    update). ``mode='online'`` lands each update before the next image's search, in one
    ``lax.scan`` per chunk of images (no host round trip per image); ``mode='batch'`` updates
    once per ``batch_size`` images.

    A :class:`~hipsml.Dataset` is read in storage order, whole chunks at a time, and normalised
    by ``config.normalise`` (``'auto'``: each cutout's channel min-max scaled to [0, 1], NaN to 0);
    the SOM records the dataset (folder, version, hash, split) and the rows it learned from.

    The call has the shape of :func:`hipsml.train.train_cnn`: ``(data, config, *, split=,
    workdir=, resume=, progress=, on_epoch=, **options)``.

    Parameters
    ----------
    data : ndarray, Dataset or path
        Square images ``(N, C, H, W)`` or ``(N, H, W)``, a dataset version, or its ``"PATH[@vN]"``.
    config : SOMConfig or mapping, optional
        The options (a mapping such as a parsed YAML file is validated by
        :meth:`SOMConfig.from_mapping`); keyword ``options`` override them.
    split : str or None
        The dataset split to train on (default ``'train'``; None: every row). Arrays have no splits.
    workdir : path, optional
        The SOM's folder: the SOM so far is saved there (:meth:`SOM.save`) after every epoch.
        It must be new or empty, or hold a SOM to continue with ``resume=True``.
    resume : bool
        Continue the SOM saved in ``workdir`` from its last finished epoch: training starts at
        epoch ``len(history)`` from its weights, with its saved options (only ``epochs`` may
        change) on the same dataset split. Because each epoch's shuffle is seeded by
        ``seed + epoch``, the result equals an uninterrupted run on the same device when
        ``epochs`` is unchanged (or the schedule is constant). A folder without a SOM yet starts
        afresh. (Passing a ``SOM`` here, with ``checkpoint=``, is the deprecated old shape.)
    progress : bool
        Show a tqdm bar per epoch (images/s and the running quantisation error).
    on_epoch : callable, optional
        Called with each epoch's :class:`~hipsml.train.EpochRecord` (after the SOM is saved).
    checkpoint : path, optional
        Deprecated: the old name of ``workdir`` (kept working, with a ``DeprecationWarning``).

    Returns
    -------
    SOM
        With ``history`` holding the quantisation and topographic errors per epoch.

    Raises
    ------
    InvalidInputError
        Bad images or options (misspelled options get a "did you mean"), or a resume with other
        options or other data.
    OutputError
        ``workdir`` holds something else, or a SOM and ``resume`` is False.
    ResourceLimitError
        The map, neurons or rotations would need more memory than the budget
        (:func:`hipsml._memory.memory_budget`); refused before the neurons are allocated.
    TrainingDivergedError
        An epoch ended with a non-finite quantisation error or non-finite neurons (too large a
        ``damping`` for the mexican hat, or images with huge values).

    Examples
    --------
    >>> import numpy as np
    >>> images = np.random.default_rng(0).random((16, 8, 8), dtype=np.float32)
    >>> som = train_som(images, {"layout": "hexagonal", "width": 3, "height": 3}, numrot=8, neuron_dim=8,
    ...                 epochs=2, progress=False)
    >>> som.weights.shape, len(som.history)
    ((7, 1, 8, 8), 2)

    A dataset split, saved after every epoch and continued after an interruption:

    >>> options = {"width": 3, "height": 3, "numrot": 4, "neuron_dim": 44, "epochs": 1}  # small, for speed
    >>> som = train_som("demo-output/datasets/demo", options, workdir="soms/demo", progress=False)
    >>> som = train_som("demo-output/datasets/demo", {"epochs": 2}, workdir="soms/demo", resume=True,
    ...                 progress=False)
    >>> som.training["split"], len(som.history)
    ('train', 2)
    """
    from hipsml.dataset import as_dataset, is_dataset_like
    from hipsml.train.som._data import training_data

    previous, workdir, refuse_existing = _resume_shape(workdir, resume, checkpoint)
    if previous is None and workdir is not None:
        previous = _saved_som(
            workdir, resume=bool(resume) and not isinstance(resume, SOM), refuse_existing=refuse_existing
        )
    if isinstance(config, Mapping):
        config = SOMConfig.from_mapping(config, base=previous.config if previous is not None else None)
    elif config is None and previous is not None and bool(resume) and not isinstance(resume, SOM):
        config = previous.config  # the saved options; only epochs may change
    elif config is not None and not isinstance(config, SOMConfig):
        raise InvalidInputError(f"config must be a SOMConfig, a mapping or None, got {type(config).__name__}")
    config = SOMConfig.from_mapping(options, base=config)
    if is_dataset_like(data):
        data = as_dataset(data)
        # the map and the split against the budget before the split is read (images held twice: read, normalised)
        from hipsml.train.som._data import dataset_rows

        held, shape = dataset_rows(data, split).size, data.images.shape
        check_som_memory(config.resolved(int(shape[-1])), int(shape[1]), int(shape[-1]), count=held)
    source = training_data(data, config.normalise, split=split)
    images = as_images(source.images)
    count, channels, side = images.shape[0], images.shape[1], images.shape[2]
    config = dataclasses.replace(config, normalise=source.normalise).resolved(side)
    chunk = min(count, config.batch_size if config.mode == "batch" else 64)
    check_som_memory(config, channels, side, chunk=chunk, count=count)
    history: list[EpochRecord] = []
    if previous is not None:
        _check_resume(previous, config, source.provenance)
        weights_np = previous.weights
        history = list(previous.history)
        logger.info("resuming SOM training at epoch %d of %d", len(history) + 1, config.epochs)
    else:
        weights_np = initial_weights(config, images)
    engine = _Engine(config, channels, side, neighbourhood_factors(config, config.sigma, config.damping))
    flat = images.reshape(count, channels, side * side)
    weights = jnp.asarray(weights_np.reshape(config.neuron_count, -1))
    logger.info(
        "training a %s %dx%d SOM (%d neurons of %d px, %d transforms) on %d images, %s mode",
        config.layout,
        config.width,
        config.height,
        config.neuron_count,
        config.neuron_dim,
        config.transform_count,
        count,
        config.mode,
    )
    for epoch in range(len(history), config.epochs):
        sigma = schedule_value(config.sigma, config.sigma_end, epoch, config.epochs, config.schedule)
        damping = schedule_value(config.damping, config.damping_end, epoch, config.epochs, config.schedule)
        engine.set_neighbourhood(neighbourhood_factors(config, sigma, damping))
        order = np.random.default_rng(config.seed + epoch).permutation(count) if config.shuffle else np.arange(count)
        quantisation = topographic = 0.0
        started = time.perf_counter()
        with tqdm(total=count, desc=f"SOM epoch {epoch + 1}/{config.epochs}", unit="img", disable=not progress) as bar:
            for start in range(0, count, chunk):
                block, real = _padded(flat, order[start : start + chunk], chunk)
                valid = np.arange(chunk) < real
                weights, stats = engine.train(config.mode, weights, jnp.asarray(block), jnp.asarray(valid))
                quantisation += float(stats.quantisation)
                topographic += float(stats.topographic)
                bar.update(real)
                bar.set_postfix(qe=f"{quantisation / min(start + chunk, count):.4g}")
        seconds = time.perf_counter() - started
        cause = (
            f"sigma {sigma:g} and damping {damping:g} of the {config.neighbourhood} neighbourhood move the "
            "neurons too far; lower damping (or normalise the images)"
        )
        check_finite_loss(quantisation / count, epoch=epoch, model="SOM", cause=cause)
        check_finite_weights(bool(jnp.isfinite(weights).all()), epoch=epoch, model="SOM", cause=cause)
        record = EpochRecord(
            epoch=epoch,
            quantisation_error=quantisation / count,
            topographic_error=topographic / count,
            images_per_second=count / seconds,
            seconds=seconds,
            sigma=sigma,
            damping=damping,
        )
        history.append(record)
        logger.info(
            "SOM epoch %d/%d: quantisation error %.5g, topographic error %.4f, %.1f images/s",
            epoch + 1,
            config.epochs,
            record.quantisation_error,
            record.topographic_error,
            record.images_per_second,
        )
        if workdir is not None:
            _som_so_far(config, weights, channels, history, source).save(workdir)
        if on_epoch is not None:
            on_epoch(record)
    return _som_so_far(config, weights, channels, history, source)


def _resume_shape(workdir: Any, resume: Any, checkpoint: Any) -> tuple[SOM | None, Path | None, bool]:
    """``(SOM to continue or None, the SOM folder or None, refuse a SOM already there)`` from the arguments.

    The old shape ``checkpoint=FOLDER, resume=SOM`` still works, with a DeprecationWarning.
    """
    import warnings

    previous: SOM | None = None
    refuse_existing = True
    if checkpoint is not None:
        warnings.warn("train_som(checkpoint=FOLDER) is deprecated; write workdir=FOLDER (and resume=True to "
                      "continue the SOM saved there)", DeprecationWarning, stacklevel=3)  # fmt: skip
        if workdir is not None:
            raise InvalidInputError("give the SOM folder once: workdir (checkpoint is its deprecated old name)")
        workdir, refuse_existing = checkpoint, False  # the old shape overwrote a SOM there
    if isinstance(resume, SOM):
        warnings.warn("train_som(resume=SOM) is deprecated; write workdir=FOLDER, resume=True (the SOM saved "
                      "in FOLDER is continued)", DeprecationWarning, stacklevel=3)  # fmt: skip
        previous = resume
    elif resume is None:  # the old default (resume=SOM | None): start afresh, as it did
        pass
    elif not isinstance(resume, (bool, np.bool_)):
        raise InvalidInputError(f"resume must be True or False, got {type(resume).__name__}")
    elif resume and workdir is None:
        raise InvalidInputError("resume=True continues the SOM saved in workdir: give workdir (the SOM folder)")
    folder = None if workdir is None else user_path(workdir, what="workdir")
    return previous, folder, refuse_existing


def _saved_som(folder: Path, *, resume: bool, refuse_existing: bool) -> SOM | None:
    """The SOM saved in ``folder`` to continue (``resume``), or None to start afresh; refuse what is not ours."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"workdir {folder} is a file; give a folder for the SOM")
    if (folder / "som.json").is_file():
        if resume:
            return load_som(folder)
        if refuse_existing:
            raise OutputError(f"{folder} holds a SOM already; continue it with resume=True or choose a new folder")
    elif folder.is_dir() and any(folder.iterdir()) and refuse_existing and not resume:
        raise OutputError(f"{folder} is not empty and holds no SOM; choose a new or empty folder")
    return None


def _som_so_far(config: SOMConfig, weights: jax.Array, channels: int, history: list[EpochRecord], source: Any) -> SOM:
    assert config.neuron_dim is not None
    final = np.asarray(weights).reshape(config.neuron_count, channels, config.neuron_dim, config.neuron_dim)
    images = {
        "size": int(np.shape(source.images)[-1]),
        "channels": channels,
        "channel_names": (source.provenance or {}).get("channels"),
    }
    return SOM(config, final.astype(np.float32), tuple(history), source.provenance, source.rows, images)


def _check_resume(previous: SOM, config: SOMConfig, provenance: dict[str, Any] | None) -> None:
    """Refuse to continue ``previous`` with different options or different training data."""
    done = len(previous.history)
    if done > config.epochs:
        raise InvalidInputError(
            f"cannot resume: the SOM has trained {done} epochs already, more than epochs={config.epochs}"
        )
    mine, theirs = config.to_dict(), previous.config.to_dict()
    mine.pop("epochs")
    theirs.pop("epochs")
    changed = sorted(k for k in mine if mine[k] != theirs.get(k))
    if changed:
        what = ", ".join(f"{k}={theirs.get(k)!r} -> {mine[k]!r}" for k in changed)
        raise InvalidInputError(
            f"cannot resume with different SOM options ({what}); give the saved options or start afresh"
        )

    def data_key(record: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (record or {}).items() if k != "dataset"}  # a moved dataset is the same data

    if data_key(previous.training) != data_key(provenance) or (previous.training is None) != (provenance is None):
        was = previous.training or {"data": "an array"}
        raise InvalidInputError(
            f"cannot resume: the SOM was trained on {_describe(was)}, "
            f"not on {_describe(provenance or {'data': 'an array'})}"
        )
    if previous.history and previous.config.schedule != "constant" and previous.config.epochs != config.epochs:
        logger.warning(
            "resuming with epochs %d instead of %d changes the %s schedule of the remaining epochs",
            config.epochs,
            previous.config.epochs,
            config.schedule,
        )


def _describe(provenance: dict[str, Any]) -> str:
    if "dataset" not in provenance:
        return "an array"
    return f"{provenance['dataset']} v{provenance['version']} split {provenance['split']!r} ({provenance['hash'][:12]})"
