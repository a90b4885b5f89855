"""Pictures of multi-channel data: the channel choice, the display stretch, and every picture by its content."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hipsml.dataset._pictures import ChannelView, display_stretch, select_channels
from hipsml.dataset._preview import draw_mosaic, png_bytes
from hipsml.errors import HipsmlError, InvalidInputError
from hipsml.train import SOM, SOMConfig, plot_outliers, plot_prototypes
from hipsml.train.som._plots import prototype_figure
from hipsml.train.som._som import SOMMapping

NAMES = ["DSS2 red", "IRAC 8um", "Planck 143"]


def test_select_channels_takes_names_or_indices_and_says_what_it_shows():
    assert select_channels("2,1,0", NAMES) == ChannelView((2, 1, 0), ("Planck 143", "IRAC 8um", "DSS2 red"), "rgb")
    assert select_channels("IRAC 8um", NAMES) == ChannelView((1,), ("IRAC 8um",), "grey")
    assert select_channels(" Planck 143 ,0,1", NAMES).indices == (2, 0, 1)
    assert select_channels([2], NAMES).mode == "grey"
    side = select_channels(None, NAMES)
    assert side.mode == "side" and side.indices == (0, 1, 2)
    assert side.panels == [((0,), "DSS2 red"), ((1,), "IRAC 8um"), ((2,), "Planck 143")]
    assert select_channels(None, [f"b{i}" for i in range(6)]).indices == (0, 1, 2, 3)  # up to four
    assert select_channels(None, ["r"]).mode == "grey"
    assert select_channels("2,1,0", NAMES).label == "R=Planck 143 G=IRAC 8um B=DSS2 red"
    assert select_channels("1", ["10", "7"]).names == ("7",)  # an index when no channel has that name
    assert select_channels("10", ["10", "7"]).names == ("10",)  # a name first


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "IRAC 8 um",
            (
                r"unknown channel 'IRAC 8 um' \(did you mean 'IRAC 8um'\?\): the channels are DSS2 red, IRAC 8um, "
                r"Planck 143 \(or indices 0..2\)"
            ),
        ),
        ("xyz", r"unknown channel 'xyz': the channels are DSS2 red"),
        ("3", r"channel 3 out of range: the channels are DSS2 red, IRAC 8um, Planck 143 \(indices 0..2\)"),
        ("0,1", r"one channel \(grey\) or three \(R,G,B\), got 2 in '0,1'"),
        ("0,,1", r"empty entry"),
    ],
)
def test_a_bad_channel_choice_is_one_line_naming_it_and_the_channels(spec, message):
    with pytest.raises(InvalidInputError, match=message) as caught:
        select_channels(spec, NAMES)
    assert isinstance(caught.value, (HipsmlError, ValueError)) and "\n" not in str(caught.value)


def test_the_display_stretch_keeps_a_bright_star_on_a_plate_unsaturated():
    # an optical plate: sky 5000 +- 30 counts, a star of peak 30000 (sigma 2 px); a crowded field in the other
    y, x = np.mgrid[:32, :32]
    sky = 5000.0 + np.random.default_rng(0).normal(0.0, 30.0, (32, 32))
    star = 25000.0 * np.exp(-((x - 16) ** 2 + (y - 10) ** 2) / 8.0)
    image = np.stack([sky + star, sky * 0.001]).astype(np.float32)
    pixels = display_stretch(image)
    core = pixels[0][y.__eq__(10) & (abs(x - 16) <= 3)]
    assert np.count_nonzero(pixels[0] == 255) == 1  # only the peak; no flat white disc
    assert np.all(np.diff(core[:4].astype(int)) > 0) and np.all(np.diff(core[3:].astype(int)) < 0)  # its shape
    assert 15 < np.median(pixels[0]) < 160  # the sky (0.3 % of the range above the low limit) is visible, not black
    assert np.median(pixels[1]) > 60  # each channel by its own numbers (the second is 1000x fainter)


def _bright_at(weights_shape: tuple[int, ...], neuron: int, channel: int) -> np.ndarray:
    weights = np.full(weights_shape, 0.1, np.float32)
    weights[neuron, channel] = 1.0  # one prototype bright in one channel only
    return weights


def _cartesian_centre(picture: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return rows.mean() / picture.shape[0], cols.mean() / picture.shape[1]


def test_plot_prototypes_draws_the_chosen_channel_and_names_it(tmp_path):
    config = SOMConfig(layout="cartesian", width=3, height=3, neuron_dim=6)
    som = SOM(config, _bright_at((9, 3, 6, 6), neuron=0, channel=2), training={"channels": NAMES})

    def yellow(picture_path) -> np.ndarray:  # viridis' top: the bright prototype pixels (the page is white)
        rgb = np.asarray(Image.open(picture_path).convert("RGB")).astype(int)
        return (rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 100)

    bright = yellow(plot_prototypes(som, tmp_path / "c2.png", channels="2"))
    # neuron 0 is the top-left cell (first grid row on top): the bright pixels are there, about one cell of nine
    row, col = _cartesian_centre(bright, bright)
    assert row < 0.45 and col < 0.45 and bright.sum() > 500
    assert not yellow(plot_prototypes(som, tmp_path / "c0.png", channels="DSS2 red")).any()  # channel 0 is flat
    # RGB: channel 2 as red, then as blue
    red = np.asarray(Image.open(plot_prototypes(som, tmp_path / "rgb.png", channels="Planck 143,1,0")).convert("RGB"))
    bright = red.max(axis=-1) > 200
    assert bright.any() and np.all(red[bright][:, 0] > red[bright][:, 2] + 100)
    blue = np.asarray(Image.open(plot_prototypes(som, tmp_path / "bgr.png", channels="0,1,2")).convert("RGB"))
    bright = blue.max(axis=-1) > 200
    assert bright.any() and np.all(blue[bright][:, 2] > blue[bright][:, 0] + 100)

    # titles name the channels
    def texts(figure) -> list[str]:
        return [ax.get_title() for ax in figure.axes] + [t.get_text() for t in figure.texts]

    assert texts(prototype_figure(som))[:3] == NAMES  # default: every channel side by side
    assert any("R=Planck 143 G=IRAC 8um B=DSS2 red" in t for t in texts(prototype_figure(som, channels="2,1,0")))
    assert texts(prototype_figure(SOM(config, som.weights), channels="1"))[0] == "c1"  # no names recorded
    with pytest.raises(InvalidInputError, match="did you mean 'IRAC 8um'"):
        plot_prototypes(som, tmp_path / "bad.png", channels="IRAC8um")


def test_the_mosaic_shows_the_chosen_channel_and_records_the_names():
    images = np.full((1, 3, 8, 8), 0.1, np.float32)
    images[0, 2, 1, 6] = 5.0  # channel 2 alone is bright, at row 1 (south), column 6
    canvas = draw_mosaic(images, {"g": [0]}, select_channels("2", NAMES), per_row=1)
    picture = np.asarray(canvas.convert("L"))[30:, :]  # below the captions
    y, x = np.unravel_index(np.argmax(picture), picture.shape)
    # 8 px scaled to 64: row 1 from the bottom is drawn at 48..55 (north up), column 6 at 48..55 from the panel's left
    left = 12 + 7 * len("g")
    assert 48 <= y < 56 and 48 <= x - left < 56
    with Image.open(io.BytesIO(png_bytes(canvas))) as again:
        assert again.text["channels"] == "Planck 143"
    rgb = draw_mosaic(images, {"g": [0]}, select_channels("Planck 143,IRAC 8um,0", NAMES), per_row=1)
    pixel = np.asarray(rgb)[30 + 50, left + 50]
    assert pixel[0] == 255 and pixel[2] < 50  # channel 2 is red
    side = draw_mosaic(images, {"g": [0]}, select_channels(None, NAMES), per_row=1)
    assert side.width >= left + 3 * 64 and side.info["channels"] == "DSS2 red | IRAC 8um | Planck 143"


def test_plot_outliers_draws_the_chosen_channels_and_names_them(tmp_path):
    images = np.full((4, 3, 8, 8), 0.1, np.float32)
    images[:, 1, 4, 4] = 3.0
    mapping = SOMMapping(
        bmu=np.zeros(4, np.int64),
        distance=np.array([0.1, 0.9, 0.3, 0.2], np.float32),
        angle=np.zeros(4),
        flipped=np.zeros(4, bool),
        config=SOMConfig(width=1, height=1),
    )
    png = plot_outliers(images, mapping, tmp_path / "o.png", top=2, bands=NAMES, channels="IRAC 8um")
    with Image.open(png) as picture:
        assert picture.text["channels"] == "IRAC 8um"
        grey = np.asarray(picture.convert("L"))
    assert np.count_nonzero(grey[24:] == 255) >= 2 * 64 - 8  # one bright 8x8 block per outlier (two)
    with Image.open(plot_outliers(images, mapping, tmp_path / "all.png", top=2, bands=NAMES)) as picture:
        assert picture.text["channels"] == "DSS2 red | IRAC 8um | Planck 143"
    with pytest.raises(InvalidInputError, match="unknown channel 'radio'"):
        plot_outliers(images, mapping, tmp_path / "x.png", bands=NAMES, channels="radio")
