"""A picture of a dataset: a few cutouts of each split and label, every band side by side."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import atomic_write, check_writable_file
from hipsml.errors import InvalidInputError

__all__ = ["draw_mosaic", "preview_dataset"]


def draw_mosaic(
    images: np.ndarray, groups: dict[str, list[int]], bands: list[str], *, per_row: int
) -> Any:
    """A labelled PIL image: one row per group, up to ``per_row`` examples, one panel per band.

    Each band is asinh-stretched with limits shared by all its panels (so panels of a band
    compare); north is up.
    """
    from PIL import Image, ImageDraw, ImageFont

    from hipsml.extract._output import asinh_stretch

    size = images.shape[-1]
    scale = max(1, 64 // size)
    size_px = size * scale
    nb = len(bands)
    gap, group_gap, top = 2, 10, 30
    font = ImageFont.load_default()
    left = 12 + 7 * max((len(k) for k in groups), default=4)
    group_w = nb * size_px + (nb - 1) * gap
    width = left + per_row * group_w + (per_row - 1) * group_gap + gap
    height = top + len(groups) * (size_px + group_gap)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    chosen = [i for rows in groups.values() for i in rows]
    limits = []
    for b in range(nb):
        values = images[chosen, b] if chosen else np.zeros(1)
        finite = values[np.isfinite(values)]
        lo, hi = np.percentile(finite, (1.0, 99.8)) if finite.size else (0.0, 1.0)
        limits.append((float(lo), float(hi)))
    for e in range(per_row):
        for b, name in enumerate(bands):
            draw.text((left + e * (group_w + group_gap) + b * (size_px + gap) + 2, 8), name[:12], fill=(220, 220, 220), font=font)
    for r, (name, rows) in enumerate(groups.items()):
        y = top + r * (size_px + group_gap)
        draw.text((6, y + size_px // 2 - 6), name, fill=(220, 220, 220), font=font)
        for e, i in enumerate(rows):
            for b in range(nb):
                panel = asinh_stretch(images[i, b : b + 1], limits=[limits[b]], softening=0.05)[0, ::-1]
                tile = Image.fromarray(np.ascontiguousarray(panel), mode="L")
                if scale > 1:
                    tile = tile.resize((size_px, size_px), Image.NEAREST)
                canvas.paste(tile, (left + e * (group_w + group_gap) + b * (size_px + gap), y))
    return canvas


def preview_dataset(dataset: Any, out: str | os.PathLike[str], *, per_group: int = 4, seed: int = 0) -> Path:
    """Write a PNG grid of ``dataset``: a row per (split, label), ``per_group`` random cutouts each.

    Examples
    --------
    >>> preview_dataset(hipsml.open_dataset("demo-output/datasets/demo"), "grid.png")  # doctest: +SKIP
    PosixPath('grid.png')
    """
    if isinstance(per_group, bool) or not isinstance(per_group, int) or not 1 <= per_group <= 64:
        raise InvalidInputError(f"per_group must be an integer 1..64, got {per_group!r}")
    dest = check_writable_file(out, what="out")
    if dest.suffix.lower() != ".png":
        raise InvalidInputError(f"cannot write {dest}: the preview is a PNG; name it .png")
    rng = np.random.default_rng(seed)
    split = dataset.column("split")
    labels = dataset.column("label") if "label" in dataset.group else None
    label_names = dataset.label_names
    groups: dict[str, list[int]] = {}
    for s, sname in enumerate(dataset.split_names):
        in_split = split == s
        keys = [(None, "")] if labels is None else [(v, f" / {label_names[v] if label_names else v}") for v in np.unique(labels)]
        for value, text in keys:
            rows = np.flatnonzero(in_split if value is None else in_split & (labels == value))
            if rows.size:
                groups[f"{sname}{text}"] = sorted(rng.choice(rows, size=min(per_group, rows.size), replace=False).tolist())
    chosen = sorted({i for rows in groups.values() for i in rows})
    if not chosen:
        raise InvalidInputError(f"{dataset.path}: the dataset is empty")
    block = np.asarray(dataset.images.get_orthogonal_selection((np.array(chosen),)), dtype=np.float32)
    where = {row: k for k, row in enumerate(chosen)}
    canvas = draw_mosaic(block, {k: [where[i] for i in v] for k, v in groups.items()}, dataset.channels, per_row=per_group)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    with atomic_write(dest) as fh:
        fh.write(buf.getvalue())
    return dest
