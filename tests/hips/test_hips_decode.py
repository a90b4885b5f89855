"""Tile decoding: every FITS quirk real archives serve, PNG/JPEG, the flip convention, Allsky layout."""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from hipsml.errors import TileDecodeError
from hipsml.hips import decode_tile
from hipsml.hips._decode import allsky_columns, split_allsky

W = 16


def fits_bytes(data: np.ndarray, **cards: object) -> bytes:
    """A FITS file written by astropy, with extra header cards (no scaling applied to data)."""
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdu.writeto(buf)
    return buf.getvalue()


def raw_fits(header: list[tuple[str, object]], payload: bytes, *, pad: bool = True) -> bytes:
    """A FITS file assembled by hand: header cards via astropy, data bytes exactly as given."""
    text = fits.Header(header).tostring(padding=True)
    data = payload
    if pad and len(data) % 2880:
        data += b"\0" * (2880 - len(data) % 2880)
    return text.encode("ascii") + data


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def ramp() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 120, size=(W, W)).astype(np.int64)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.int64, np.float32, np.float64])
def test_every_bitpix(ramp, dtype):
    data = (ramp * 3 - (0 if dtype == np.uint8 else 100)).astype(dtype)
    out = decode_tile(fits_bytes(data), "fits", source="t.fits", width=W)
    assert out.dtype == np.float32
    assert out.shape == (1, W, W)
    np.testing.assert_array_equal(out[0], data.astype(np.float32))


def test_rows_are_kept_in_fits_storage_order():
    data = np.arange(W * W, dtype=np.float32).reshape(W, W)
    out = decode_tile(fits_bytes(data), "fits", source="t.fits")
    assert out[0, 0, 0] == 0.0 and out[0, 0, 1] == 1.0 and out[0, 1, 0] == W


@pytest.mark.parametrize("blank_card", [-32768, -32768.0, "-32768.0"])
def test_integer_blank_even_when_written_as_float_or_string(ramp, blank_card):
    raw = ramp.astype(">i2")
    raw[2, 3] = -32768
    raw[5, 0] = -32768
    header = [("SIMPLE", True), ("BITPIX", 16), ("NAXIS", 2), ("NAXIS1", W), ("NAXIS2", W), ("BLANK", blank_card)]
    blob = raw_fits(header, raw.tobytes())
    out = decode_tile(blob, "fits", source="t.fits")
    assert np.isnan(out[0, 2, 3]) and np.isnan(out[0, 5, 0])
    assert np.isnan(out).sum() == 2
    np.testing.assert_array_equal(np.nan_to_num(out[0], nan=-1), np.where(raw == -32768, -1, raw))
    if not isinstance(blank_card, int):
        # the CDS quirk: astropy itself does not honour a non-integer BLANK
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = fits.getdata(io.BytesIO(blob))
        assert ref[2, 3] == -32768


def test_bscale_bzero_applied_after_blank(ramp):
    raw = ramp.astype(">i2")
    raw[0, 0] = -1
    header = [
        ("SIMPLE", True),
        ("BITPIX", 16),
        ("NAXIS", 2),
        ("NAXIS1", W),
        ("NAXIS2", W),
        ("BSCALE", 2.5),
        ("BZERO", -10.0),
        ("BLANK", -1),
    ]
    out = decode_tile(raw_fits(header, raw.tobytes()), "fits", source="t.fits")
    expected = raw.astype(np.float64) * 2.5 - 10.0
    assert np.isnan(out[0, 0, 0])
    np.testing.assert_allclose(out[0].ravel()[1:], expected.ravel()[1:], rtol=1e-6)


def test_unsigned_16_bit_via_bzero():
    data = np.array([[0, 40000], [65535, 12]], dtype=np.uint16)
    out = decode_tile(fits_bytes(data), "fits", source="u16.fits")  # astropy writes BZERO = 32768
    np.testing.assert_array_equal(out[0], data.astype(np.float32))


def test_nan_in_float_tile_stays_nan(ramp):
    data = ramp.astype(np.float32)
    data[3, 4] = np.nan
    out = decode_tile(fits_bytes(data), "fits", source="t.fits")
    assert np.isnan(out[0, 3, 4]) and np.isnan(out).sum() == 1


