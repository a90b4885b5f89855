"""A picture of a dataset: a few cutouts of each split and label, the chosen channels captioned."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import atomic_write_bytes, check_writable_file
from hipsml.dataset._pictures import (
    ChannelView,
    channel_labels,
    display_stretch,
    select_channels,
)
from hipsml.errors import InvalidInputError

__all__ = ["draw_mosaic", "preview_dataset"]


def draw_mosaic(images: np.ndarray, groups: dict[str, list[int]], view: ChannelView, *, per_row: int) -> Any:
    """A labelled PIL image: one row per group, up to ``per_row`` examples, one panel per ``view`` panel.

    Each panel (a grey channel, or three channels as RGB) is captioned with its channel names
    and stretched by :func:`hipsml.dataset._pictures.display_stretch`, channel by channel and
    cutout by cutout, so a bright star on one optical plate neither saturates nor darkens the
    others; north is up. Pixels without data (NaN in any channel shown) are magenta
    (:func:`~hipsml.extract.paint_missing`). The captions are also stored in the PNG's
    ``channels`` text chunk.
    """
    from PIL import Image, ImageDraw, ImageFont

    from hipsml.extract import paint_missing

    size = images.shape[-1]
    scale = max(1, 64 // size)
    size_px = size * scale
    panels = view.panels
    nb = len(panels)
    gap, group_gap, top = 2, 10, 30
    font = ImageFont.load_default()
    left = 12 + 7 * max((len(k) for k in groups), default=4)
    group_w = nb * size_px + (nb - 1) * gap
    width = max(left + per_row * group_w + (per_row - 1) * group_gap + gap, 12 + 7 * len(view.label))
    height = top + len(groups) * (size_px + group_gap)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for e in range(per_row):
        for b, (_, caption) in enumerate(panels):
            draw.text(
                (left + e * (group_w + group_gap) + b * (size_px + gap) + 2, 8),
                caption[: max(12, size_px // 6)],
                fill=(220, 220, 220),
                font=font,
            )
    for r, (name, rows) in enumerate(groups.items()):
        y = top + r * (size_px + group_gap)
        draw.text((6, y + size_px // 2 - 6), name, fill=(220, 220, 220), font=font)
        for e, i in enumerate(rows):
            for b, (channels, _) in enumerate(panels):
                shown = images[i, list(channels)]
                pixels = display_stretch(shown)[:, ::-1]
                levels = pixels[0] if len(channels) == 1 else np.moveaxis(pixels, 0, -1)
                rgb = paint_missing(levels, ~np.all(np.isfinite(shown), axis=0)[::-1])
                tile = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
                if scale > 1:
                    tile = tile.resize((size_px, size_px), Image.Resampling.NEAREST)
                canvas.paste(tile, (left + e * (group_w + group_gap) + b * (size_px + gap), y))
    canvas.info["channels"] = view.label
    return canvas


def png_bytes(canvas: Any) -> bytes:
    """``canvas`` (a PIL image) as PNG bytes, its ``channels`` caption kept as a PNG text chunk."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    if "channels" in canvas.info:
        meta.add_text("channels", str(canvas.info["channels"]))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", pnginfo=meta)
    return buffer.getvalue()


def preview_dataset(
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    per_group: int = 4,
    seed: int = 0,
    channels: str | Sequence[str | int] | None = None,
) -> Path:
    """Write a PNG grid of ``dataset``: a row per (split, label), ``per_group`` random cutouts each.

    ``channels`` picks what each cutout shows (:func:`hipsml.dataset._pictures.select_channels`):
    one channel name or index (grey), three (RGB), or by default every channel side by side
    (up to four). Every panel is captioned with its channel names.

    Examples
    --------
    >>> import hipsml
    >>> preview_dataset(hipsml.open_dataset("demo-output/datasets/demo"), "grid.png").name
    'grid.png'
    """
    if isinstance(per_group, bool) or not isinstance(per_group, int) or not 1 <= per_group <= 64:
        raise InvalidInputError(f"per_group must be an integer 1..64, got {per_group!r}")
    dest = check_writable_file(out, what="out")
    if dest.suffix.lower() != ".png":
        raise InvalidInputError(f"cannot write {dest}: the preview is a PNG; name it .png")
    view = select_channels(channels, channel_labels(dataset.channels, int(dataset.images.shape[1])))
    rng = np.random.default_rng(seed)
    split = dataset.column("split")
    labels = dataset.column("label") if "label" in dataset.group else None
    label_names = dataset.label_names
    groups: dict[str, list[int]] = {}
    for s, sname in enumerate(dataset.split_names):
        in_split = split == s
        keys = (
            [(None, "")]
            if labels is None
            else [(v, f" / {label_names[v] if label_names else v}") for v in np.unique(labels)]
        )
        for value, text in keys:
            rows = np.flatnonzero(in_split if value is None else in_split & (labels == value))
            if rows.size:
                groups[f"{sname}{text}"] = sorted(
                    rng.choice(rows, size=min(per_group, rows.size), replace=False).tolist()
                )
    chosen = sorted({i for rows in groups.values() for i in rows})
    if not chosen:
        raise InvalidInputError(f"{dataset.path}: the dataset is empty")
    block = np.asarray(dataset.read_images(np.array(chosen)), dtype=np.float32)  # a bad chunk: a DatasetError
    where = {row: k for k, row in enumerate(chosen)}
    canvas = draw_mosaic(block, {k: [where[i] for i in v] for k, v in groups.items()}, view, per_row=per_group)
    return atomic_write_bytes(dest, png_bytes(canvas))
