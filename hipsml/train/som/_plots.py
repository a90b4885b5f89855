"""PNG pictures of a SOM: the prototype map, hit counts, the U-matrix and the error curves.

Each function draws with matplotlib's object API on the Agg canvas (no pyplot state, no display),
writes the PNG atomically and returns its path. Hexagonal maps are drawn as pointy-top hexagons,
cartesian maps as squares, first grid row on top; each prototype is shown north up (its row 0
at the bottom), as hipsml cutouts are.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle, RegularPolygon

from hipsml._files import write_figure_png
from hipsml.dataset import channel_labels, select_channels
from hipsml.errors import InvalidInputError
from hipsml.train.loaders import asinh_stretch
from hipsml.train.som._config import SOMConfig
from hipsml.train.som._layout import neighbour_mask, plot_centres
from hipsml.train.som._som import SOM, SOMMapping

__all__ = [
    "SOM_PICTURES",
    "plot_errors",
    "plot_hit_counts",
    "plot_prototypes",
    "plot_som_pictures",
    "plot_umatrix",
    "prototype_figure",
    "som_channel_labels",
    "umatrix",
]

_HEX_RADIUS = 1.0 / math.sqrt(3.0)  # pointy-top hexagon of unit width


def _map_figure(config: SOMConfig, panels: int = 1) -> tuple[Figure, list[Any]]:
    """A figure of ``panels`` map axes side by side (equal aspect, no frame)."""
    centres = plot_centres(config)
    span_x = np.ptp(centres[:, 0]) + 1.0
    span_y = np.ptp(centres[:, 1]) + 1.0
    scale = min(12.0 / max(span_x, span_y), 0.9) / (1.0 if panels == 1 else math.sqrt(panels))
    figure = Figure(figsize=(panels * max(span_x * scale, 3.0) + 1.2, max(span_y * scale, 3.0) + 0.4), dpi=100)
    axes = []
    for k in range(panels):
        ax = figure.add_subplot(1, panels, k + 1)
        ax.set_aspect("equal")
        ax.set_xlim(centres[:, 0].min() - 0.6, centres[:, 0].max() + 0.6)
        ax.set_ylim(centres[:, 1].min() - 0.6, centres[:, 1].max() + 0.6)
        ax.set_axis_off()
        axes.append(ax)
    return figure, axes


def _cell(config: SOMConfig, x: float, y: float) -> RegularPolygon | Rectangle:
    if config.layout == "hexagonal":
        return RegularPolygon((x, y), numVertices=6, radius=_HEX_RADIUS, orientation=0.0)
    return Rectangle((x - 0.5, y - 0.5), 1.0, 1.0)


def _value_map(
    config: SOMConfig, values: np.ndarray, path: str | os.PathLike[str], title: str, label: str, cmap: str
) -> Path:
    if values.shape != (config.neuron_count,):
        raise InvalidInputError(f"need one value per neuron ({config.neuron_count}), got {values.shape}")
    figure, (ax,) = _map_figure(config)
    centres = plot_centres(config)
    cells = PatchCollection([_cell(config, x, y) for x, y in centres], cmap=cmap, edgecolor="white", linewidth=0.5)
    cells.set_array(np.asarray(values, dtype=np.float64))
    ax.add_collection(cells)
    figure.colorbar(cells, ax=ax, label=label, shrink=0.8)
    ax.set_title(title)
    return write_figure_png(figure, path)


def som_channel_labels(som: SOM) -> list[str]:
    """The names of the SOM's channels: those of the dataset it was trained on, else ``c0, c1, ...``."""
    return channel_labels((som.training or {}).get("channels"), int(som.weights.shape[1]))


def _scaled(images: np.ndarray, stretch: str) -> np.ndarray:
    """One channel's prototypes ``(n, S, S)`` on one scale for the whole map: min-max, then ``stretch``."""
    if stretch == "asinh":  # one min-max over the whole map (a single "cutout"), then the stretch
        return asinh_stretch(images.reshape(1, 1, -1, images.shape[-1])).reshape(images.shape)
    low, high = float(np.min(images)), float(np.max(images))
    return (images - low) / (high - low) if high > low else np.zeros_like(images)


def prototype_figure(
    som: SOM,
    *,
    channels: str | Sequence[str | int] | None = None,
    cmap: str = "viridis",
    stretch: str = "asinh",
    names: Sequence[str] | None = None,
) -> Figure:
    """The figure :func:`plot_prototypes` saves: one map per panel of the channel choice, titled with its channels."""
    if stretch not in ("asinh", "linear"):
        raise InvalidInputError(f"stretch must be 'asinh' or 'linear', got {stretch!r}")
    count = int(som.weights.shape[1])
    view = select_channels(channels, channel_labels(names, count) if names is not None else som_channel_labels(som))
    config = som.config
    figure, axes = _map_figure(config, len(view.panels))
    half = 0.5 if config.layout == "cartesian" else _HEX_RADIUS
    for ax, (picked, caption) in zip(axes, view.panels, strict=True):
        scaled = np.stack([_scaled(np.asarray(som.weights[:, c], np.float32), stretch) for c in picked], axis=-1)
        rgb = len(picked) == 3
        for (x, y), image in zip(plot_centres(config), scaled, strict=True):
            shown = ax.imshow(
                np.clip(image, 0.0, 1.0) if rgb else image[..., 0],
                origin="lower",
                cmap=None if rgb else cmap,
                vmin=0.0,
                vmax=1.0,
                extent=(x - half, x + half, y - half, y + half),
                interpolation="nearest",
            )
            if config.layout == "hexagonal":
                clip = _cell(config, x, y)
                clip.set_transform(ax.transData)
                shown.set_clip_path(clip)
        ax.set_title(caption)
    figure.suptitle(f"SOM prototypes ({config.layout} {config.width}x{config.height}), channels {view.label}")
    return figure