def test_gzip_compressed_fits(ramp):
    data = ramp.astype(np.float32) / 7
    out = decode_tile(gzip.compress(fits_bytes(data)), "fits", source="t.fits")
    np.testing.assert_array_equal(out[0], data)


def test_corrupt_gzip_names_the_source(ramp):
    blob = gzip.compress(fits_bytes(ramp.astype(np.float32)))[:40]
    with pytest.raises(TileDecodeError, match="Npix7.fits"):
        decode_tile(blob, "fits", source="Norder3/Dir0/Npix7.fits")


def test_unpadded_file(ramp):
    data = ramp.astype(np.float32) - 0.5
    blob = raw_fits(
        [("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", W), ("NAXIS2", W)],
        data.astype(">f4").tobytes(),
        pad=False,
    )
    assert len(blob) % 2880 != 0
    np.testing.assert_array_equal(decode_tile(blob, "fits", source="t.fits")[0], data)


def test_unpadded_header_too(ramp):
    data = ramp.astype(">f4")
    cards = "".join(
        c.ljust(80)
        for c in [
            "SIMPLE  =                    T",
            "BITPIX  =                  -32",
            "NAXIS   =                    2",
            f"NAXIS1  = {W:20d}",
            f"NAXIS2  = {W:20d}",
            "END",
        ]
    )
    blob = cards.encode() + data.tobytes()
    np.testing.assert_array_equal(decode_tile(blob, "fits", source="t.fits")[0], data.astype(np.float32))


def test_truncated_data_is_an_error(ramp):
    blob = fits_bytes(ramp.astype(np.float32))[: 2880 + 100]
    with pytest.raises(TileDecodeError, match=r"Npix9.fits: FITS data truncated"):
        decode_tile(blob, "fits", source="Npix9.fits")


def test_trimmed_tile_is_restored_at_its_offset(ramp):
    full = np.full((W, W), np.nan, dtype=np.float32)
    full[2:5, 1:7] = ramp[2:5, 1:7]
    box = full[2:5, 1:7].astype(">f4")
    header = [
        ("SIMPLE", True),
        ("BITPIX", -32),
        ("NAXIS", 2),
        ("NAXIS1", 6),
        ("NAXIS2", 3),
        ("ONAXIS1", W),
        ("ONAXIS2", W),
        ("TRIM1", 1),
        ("TRIM2", 2),
    ]
    out = decode_tile(raw_fits(header, box.tobytes()), "fits", source="t.fits", width=W)
    assert out.shape == (1, W, W)
    np.testing.assert_array_equal(out[0], full)


def test_trimmed_tile_without_onaxis_uses_the_width(ramp):
    box = ramp[:4, :5].astype(">f4")
    header = [
        ("SIMPLE", True),
        ("BITPIX", -32),
        ("NAXIS", 2),
        ("NAXIS1", 5),
        ("NAXIS2", 4),
        ("TRIM1", W - 5),
        ("TRIM2", 0),
    ]
    out = decode_tile(raw_fits(header, box.tobytes()), "fits", source="t.fits", width=W)
    np.testing.assert_array_equal(out[0, :4, W - 5 :], box.astype(np.float32))
    assert np.isnan(out[0, 4:]).all() and np.isnan(out[0, :, : W - 5]).all()


def test_trim_box_outside_the_tile_is_an_error(ramp):
    box = ramp[:4, :5].astype(">f4")
    header = [
        ("SIMPLE", True),
        ("BITPIX", -32),
        ("NAXIS", 2),
        ("NAXIS1", 5),
        ("NAXIS2", 4),
        ("ONAXIS1", W),
        ("ONAXIS2", W),
        ("TRIM1", W - 2),
        ("TRIM2", 0),
    ]
    with pytest.raises(TileDecodeError, match="does not fit"):
        decode_tile(raw_fits(header, box.tobytes()), "fits", source="t.fits")


def test_image_in_first_extension(ramp):
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(ramp.astype(np.int32))])
    buf = io.BytesIO()
    hdul.writeto(buf)
    np.testing.assert_array_equal(decode_tile(buf.getvalue(), "fits", source="t.fits")[0], ramp)


