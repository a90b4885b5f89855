"""The SOM explorer: a self-contained static web page to browse a SOM and the cutouts mapped onto it.

In the spirit of the LOFAR-PINK web tool, for any hipsml dataset. :func:`write_explorer` writes a
folder that works from ``file://`` (no server, no CDN, no ``fetch``)::

    FOLDER/
      index.html  explorer.js  explorer.css     the page (package data of hipsml.train.som.explorer)
      data.js                                   window.HIPSML_EXPLORER = {...}: SOM, neurons, cutouts, outliers
      explorer.json                             what the folder shows (SOM digest, dataset hash, k, top)
      prototypes/n0000.png ...                  one thumbnail per prototype
      cutouts/r0000017.png ...                  one thumbnail per cutout shown (gallery or outlier)
      fits/<dataset>-<id>.fits ...              the shown cutouts as FITS (exact WCS), linked from the page

The page draws the prototypes at their places on the map (hexagons or squares, with the geometry
of :func:`hipsml.train.plot_prototypes`), toggles a hit-count heat map, shows for a clicked
prototype the ``k`` cutouts with that best-matching neuron (smallest distance first: id, ra,
dec, label, distance, best angle and flip, FITS link), and lists the ``top`` outliers (largest
distance first, as :func:`hipsml.train.som_outliers`). Thumbnails are asinh-stretched
(:func:`hipsml.extract.asinh_levels`), north up: one channel in grey or three in RGB;
a prototype's thumbnail is its central square of the cutouts' side, with limits shared by all
prototypes.

The folder is written in a staging folder beside it and published by one rename, so a re-run
replaces a previous explorer whole; a folder that is not an explorer is never replaced.
:func:`explorer_server` serves it on 127.0.0.1 (``hipsml som explore --serve``).
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import file_mode, staged_folder, user_path
from hipsml._timestamps import now_iso
from hipsml.dataset import Dataset, channel_labels, select_channels
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train.som._layout import plot_centres
from hipsml.train.som._outliers import ranked_positions
from hipsml.train.som._som import SOM, SOMMapping
from hipsml.train.som._store import weights_digest

__all__ = ["write_explorer", "explorer_server", "plan_explorer", "check_explorer_folder", "ExplorerPlan"]

logger = logging.getLogger(__name__)

_KIND = "hipsml-som-explorer"
_MARKER = "explorer.json"
_ASSETS = ("index.html", "explorer.js", "explorer.css")


@dataclass(frozen=True)
class ExplorerPlan:
    """What the explorer shows, as positions in a mapping (pure: computed from the mapping alone).

    Attributes
    ----------
    members : tuple of ndarray of int64
        For each neuron, the positions of its (at most ``k``) cutouts with that best-matching
        neuron, smallest distance first (ties: lower dataset row first).
    outliers : ndarray of int64
        The positions of the ``top`` largest distances, largest first (:func:`ranked_positions`).
    shown : ndarray of int64
        Every position above, once, sorted: the cutouts that get a thumbnail and a FITS file.
    """

    members: tuple[np.ndarray, ...]
    outliers: np.ndarray
    shown: np.ndarray


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def plan_explorer(mapping: SOMMapping, neuron_count: int, *, k: int = 12, top: int = 50) -> ExplorerPlan:
    """Choose the gallery of each neuron and the outliers of ``mapping``.

    Examples
    --------
    >>> from hipsml.train import SOMConfig
    >>> m = SOMMapping(bmu=np.array([1, 0, 1, 1]), distance=np.array([0.5, 0.2, 0.1, 0.9], np.float32),
    ...                angle=np.zeros(4), flipped=np.zeros(4, bool), config=SOMConfig(width=2, height=1))
    >>> plan = plan_explorer(m, 2, k=2, top=1)
    >>> [p.tolist() for p in plan.members], plan.outliers.tolist(), plan.shown.tolist()
    ([[1], [2, 0]], [3], [0, 1, 2, 3])
    """
    k, top = _positive(k, "k"), _positive(top, "top")
    bmu = np.asarray(mapping.bmu, np.int64)
    rows = np.arange(bmu.size) if mapping.rows is None else np.asarray(mapping.rows, np.int64)
    order = np.lexsort((rows, np.asarray(mapping.distance, np.float64), bmu))  # by neuron, distance, row
    starts = np.searchsorted(bmu[order], np.arange(neuron_count + 1))
    members = tuple(order[starts[n] : min(starts[n] + k, starts[n + 1])].astype(np.int64) for n in range(neuron_count))
    outliers = ranked_positions(mapping, top)
    shown = np.unique(np.concatenate([*members, outliers])).astype(np.int64)
    return ExplorerPlan(members, outliers, shown)


def _check_dataset(som: SOM, dataset: Dataset) -> None:
    """Refuse a dataset whose channels are not the SOM's (one-line errors)."""
    channels = int(dataset.images.shape[1])
    if channels != som.weights.shape[1]:
        raise InvalidInputError(
            f"{dataset.path} v{dataset.version} has {channels} channels, the SOM "
            f"{som.weights.shape[1]}: give the dataset the SOM was trained for"
        )
    trained = (som.training or {}).get("channels")
    if trained and list(trained) != dataset.channels:
        raise InvalidInputError(
            f"the SOM was trained on channels {list(trained)}, {dataset.path} v{dataset.version} "
            f"has {dataset.channels}: give the dataset the SOM was trained for"
        )