def plot_prototypes(
    som: SOM,
    path: str | os.PathLike[str],
    *,
    channels: str | Sequence[str | int] | None = None,
    cmap: str = "viridis",
    stretch: str = "asinh",
    names: Sequence[str] | None = None,
) -> Path:
    """Draw every prototype at its place on the map; return the PNG's path.

    ``channels`` picks what is drawn (:func:`hipsml.dataset._pictures.select_channels`): one
    channel name or index (a grey map in ``cmap``), three (an RGB map), or by default one map
    per channel side by side (up to four). Each map is titled with its channel names: those of
    the dataset the SOM was trained on, or ``names``, else ``c0, c1, ...``.

    All prototypes share one scale per channel: its minimum to maximum over the whole map, shown
    ``linear`` or with an ``asinh`` stretch (astropy's ``AsinhStretch(0.1)``, which lifts the faint
    structure around compact sources).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> som = SOM(SOMConfig(layout="hexagonal", width=3, height=3, neuron_dim=4),
    ...           np.random.default_rng(0).random((7, 1, 4, 4), dtype=np.float32))
    >>> plot_prototypes(som, tempfile.mkdtemp() + "/prototypes.png").suffix
    '.png'
    """
    return write_figure_png(prototype_figure(som, channels=channels, cmap=cmap, stretch=stretch, names=names), path)


def plot_hit_counts(som: SOM, mapping: SOMMapping | np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Heat map of the images per neuron (a :class:`SOMMapping` or counts ``(n,)``); return the PNG's path."""
    counts = mapping.hit_counts() if isinstance(mapping, SOMMapping) else np.asarray(mapping)
    return _value_map(som.config, counts, path, "Images per neuron", "images", "magma")


def umatrix(som: SOM) -> np.ndarray:
    """Mean euclidean distance ``(n,)`` from each prototype to its grid neighbours (the U-matrix)."""
    flat = som.weights.reshape(som.neuron_count, -1).astype(np.float64)
    squared = np.sum(flat**2, axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * flat @ flat.T, 0.0))
    adjacent = neighbour_mask(som.config)
    return np.sum(distances * adjacent, axis=1) / np.maximum(adjacent.sum(axis=1), 1)


def plot_umatrix(som: SOM, path: str | os.PathLike[str]) -> Path:
    """The U-matrix as a heat map (high: a border between groups of prototypes); return the PNG's path."""
    return _value_map(som.config, umatrix(som), path, "U-matrix", "mean distance to neighbours", "bone_r")


def plot_errors(som: SOM, path: str | os.PathLike[str]) -> Path:
    """Quantisation and topographic error per epoch (from ``som.history``); return the PNG's path."""
    if not som.history:
        raise InvalidInputError("this SOM has no training history (loaded from a PINK file?)")
    epochs = [record.epoch + 1 for record in som.history]
    figure = Figure(figsize=(6.0, 3.5), dpi=100)
    left = figure.add_subplot(1, 1, 1)
    left.plot(epochs, [r.quantisation_error for r in som.history], "o-", color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("quantisation error", color="tab:blue")
    right = left.twinx()
    right.plot(epochs, [r.topographic_error for r in som.history], "s--", color="tab:red")
    right.set_ylabel("topographic error", color="tab:red")
    left.set_title("SOM training")
    figure.tight_layout()
    return write_figure_png(figure, path)


#: the pictures of a trained SOM, as ``hipsml som train`` writes them in its folder
SOM_PICTURES = ("prototypes.png", "hits.png", "umatrix.png", "errors.png")


def plot_som_pictures(som: SOM, mapping: SOMMapping | np.ndarray, folder: str | os.PathLike[str], *,
                      channels: str | Sequence[str | int] | None = None) -> list[Path]:  # fmt: skip
    """Draw :data:`SOM_PICTURES` of ``som`` into ``folder``: prototypes (``channels``), hits, U-matrix, errors.

    ``mapping`` gives the hit counts (a :class:`SOMMapping` or counts ``(n,)``); the error curves
    are drawn when the SOM has a training history. Returns the PNGs' paths.
    """
    folder = Path(folder)
    paths = [plot_prototypes(som, folder / "prototypes.png", channels=channels),
             plot_hit_counts(som, mapping, folder / "hits.png"), plot_umatrix(som, folder / "umatrix.png")]  # fmt: skip
    if som.history:
        paths.append(plot_errors(som, folder / "errors.png"))
    return paths