def test_tile_compressed_fits_falls_back_to_astropy(ramp):
    data = ramp.astype(np.int16)  # integers: the compression is lossless
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="GZIP_1")])
    buf = io.BytesIO()
    hdul.writeto(buf)
    np.testing.assert_array_equal(decode_tile(buf.getvalue(), "fits", source="t.fits")[0], data)


def test_three_axis_fits_gives_channels(ramp):
    cube = np.stack([ramp, ramp + 1, ramp + 2]).astype(np.int16)
    out = decode_tile(fits_bytes(cube), "fits", source="t.fits")
    assert out.shape == (3, W, W)
    np.testing.assert_array_equal(out[2], ramp + 2)


@pytest.mark.parametrize(
    ("blob", "fmt"),
    [
        (b"not a fits file at all" * 200, "fits"),
        (b"SIMPLE  =                    T" + b" " * 50 + b"garbage", "fits"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "png"),
        (b"\xff\xd8\xff\xe0" + b"\x13" * 64, "jpeg"),
        (b"", "png"),
    ],
)
def test_corrupt_bytes_name_the_source(blob, fmt):
    with pytest.raises(TileDecodeError, match="Norder4/Dir0/Npix99"):
        decode_tile(blob, fmt, source="Norder4/Dir0/Npix99." + fmt)


def test_wrong_width_is_an_error(ramp):
    with pytest.raises(TileDecodeError, match=r"16x16 pixels, but the survey declares tiles 512x512"):
        decode_tile(fits_bytes(ramp.astype(np.float32)), "fits", source="t.fits", width=512)


def test_png_grey_is_flipped_vertically(ramp):
    img = ramp.astype(np.uint8)
    out = decode_tile(png_bytes(img), "png", source="t.png", width=W)
    assert out.shape == (1, W, W) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], img[::-1])


def test_flip_convention_png_and_jpeg_match_fits(ramp):
    """A PNG/JPEG written as HiPS writers do (flipud of the FITS array) decodes like the FITS tile."""
    fits_tile = decode_tile(fits_bytes(ramp.astype(np.uint8)), "fits", source="t.fits")
    shown = np.flipud(ramp.astype(np.uint8))
    np.testing.assert_array_equal(decode_tile(png_bytes(shown), "png", source="t.png"), fits_tile)
    smooth = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8) * 2
    fits_smooth = decode_tile(fits_bytes(smooth), "fits", source="s.fits")
    jpeg_smooth = decode_tile(jpeg_bytes(np.flipud(smooth)), "jpeg", source="s.jpg")
    assert np.abs(jpeg_smooth - fits_smooth).max() <= 1  # measured: 1 (JPEG rounding)
    assert np.abs(decode_tile(jpeg_bytes(smooth), "jpeg", source="s.jpg") - fits_smooth).mean() > 50


def test_png_colour_and_alpha(ramp):
    rgba = np.zeros((W, W, 4), dtype=np.uint8)
    rgba[..., 0] = ramp
    rgba[..., 1] = ramp + 10
    rgba[..., 2] = 200
    rgba[..., 3] = 255
    rgba[0, 5, 3] = 0  # displayed top row -> last FITS row after the flip
    out = decode_tile(png_bytes(rgba, "RGBA"), "png", source="t.png")
    assert out.shape == (3, W, W)
    assert np.isnan(out[:, W - 1, 5]).all() and np.isnan(out).sum() == 3
    np.testing.assert_array_equal(out[1, : W - 1], (ramp + 10)[::-1][: W - 1])
    assert (out[2, : W - 1] == 200).all()


def test_grey_survey_stored_as_rgb_png_is_reduced_to_one_channel(ramp):
    rgb = np.repeat(ramp.astype(np.uint8)[..., None], 3, axis=2)
    out = decode_tile(png_bytes(rgb), "png", source="t.png", channels=1)
    assert out.shape == (1, W, W)
    np.testing.assert_array_equal(out[0], ramp[::-1])
    assert decode_tile(png_bytes(ramp.astype(np.uint8)), "png", source="t.png", channels=3).shape == (3, W, W)


