"""open_survey and HipsSurvey on small HiPS surveys written in tmp_path (and served over real HTTP)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

import hipsml
from hipsml.errors import InvalidInputError, InvalidLocationError, PropertiesError, SurveyNotFoundError, TileDecodeError
from hipsml.hips import HipsSurvey, Moc, open_survey, tile_path
from hipsml.hips._decode import allsky_columns

W = 8
ORDER = 3

PROPERTIES = """# written by the test
creator_did      = ivo://TEST/P/unit/survey
hips_order       = 3
hips_order_min   = 1
hips_frame       = galactic
hips_tile_width  = 8
hips_tile_format = png fits
hips_pixel_bitpix = -32
hips_pixel_cut   = 0 255
"""


def tile_values(order: int, npix: int) -> np.ndarray:
    """Distinct, recognisable content for each tile."""
    return (np.arange(W * W, dtype=np.float32).reshape(W, W) + 1000 * order + npix) % 251


def write_tile(root: Path, order: int, npix: int, fmt: str = "fits", values: np.ndarray | None = None) -> np.ndarray:
    data = tile_values(order, npix) if values is None else values
    path = root / tile_path(order, npix, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "fits":
        fits.PrimaryHDU(data.astype(np.float32)).writeto(path)
    else:
        Image.fromarray(np.flipud(data).astype(np.uint8)).save(path)
    return data


def write_moc(root: Path, uniq: list[int]) -> None:
    col = fits.Column(name="UNIQ", format="K", array=np.array(uniq, dtype=np.int64))
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["MOCORDER"] = 3
    hdu.header["ORDERING"] = "NUNIQ"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(root / "Moc.fits")


@pytest.fixture
def survey_dir(tmp_path: Path) -> Path:
    root = tmp_path / "unit-survey"
    root.mkdir()
    (root / "properties").write_text(PROPERTIES)
    for npix in (5, 6, 7, 300):
        write_tile(root, ORDER, npix, "fits")
        write_tile(root, ORDER, npix, "png")
    write_tile(root, 1, 2, "fits")
    return root


def test_open_local_directory(survey_dir: Path):
    s = open_survey(survey_dir)
    assert isinstance(s, HipsSurvey)
    assert s.location == str(survey_dir)
    assert s.name == "P/unit/survey"  # creator_did without the ivo:// authority
    assert (s.order, s.order_min, s.tile_width, s.frame, s.formats, s.channels) == (
        3,
        1,
        8,
        "galactic",
        ("png", "fits"),
        1,
    )
    assert (s.bitpix, s.pixel_cut, s.moc) == (-32, (0.0, 255.0), None)
    assert s.properties["creator_did"] == "ivo://TEST/P/unit/survey"
    text = s.summary()
    assert "galactic" in text and "1..3" in text and str(survey_dir) in text
    assert "HipsSurvey(" in repr(s) and "galactic" in repr(s)


def test_top_level_exports():
    assert hipsml.open_survey is open_survey
    assert hipsml.HipsSurvey is HipsSurvey


def test_read_tile_values_and_default_format(survey_dir: Path):
    s = open_survey(str(survey_dir))
    tile = s.read_tile(3, 300)
    assert tile.shape == (1, W, W) and tile.dtype == np.float32
    np.testing.assert_array_equal(tile[0], tile_values(3, 300))  # FITS preferred over PNG
    png = s.read_tile(3, 300, format="png")
    np.testing.assert_array_equal(png, tile)  # the PNG (flipped on disk) decodes like the FITS tile
    np.testing.assert_array_equal(s.read_tile(1, 2)[0], tile_values(1, 2))


def test_file_url(survey_dir: Path):
    s = open_survey(survey_dir.as_uri())
    assert s.location == str(survey_dir)
    np.testing.assert_array_equal(s.read_tile(3, 6)[0], tile_values(3, 6))


def test_bad_locations(tmp_path: Path, survey_dir: Path):
    with pytest.raises(InvalidLocationError, match="ftp"):
        open_survey("ftp://example.org/hips")
    with pytest.raises(SurveyNotFoundError, match="nowhere"):
        open_survey(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SurveyNotFoundError, match="empty"):
        open_survey(empty)
    (empty / "properties").write_text("hips_order = 3\nthis is not a property\n")
    with pytest.raises(PropertiesError, match=r"properties, line 2"):
        open_survey(empty)


def test_absent_tile_is_none_and_remembered(survey_dir: Path):
    s = open_survey(survey_dir)
    assert s.read_tile(3, 8) is None
    assert s.stats["absent"] == 1 and s.stats["tile_reads"] == 0
    assert s.read_tile(3, 8) is None
    assert s.stats["memory_hits"] == 1 and s.stats["absent"] == 1


def test_invalid_requests(survey_dir: Path):
    s = open_survey(survey_dir)
    with pytest.raises(InvalidInputError, match="order 4"):
        s.read_tile(4, 0)
    with pytest.raises(InvalidInputError, match="order 0"):
        s.read_tile(0, 0)
    with pytest.raises(InvalidInputError, match="768"):
        s.read_tile(3, 768)
    with pytest.raises(InvalidInputError, match="-1"):
        s.read_tiles(3, [1, -1])
    with pytest.raises(InvalidInputError, match="jpeg"):
        s.read_tile(3, 5, format="jpeg")


def test_tiles_are_read_only(survey_dir: Path):
    s = open_survey(survey_dir)
    tile = s.read_tile(3, 5)
    with pytest.raises(ValueError):
        tile[0, 0, 0] = 42.0
    assert s.read_tile(3, 5)[0, 0, 0] == tile_values(3, 5)[0, 0]


def test_lru_is_bounded_by_bytes(survey_dir: Path):
    s = open_survey(survey_dir, memory_cache_bytes=2 * W * W * 4 + 100)  # room for two tiles
    for npix in (5, 6, 7):
        s.read_tile(3, npix)
    assert s.stats["tile_reads"] == 3 and s.stats["cache_tiles"] == 2
    s.read_tile(3, 7)  # most recent: still cached
    assert s.stats["memory_hits"] == 1 and s.stats["tile_reads"] == 3
    s.read_tile(3, 5)  # evicted first: decoded again
    assert s.stats["tile_reads"] == 4
    assert s.stats["cache_bytes"] <= 2 * W * W * 4 + 100
    s.clear_cache()
    assert s.stats["cache_tiles"] == 0


def test_read_tiles_keeps_input_order_and_reads_each_tile_once(survey_dir: Path):
    s = open_survey(survey_dir)
    out = s.read_tiles(3, [300, 5, 8, 300, 6])
    assert out[2] is None
    for got, npix in zip([out[0], out[1], out[3], out[4]], [300, 5, 300, 6], strict=True):
        np.testing.assert_array_equal(got[0], tile_values(3, npix))
    assert out[0] is out[3]
    assert s.stats["tile_reads"] == 3
    assert s.read_tiles(3, []) == []


def test_moc_skips_tiles_outside_without_reading_them(survey_dir: Path):
    write_moc(survey_dir, [4 * 4**3 + 5, 4 * 4**2 + 75])  # tile 5 at order 3, and order-2 cell 75 (tiles 300..303)
    # a tile file outside the MOC exists on disk: it must not be returned
    assert (survey_dir / tile_path(3, 6, "fits")).exists()
    s = open_survey(survey_dir)
    assert isinstance(s.moc, Moc)
    assert s.read_tile(3, 6) is None
    assert s.stats["moc_skips"] == 1 and s.stats["tile_reads"] == 0 and s.stats["absent"] == 0
    np.testing.assert_array_equal(s.read_tile(3, 5)[0], tile_values(3, 5))
    out = s.read_tiles(3, [7, 300, 6])
    assert out[0] is None and out[2] is None
    np.testing.assert_array_equal(out[1][0], tile_values(3, 300))
    assert s.read_tile(1, 2) is None  # order-1 tile 2 does not overlap the MOC
    assert s.read_tile(1, 0) is None and s.stats["absent"] == 1  # it overlaps (holds tile 5), but is not on disk
    assert "coverage" in s.summary()


def test_broken_moc_is_ignored_with_a_warning(survey_dir: Path, caplog: pytest.LogCaptureFixture):
    (survey_dir / "Moc.fits").write_bytes(b"SIMPLE  =    garbage")
    with caplog.at_level(logging.WARNING, logger="hipsml"):
        s = open_survey(survey_dir)
    assert s.moc is None
    assert any("Moc.fits" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(s.read_tile(3, 6)[0], tile_values(3, 6))


def test_corrupt_tile_raises_naming_the_file(survey_dir: Path):
    path = survey_dir / tile_path(3, 7, "fits")
    path.write_bytes(path.read_bytes()[:3000])
    s = open_survey(survey_dir)
    with pytest.raises(TileDecodeError, match="Npix7.fits"):
        s.read_tile(3, 7)


def test_wrong_tile_size_raises(survey_dir: Path):
    path = survey_dir / tile_path(3, 9, "fits")
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(path)
    with pytest.raises(TileDecodeError, match="Npix9.fits: tile is 4x4"):
        open_survey(survey_dir).read_tile(3, 9)


def test_read_allsky(survey_dir: Path):
    s = open_survey(survey_dir)
    assert s.read_allsky(1) is None
    order, w = 1, 2
    n = 12 * 4**order
    ncol = allsky_columns(order)
    tiles = (np.arange(n * w * w) % 251).reshape(n, w, w).astype(np.uint8)
    shown = np.zeros((-(-n // ncol) * w, ncol * w), np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        shown[r * w : (r + 1) * w, c * w : (c + 1) * w] = np.flipud(tiles[i])
    Image.fromarray(shown).save(survey_dir / "Norder1" / "Allsky.png")
    s = open_survey(survey_dir)
    allsky = s.read_allsky(1)
    assert allsky.shape == (n, 1, w, w) and not allsky.flags.writeable
    np.testing.assert_array_equal(allsky[:, 0], tiles)
    with pytest.raises(InvalidInputError):
        s.read_allsky(5)


def test_colour_survey_png(tmp_path: Path):
    root = tmp_path / "colour"
    root.mkdir()
    (root / "properties").write_text(
        "obs_title = Colour test\nhips_order = 2\nhips_frame = equatorial\nhips_tile_width = 8\n"
        "hips_tile_format = png\ndataproduct_subtype = color\n"
    )
    rgb = np.zeros((W, W, 3), np.uint8)
    rgb[..., 0] = 10
    rgb[..., 1] = np.arange(W)[:, None]
    rgb[..., 2] = 200
    path = root / tile_path(2, 17, "png")
    path.parent.mkdir(parents=True)
    Image.fromarray(rgb).save(path)
    s = open_survey(root)
    assert (s.name, s.channels, s.frame) == ("Colour test", 3, "icrs")
    tile = s.read_tile(2, 17)
    assert tile.shape == (3, W, W)
    np.testing.assert_array_equal(tile[1, :, 0], np.arange(W)[::-1])


def test_grey_survey_with_rgba_png_tiles_gives_one_channel(tmp_path: Path):
    root = tmp_path / "grey"
    root.mkdir()
    (root / "properties").write_text(
        "hips_order = 2\nhips_frame = galactic\nhips_tile_width = 8\nhips_tile_format = png\n"
    )
    grey = (np.arange(W * W) % 200).reshape(W, W).astype(np.uint8)
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=2)
    rgba[0, 0, 3] = 0
    path = root / tile_path(2, 1, "png")
    path.parent.mkdir(parents=True)
    Image.fromarray(rgba, "RGBA").save(path)
    s = open_survey(root)
    assert s.name == "grey"
    tile = s.read_tile(2, 1)
    assert tile.shape == (1, W, W)
    assert np.isnan(tile[0, W - 1, 0])
    np.testing.assert_array_equal(tile[0, : W - 1], grey[::-1][: W - 1])


def test_http_survey_reads_concurrently_and_uses_the_moc(survey_dir: Path, hips_server, tmp_path: Path):
    write_moc(survey_dir, [4 * 4**1 + 1])  # order-1 cell 1 = order-3 tiles 16..31
    for npix in range(16, 24):
        write_tile(survey_dir, 3, npix)
    server = hips_server(survey_dir)
    s = open_survey(server.url, cache_dir=False, backoff=0.01)
    assert isinstance(s.moc, Moc) and s.location.startswith("http://127.0.0.1")
    out = s.read_tiles(3, list(range(16, 26)) + [5])
    for npix in range(16, 24):
        np.testing.assert_array_equal(out[npix - 16][0], tile_values(3, npix))
    assert out[8] is None and out[9] is None and out[10] is None  # 24, 25 absent (404); 5 outside the MOC
    assert server.count("Norder3/Dir0/Npix5.fits") == 0
    assert server.count("Norder3/Dir0/Npix24.fits") == 1
    assert s.stats["tile_reads"] == 8 and s.stats["absent"] == 2 and s.stats["moc_skips"] == 1
    s.read_tiles(3, [16, 17])
    assert server.count("Norder3/Dir0/Npix16.fits") == 1


def test_http_survey_without_moc_or_properties(tmp_path: Path, survey_dir: Path, hips_server):
    s = open_survey(hips_server(survey_dir).url, cache_dir=False, backoff=0.01)
    assert s.moc is None
    np.testing.assert_array_equal(s.read_tile(3, 6)[0], tile_values(3, 6))
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(SurveyNotFoundError, match="127.0.0.1"):
        open_survey(hips_server(empty).url, cache_dir=False, backoff=0.01)


def test_moc_geometry():
    moc = Moc.from_uniq(np.array([4 * 4**3 + 5, 4 * 4**3 + 6, 4 * 4**1 + 47]))
    assert len(moc) == 2  # 5 and 6 merge into one range
    # order 3: exact; coarser: any overlap; finer: only inside
    assert [moc.contains_tile(3, p) for p in (4, 5, 6, 7)] == [False, True, True, False]
    assert moc.contains_tile(0, 0) and moc.contains_tile(0, 11) and not moc.contains_tile(0, 5)
    assert moc.contains_tile(5, 5 * 16 + 3) and not moc.contains_tile(5, 7 * 16)
    assert all(moc.contains_tile(2, p) for p in range(188, 192))
    npix = np.arange(768)
    vec = moc.contains_tiles(3, npix)
    assert vec.tolist() == [moc.contains_tile(3, int(p)) for p in npix]
    assert vec.sum() == 2 + 16
    assert moc.sky_fraction == pytest.approx(18 / 768)


def test_moc_from_fits_range_ordering():
    col = fits.Column(name="RANGE", format="K", array=np.array([0, 4**29, 3 * 4**29, 3 * 4**29 + 1], np.int64))
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["ORDERING"] = "RANGE"
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    moc = Moc.from_fits(buf.getvalue(), source="Moc.fits")
    assert moc.contains_tile(0, 0) and not moc.contains_tile(0, 1) and moc.contains_tile(29, 3 * 4**29)
    with pytest.raises(TileDecodeError, match="bad/Moc.fits"):
        Moc.from_fits(b"not fits", source="bad/Moc.fits")


def test_survey_pickles_with_an_empty_cache(survey_dir: Path):
    import pickle

    s = open_survey(survey_dir, memory_cache_bytes=10_000)
    s.read_tile(3, 5)
    copy = pickle.loads(pickle.dumps(s))
    assert copy.stats["cache_tiles"] == 0 and copy._cache.max_bytes == 10_000
    np.testing.assert_array_equal(copy.read_tile(3, 5)[0], tile_values(3, 5))
    assert copy.stats["tile_reads"] == 2  # counters travel, the cache does not


def test_remote_survey_uses_moc_access_url(tmp_path, hips_server):
    """A remote survey with no Moc.fits beside it reads its MOC from moc_access_url, and a
    tile outside that MOC is absent without any request."""
    import shutil

    import healpy as hp

    from hipsml.sky import render_function_hips

    site = tmp_path / "site"
    site.mkdir()
    root = render_function_hips(
        site / "survey", lambda ra, dec: ra * 0 + 1.0, order=3, tile_width=16, region=(40.0, 20.0, 5.0)
    )
    (site / "mocs").mkdir()
    shutil.move(root / "Moc.fits", site / "mocs" / "Moc.fits")
    server = hips_server(site)
    props = (root / "properties").read_text()
    (root / "properties").write_text(props + f"moc_access_url = {server.url}/mocs/Moc.fits\n")
    # plant a tile file far outside the coverage: only the MOC can tell it is not part of it
    far = int(hp.ang2pix(8, 220.0, -40.0, lonlat=True, nest=True))
    inside = int(hp.ang2pix(8, 40.0, 20.0, lonlat=True, nest=True))
    src = root / f"Norder3/Dir0/Npix{inside}.fits"
    shutil.copy(src, root / f"Norder3/Dir0/Npix{far}.fits")

    survey = open_survey(f"{server.url}/survey", cache_dir=False)
    assert survey.moc is not None and survey.moc.contains_tile(3, inside)
    before = server.count()
    assert survey.read_tile(3, far) is None
    assert server.count() == before  # skipped without a request
    assert survey.read_tile(3, inside) is not None
    # a local mirror never goes online for its MOC
    local = open_survey(root)
    assert local.moc is None