def _check_mapping(som: SOM, dataset: Dataset, mapping: SOMMapping) -> None:
    """Refuse a mapping that is not this SOM's mapping of rows of ``dataset`` (one-line errors)."""
    if mapping.rows is None:
        raise InvalidInputError("the mapping has no dataset rows: map the Dataset itself (som.map(dataset))")
    same_map = (mapping.config.layout, mapping.config.width, mapping.config.height) == (
        som.config.layout,
        som.config.width,
        som.config.height,
    )
    bmu = np.asarray(mapping.bmu)
    if not same_map or (bmu.size and (bmu.min() < 0 or bmu.max() >= som.neuron_count)):
        raise InvalidInputError("the mapping was made by another SOM (its map differs); map the dataset with this SOM")
    rows = np.asarray(mapping.rows)
    if rows.size and (rows.min() < 0 or rows.max() >= len(dataset)):
        raise InvalidInputError(
            f"the mapping's rows go beyond the {len(dataset)} cutouts of {dataset.path} "
            f"v{dataset.version}: it maps another dataset; map this one"
        )


def _channels(chosen: str | Sequence[str | int] | None, names: Sequence[str]) -> tuple[int, ...]:
    """The thumbnails' channels: one (grey) or three (RGB), by name or index; default RGB of 0,1,2 or channel 0."""
    if chosen is None:
        return (0, 1, 2) if len(names) >= 3 else (0,)
    return select_channels(chosen, names).indices


def _thumbnail(
    image: np.ndarray, channels: tuple[int, ...], path: Path, limits: Sequence[tuple[float, float]] | None = None
) -> None:
    """Write ``image`` (C, S, S) as an asinh-stretched PNG, north up (row 0 at the bottom); pixels
    without data (NaN in a channel shown) in magenta."""
    from PIL import Image

    from hipsml.extract import asinh_levels, paint_missing

    shown = np.asarray(image, np.float32)[list(channels)]
    stretched = asinh_levels(shown, limits=limits)[:, ::-1]
    missing = ~np.all(np.isfinite(shown), axis=0)[::-1]
    if missing.any():
        pixels = stretched[0] if len(channels) == 1 else np.moveaxis(stretched, 0, -1)
        picture = Image.fromarray(np.ascontiguousarray(paint_missing(pixels, missing)), mode="RGB")
    elif len(channels) == 1:
        picture = Image.fromarray(np.ascontiguousarray(stretched[0]), mode="L")
    else:
        picture = Image.fromarray(np.ascontiguousarray(np.moveaxis(stretched, 0, -1)), mode="RGB")
    picture.save(path, format="PNG")