def test_jpeg_grey_and_colour_with_tolerance():
    yy, xx = np.mgrid[0:64, 0:64]
    grey = (yy * 2 + xx).astype(np.uint8)
    out = decode_tile(jpeg_bytes(grey), "jpeg", source="t.jpg", width=64)
    assert out.shape == (1, 64, 64)
    assert np.abs(out[0] - grey[::-1]).mean() < 1.5
    colour = np.stack([grey, 255 - grey, np.full_like(grey, 90)], axis=2)
    out = decode_tile(jpeg_bytes(colour), "jpg", source="t.jpg")
    assert out.shape == (3, 64, 64)
    for c in range(3):
        assert np.abs(out[c] - colour[::-1, :, c]).mean() < 2.5


def test_allsky_columns():
    assert [allsky_columns(k) for k in range(5)] == [3, 6, 13, 27, 55]


@pytest.mark.parametrize("order", [0, 1])
def test_split_allsky_layout(order):
    """Tiles laid left-to-right, top-to-bottom in the displayed image, each drawn as its own PNG."""
    n = 12 * 4**order
    w = 4
    ncol = allsky_columns(order)
    nrow = -(-n // ncol)
    rng = np.random.default_rng(order)
    tiles = rng.integers(0, 255, size=(n, w, w)).astype(np.uint8)  # FITS orientation
    shown = np.zeros((nrow * w, ncol * w), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        shown[r * w : (r + 1) * w, c * w : (c + 1) * w] = np.flipud(tiles[i])
    mosaic = decode_tile(png_bytes(shown), "png", source="Allsky.png")
    out = split_allsky(mosaic, order, source="Allsky.png")
    assert out.shape == (n, 1, w, w)
    np.testing.assert_array_equal(out[:, 0], tiles)


def test_split_allsky_too_small_is_an_error():
    with pytest.raises(TileDecodeError, match="Allsky.jpg"):
        split_allsky(np.zeros((1, 10, 10), np.float32), 3, source="Allsky.jpg")


def _header_only(cards: list[str]) -> bytes:
    text = "".join(card.ljust(80) for card in cards + ["END"])
    text = text.ljust(((len(text) + 2879) // 2880) * 2880)
    return text.encode("ascii") + b"\0" * 2880


@pytest.mark.parametrize(
    "cards",
    [
        ["SIMPLE  =                    T", "BITPIX  =                  -32", "NAXIS   =                  NAN"],
        [
            "SIMPLE  =                    T",
            "BITPIX  =                  NAN",
            "NAXIS   =                    2",
            "NAXIS1  =                    4",
            "NAXIS2  =                    4",
        ],
        [
            "SIMPLE  =                    T",
            "BITPIX  =                  -32",
            "NAXIS   =                    2",
            "NAXIS1  =                  INF",
            "NAXIS2  =                    4",
        ],
        [
            "SIMPLE  =                    T",
            "BITPIX  =                  -32",
            "NAXIS   =                    1",
            "NAXIS1  =                    4",
        ],
        [
            "SIMPLE  =                    T",
            "BITPIX  =                  -32",
            "NAXIS   =                    2",
            "NAXIS1  =                    4",
            "NAXIS2  =                    4",
            "ONAXIS1 =               100000",
            "ONAXIS2 =               100000",
            "TRIM1   =                    0",
            "TRIM2   =                    0",
        ],
    ],
    ids=["naxis-nan", "bitpix-nan", "naxis1-inf", "one-axis", "huge-onaxis"],
)
def test_malformed_fits_headers_are_decode_errors(cards):
    with pytest.raises(TileDecodeError, match="bad.fits"):
        decode_tile(_header_only(cards), "fits", source="bad.fits")


def test_fits_plane_count_must_match_survey_channels():
    buf = io.BytesIO()
    fits.PrimaryHDU(np.zeros((3, 8, 8), np.float32)).writeto(buf)
    with pytest.raises(TileDecodeError, match="3 planes"):
        decode_tile(buf.getvalue(), "fits", source="cube.fits", width=8, channels=1)
    assert decode_tile(buf.getvalue(), "fits", source="cube.fits", width=8, channels=3).shape == (3, 8, 8)
