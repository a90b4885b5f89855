"""Missing data in previews and thumbnails: magenta, never mistaken for faint sky, never on covered pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hipsml.dataset._pictures import select_channels
from hipsml.dataset._preview import draw_mosaic
from hipsml.extract import paint_missing
from hipsml.extract._output import MISSING_COLOUR
from hipsml.train.som._explorer import _thumbnail

MAGENTA = np.array(MISSING_COLOUR, dtype=np.uint8)


def _half_covered(size: int = 16, channels: int = 1) -> np.ndarray:
    """A cutout (C, S, S) of faint sky (zeros and small values) whose columns x < S/2 hold no data."""
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (channels, size, size)).astype(np.float32)
    image[:, :, : size // 2] = np.nan
    return image


def test_paint_missing_marks_exactly_the_missing_pixels():
    grey = np.array([[0, 255], [10, 0]], dtype=np.uint8)
    missing = np.array([[True, False], [False, False]])
    out = paint_missing(grey, missing)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert np.all(out[0, 0] == MAGENTA) and out[0, 1].tolist() == [255, 255, 255] and out[1, 1].tolist() == [0, 0, 0]
    # a covered RGB pixel that is exactly magenta is nudged off it
    rgb = np.zeros((1, 2, 3), dtype=np.uint8)
    rgb[0, 1] = MAGENTA
    out = paint_missing(rgb, np.array([[True, False]]))
    assert np.all(out[0, 0] == MAGENTA) and not np.all(out[0, 1] == MAGENTA)


def test_preview_mosaic_draws_the_uncovered_half_magenta():
    image = _half_covered()[None]  # one cutout, one band
    canvas = np.asarray(draw_mosaic(image, {"train": [0]}, select_channels(None, ["r"]), per_row=1).convert("RGB"))
    magenta = np.all(canvas == MAGENTA, axis=-1)
    # the panel is 64 px (16 scaled 4x); uncovered columns x < 8 -> 32 screen columns, all rows
    assert magenta.sum() == 64 * 32
    ys, xs = np.nonzero(magenta)
    assert xs.max() - xs.min() + 1 == 32 and ys.max() - ys.min() + 1 == 64
    # the covered half, to its right, holds no magenta pixel
    panel = canvas[ys.min() : ys.max() + 1, xs.max() + 1 : xs.max() + 33]
    assert not np.any(np.all(panel == MAGENTA, axis=-1))


def test_som_thumbnail_draws_the_uncovered_half_magenta(tmp_path):
    for channels in ((0,), (0, 1, 2)):
        path = tmp_path / f"t{len(channels)}.png"
        _thumbnail(_half_covered(channels=3), channels, path)
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        magenta = np.all(rgb == MAGENTA, axis=-1)
        assert magenta[:, :8].all() and not magenta[:, 8:].any()
    covered = np.ones((1, 8, 8), np.float32)
    _thumbnail(covered, (0,), tmp_path / "full.png")
    with Image.open(tmp_path / "full.png") as im:
        assert im.mode == "L"  # fully covered thumbnails stay grey
