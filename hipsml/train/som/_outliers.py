"""Outliers of a SOM: the images farthest from their best-matching prototype (Mostert et al. 2021).

:func:`som_outliers` ranks them; :func:`plot_outliers` draws the top ones as a PNG grid, each
cutout's bands side by side (drawn by :func:`hipsml.dataset._preview.draw_mosaic`, north up),
with its rank, id and distance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import atomic_write_bytes, check_writable_file
from hipsml.dataset import Dataset
from hipsml.errors import InvalidInputError
from hipsml.train.som._som import SOMMapping

__all__ = ["plot_outliers", "som_outliers"]


def _check_top(top: int) -> int:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InvalidInputError(f"top must be a positive integer, got {top!r}")
    return int(top)


def som_outliers(mapping: SOMMapping, top: int = 100) -> np.ndarray:
    """The ``top`` images farthest from their best-matching neuron, largest distance first.

    Ties are broken by the lower index, so the ranking is deterministic.

    Parameters
    ----------
    mapping : SOMMapping
        From :meth:`SOM.map` or :func:`hipsml.train.read_som_mapping`.
    top : int
        How many (fewer when fewer images were mapped).

    Returns
    -------
    ndarray of int64
        Dataset rows when the mapping has ``rows`` (a mapped Dataset), else indices into the
        mapped array. ``mapping.distance`` of the k-th is ``mapping.distance[position]``
        where ``position = np.argsort(-distance, kind='stable')[k]``.

    Examples
    --------
    >>> import numpy as np
    >>> from hipsml.train import SOMConfig
    >>> m = SOMMapping(bmu=np.zeros(4, np.int64), distance=np.array([0.1, 0.9, 0.3, 0.9], np.float32),
    ...                angle=np.zeros(4), flipped=np.zeros(4, bool), config=SOMConfig(width=1, height=1))
    >>> som_outliers(m, top=3).tolist()
    [1, 3, 2]
    """
    positions = ranked_positions(mapping, _check_top(top))
    return positions if mapping.rows is None else np.asarray(mapping.rows, np.int64)[positions]


def ranked_positions(mapping: SOMMapping, top: int) -> np.ndarray:
    """Positions in ``mapping`` of its ``top`` largest distances, largest first (ties: lower position first)."""
    distance = np.asarray(mapping.distance, dtype=np.float64)
    return np.argsort(-distance, kind="stable")[:top].astype(np.int64)


def plot_outliers(
    data: Any,
    mapping: SOMMapping,
    path: str | os.PathLike[str],
    *,
    top: int = 100,
    columns: int = 5,
    ids: np.ndarray | None = None,
    bands: list[str] | None = None,
    channels: str | Sequence[str | int] | None = None,
) -> Path:
    """Draw the ``top`` outliers of ``mapping`` as a PNG grid; return its path.

    Each cell shows one cutout's ``channels`` (asinh-stretched per cutout and channel, north up),
    captioned with their names, and its rank, id and distance to its best-matching prototype.

    Parameters
    ----------
    data : Dataset or ndarray
        What was mapped: a dataset (the mapping's ``rows`` say which cutouts) or the array
        ``(N, C, S, S)`` itself.
    mapping : SOMMapping
    path : path
        The PNG to write (atomically).
    top, columns : int
        How many outliers, and how many per row of the grid.
    ids : ndarray, optional
        Names of the images (default: the dataset's ``id`` column, or the array index).
    bands : list of str, optional
        Channel names (default: the dataset's channels, or ``c0, c1, ...``).
    channels : str or sequence, optional
        One channel name or index (grey) or three (RGB), e.g. ``"r"`` or ``"2,1,0"``; default:
        every channel side by side (up to four). See :func:`hipsml.dataset._pictures.select_channels`.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from hipsml.train import train_som
    >>> images = np.random.default_rng(0).random((12, 1, 8, 8), dtype=np.float32)
    >>> som = train_som(images, width=2, height=1, numrot=4, neuron_dim=8, progress=False)
    >>> plot_outliers(images, som.map(images), tempfile.mkdtemp() + "/outliers.png", top=4).suffix
    '.png'
    """
    from PIL import Image, ImageDraw, ImageFont

    from hipsml.dataset import channel_labels, draw_mosaic, png_bytes, select_channels

    top = _check_top(top)
    columns = _check_top(columns)
    dest = check_writable_file(path, what="path")
    if dest.suffix.lower() != ".png":
        raise InvalidInputError(f"cannot write {dest}: the outlier grid is a PNG; name it .png")
    positions = ranked_positions(mapping, top)
    if isinstance(data, Dataset):
        if mapping.rows is None:
            raise InvalidInputError("this mapping has no dataset rows; pass the mapped array instead of the Dataset")
        rows = np.asarray(mapping.rows, np.int64)[positions]
        images = np.asarray(data.read_images(rows), dtype=np.float32)  # read in storage order, once each
        names = data.column("id")[rows] if ids is None else np.asarray(ids)[positions]
        bands = bands or data.channels
    else:
        array = np.asarray(data)
        array = array[:, None] if array.ndim == 3 else array
        if array.ndim != 4 or len(array) != len(mapping.distance):
            raise InvalidInputError(f"images {array.shape} do not match a mapping of {len(mapping.distance)} images")
        images = array[positions].astype(np.float32)
        names = positions if ids is None else np.asarray(ids)[positions]
    view = select_channels(channels, channel_labels(bands, images.shape[1]))
    distance = np.asarray(mapping.distance)[positions]
    font = ImageFont.load_default()
    cells = [draw_mosaic(images[k : k + 1], {f"#{k + 1}": [0]}, view, per_row=1) for k in range(len(positions))]
    caption = 14
    cell_w = max(c.width for c in cells) + 8
    cell_h = max(c.height for c in cells) + caption
    grid_rows = -(-len(cells) // columns)
    title = f"top {len(cells)} outliers by distance to the best-matching prototype; channels {view.label}"
    canvas = Image.new(
        "RGB", (max(cell_w * min(columns, len(cells)), 12 + 6 * len(title)), 24 + cell_h * grid_rows), (24, 24, 24)
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 6), title, fill=(230, 230, 230), font=font)
    for k, cell in enumerate(cells):
        x, y = (k % columns) * cell_w, 24 + (k // columns) * cell_h
        canvas.paste(cell, (x, y))
        draw.text(
            (x + 4, y + cell.height - 4),
            f"id {names[k]}  d={float(distance[k]):.4g}"[:40],
            fill=(255, 210, 120),
            font=font,
        )
    canvas.info["channels"] = view.label
    return atomic_write_bytes(dest, png_bytes(canvas))