def _central(images: np.ndarray, side: int) -> np.ndarray:
    """The central ``side`` x ``side`` square of ``images`` (..., S, S); all of them when ``side >= S``.

    Examples
    --------
    >>> _central(np.arange(16.0).reshape(1, 4, 4), 2).tolist()
    [[[5.0, 6.0], [9.0, 10.0]]]
    """
    full = images.shape[-1]
    if side >= full:
        return images
    start = (full - side) // 2
    return images[..., start : start + side, start : start + side]


def _heat_colours(hits: np.ndarray) -> list[str]:
    """A magma colour per neuron for its hit count (as :func:`hipsml.train.plot_hit_counts`)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    scaled = hits / max(int(hits.max(initial=0)), 1)
    return [to_hex(colour) for colour in colormaps["magma"](scaled)]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _read_rows(dataset: Dataset, rows: np.ndarray) -> np.ndarray:
    """The images of dataset ``rows`` (any order), read in storage order."""
    if rows.size == 0:
        return np.empty((0, *dataset.images.shape[1:]), np.float32)
    return np.asarray(dataset.read_images(rows), np.float32)  # storage order, each chunk decoded once


def check_explorer_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` expanded, after checking it can be (re)placed by an explorer."""
    target = user_path(folder, what="explorer folder")
    try:
        if target.exists() and not target.is_dir():
            raise OutputError(f"cannot write the explorer to {target}: it is a file; give a folder")
        if target.is_dir() and any(target.iterdir()) and not (target / _MARKER).is_file():
            raise OutputError(f"{target} is not empty and holds no SOM explorer; give a new or empty folder")
        blocker = next((p for p in target.parents if p.exists()), Path("."))
        if not blocker.is_dir():
            raise OutputError(f"cannot write the explorer to {target}: {blocker} is a file, not a folder")
        if not os.access(blocker, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write the explorer to {target}: {blocker} is not writable")
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write the explorer to {target}: {exc.strerror or exc}") from None
    return target


def write_explorer(
    som: SOM,
    dataset: Dataset,
    folder: str | os.PathLike[str],
    *,
    mapping: SOMMapping | None = None,
    split: str | None = None,
    k: int = 12,
    top: int = 50,
    channels: str | Sequence[str | int] | None = None,
    title: str | None = None,
    progress: bool = False,
) -> Path:
    """Write the SOM explorer of ``som`` and ``dataset`` to ``folder`` (a static web page); return it.

    Open ``folder/index.html`` in a browser (``file://`` works), or serve the folder with
    :func:`explorer_server`. The page shows the prototypes on the map with a hit-count heat map
    toggle; a click on a prototype shows its ``k`` nearest cutouts (those with that best-matching
    neuron, smallest distance first, each with id, ra, dec, label, distance, best angle and
    flip, and a link to a FITS cutout); the ``top`` outliers are listed below.

    Parameters
    ----------
    som : SOM
    dataset : Dataset
        The dataset version the mapping is of (its channels must be the SOM's).
    folder : path
        The explorer's folder: created, or replaced whole when it holds an earlier explorer.
    mapping : SOMMapping, optional
        This SOM's mapping of ``dataset`` (:func:`hipsml.train.read_som_mapping`); default:
        ``som.map(dataset, split=split)`` now.
    split : str, optional
        Map only this split (when ``mapping`` is not given; default: every cutout).
    k : int
        Cutouts shown per prototype.
    top : int
        Outliers listed.
    channels : str or sequence of str or int, optional
        Thumbnail channels: one name or index (grey) or three (RGB), e.g. ``"r"`` or ``"2,1,0"``
        (:func:`hipsml.dataset._pictures.select_channels`); default 0,1,2 when the dataset has
        three or more channels, else 0.
    title : str, optional
        The page's title (default: names the SOM and the dataset).
    progress : bool
        Show a progress bar while mapping.

    Returns
    -------
    pathlib.Path
        ``folder``.

    Raises
    ------
    InvalidInputError
        The dataset or mapping does not belong to the SOM, or a bad ``k``, ``top`` or ``channels``.
    OutputError
        ``folder`` cannot be written, or is a non-empty folder that is not an explorer.

    Examples
    --------
    >>> som = hipsml.load_som("soms/demo")  # doctest: +SKIP
    >>> ds = hipsml.open_dataset("datasets/demo")  # doctest: +SKIP
    >>> mapping = hipsml.train.read_som_mapping(ds, "demo")  # doctest: +SKIP
    >>> write_explorer(som, ds, "explorer", mapping=mapping, k=12, top=50)  # doctest: +SKIP
    PosixPath('explorer')
    """
    if not isinstance(dataset, Dataset):
        raise InvalidInputError(f"write_explorer needs a Dataset (hipsml.open_dataset), got {type(dataset).__name__}")
    _positive(k, "k"), _positive(top, "top")
    picked = _channels(channels, channel_labels(dataset.channels, int(dataset.images.shape[1])))
    target = check_explorer_folder(folder)
    _check_dataset(som, dataset)
    if mapping is None:
        mapping = som.map(dataset, split=split, progress=progress)
    _check_mapping(som, dataset, mapping)
    plan = plan_explorer(mapping, som.neuron_count, k=k, top=top)
    with staged_folder(target) as staging:  # an existing (explorer or empty) folder is replaced whole
        _write_contents(staging, som, dataset, mapping, plan, picked, title, k=k, top=top)
    logger.info("wrote the SOM explorer %s (%d neurons, %d cutouts shown)", target, som.neuron_count, plan.shown.size)
    return target


def _write_contents(
    staging: Path,
    som: SOM,
    dataset: Dataset,
    mapping: SOMMapping,
    plan: ExplorerPlan,
    channels: tuple[int, ...],
    title: str | None,
    *,
    k: int,
    top: int,
) -> None:
    """Fill ``staging`` with the page, its data and the pictures."""
    for name in _ASSETS:
        (staging / name).write_bytes(resources.files("hipsml.train.som.explorer").joinpath(name).read_bytes())
    (staging / "prototypes").mkdir()
    (staging / "cutouts").mkdir()
    (staging / "fits").mkdir()
    # prototypes: their central square of the cutouts' side (the field of a cutout; the rest of a
    # neuron larger than the images only holds rotated corners), limits shared per channel
    weights = _central(som.weights.astype(np.float32), int(dataset.images.shape[-1]))
    limits = [(float(weights[:, c].min()), float(weights[:, c].max())) for c in channels]
    for n in range(som.neuron_count):
        _thumbnail(weights[n], channels, staging / "prototypes" / f"n{n:04d}.png", limits)
    # the shown cutouts: thumbnails (each stretched on its own) and FITS files
    rows = np.asarray(mapping.rows, np.int64)[plan.shown]
    images = _read_rows(dataset, rows)
    for row, image in zip(rows, images, strict=True):
        _thumbnail(image, channels, staging / "cutouts" / f"r{int(row):07d}.png")
    fits = dataset.to_fits(rows, staging / "fits") if rows.size else []
    ids, ra, dec = dataset.column("id"), dataset.column("ra"), dataset.column("dec")
    names = dataset.label_names
    labels = dataset.column("label") if "label" in dataset.group else None
    split_names, splits = dataset.split_names, dataset.column("split")
    cutouts = []
    for j, position in enumerate(plan.shown):
        row = int(rows[j])
        label = None
        if labels is not None:
            value = int(labels[row])
            label = names[value] if names and 0 <= value < len(names) else str(value)
        split_index = int(splits[row])
        cutouts.append(
            {
                "row": row,
                "id": _text(ids[row]),
                "ra": _finite(ra[row]),
                "dec": _finite(dec[row]),
                "label": label,
                "split": split_names[split_index] if 0 <= split_index < len(split_names) else str(split_index),
                "bmu": int(mapping.bmu[position]),
                "distance": _finite(mapping.distance[position]),
                "angle": float(mapping.angle[position]),
                "flipped": bool(mapping.flipped[position]),
                "image": f"cutouts/r{row:07d}.png",
                "fits": fits[j].relative_to(staging).as_posix(),
            }
        )
    index = {int(position): j for j, position in enumerate(plan.shown)}
    hits = np.bincount(np.asarray(mapping.bmu, np.int64), minlength=som.neuron_count)
    centres = plot_centres(som.config)
    heat = _heat_colours(hits)
    neurons = [
        {
            "neuron": n,
            "x": float(centres[n, 0]),
            "y": float(centres[n, 1]),
            "hits": int(hits[n]),
            "heat": heat[n],
            "image": f"prototypes/n{n:04d}.png",
            "members": [index[int(p)] for p in plan.members[n]],
        }
        for n in range(som.neuron_count)
    ]
    config = som.config
    som_name = Path(str((som.training or {}).get("path") or "")).name
    dataset_name = dataset.attrs.get("name") or dataset.path.name
    band_text = " + ".join(dataset.channels[c] if c < len(dataset.channels) else f"c{c}" for c in channels)
    data = {
        "format": _KIND,
        "format_version": 1,
        "title": title or f"SOM explorer: {dataset_name} v{dataset.version}" + (f" on {som_name}" if som_name else ""),
        "summary": (
            f"{config.layout} {config.width}x{config.height} SOM, {som.neuron_count} prototypes of "
            f"{som.weights.shape[-1]} pixels, numrot {config.numrot}{', flip' if config.flip else ''}; "
            f"{mapping.bmu.size} cutouts mapped, quantisation error {mapping.quantisation_error:.4g}; "
            f"thumbnails: {band_text} (asinh, north up)"
        ),
        "som": {
            "layout": config.layout,
            "width": config.width,
            "height": config.height,
            "neuron_count": som.neuron_count,
            "numrot": config.numrot,
            "flip": bool(config.flip),
            "weights_sha256": weights_digest(som),
        },
        "dataset": {
            "path": str(dataset.path.resolve()),
            "version": dataset.version,
            "hash": dataset.hash,
            "channels": dataset.channels,
            "thumbnail_channels": list(channels),
        },
        "k": k,
        "top": top,
        "max_hits": int(hits.max(initial=0)),
        "neurons": neurons,
        "cutouts": cutouts,
        "outliers": [index[int(p)] for p in plan.outliers],
    }
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    (staging / "data.js").write_text(f"window.HIPSML_EXPLORER = {text};\n", encoding="utf-8")
    from hipsml import __version__

    marker = {
        "kind": _KIND,
        "som": data["som"],
        "dataset": data["dataset"],
        "k": k,
        "top": top,
        "mapped": int(mapping.bmu.size),
        "shown": int(plan.shown.size),
        "created": now_iso(),
        "software": {"hipsml": __version__},
    }
    (staging / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    mode = file_mode()
    for path in staging.rglob("*"):
        os.chmod(path, mode | (mode & 0o444) >> 2 if path.is_dir() else mode)


def explorer_server(folder: str | os.PathLike[str], *, port: int = 8000) -> http.server.ThreadingHTTPServer:
    """An HTTP server of the explorer ``folder`` on 127.0.0.1 only (call ``serve_forever()``).

    ``port=0`` picks a free port (read it from ``server.server_address``).

    Raises
    ------
    InvalidInputError
        ``folder`` holds no explorer.
    OutputError
        The port cannot be bound.

    Examples
    --------
    >>> server = explorer_server("explorer", port=0)  # doctest: +SKIP
    >>> server.serve_forever()  # doctest: +SKIP
    """
    root = user_path(folder, what="explorer folder")
    if not (root / "index.html").is_file() or not (root / _MARKER).is_file():
        raise InvalidInputError(f"{root} holds no SOM explorer; write one with 'hipsml som explore'")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidInputError(f"port must be an integer 0..65535, got {port!r}")

    class _Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s %s", self.address_string(), format % args)

    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_Quiet, directory=str(root)))
    except OSError as exc:
        raise OutputError(f"cannot serve {root} on 127.0.0.1:{port}: {exc.strerror or exc}") from None
