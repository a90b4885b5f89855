"""Hostile input to the tile layer (issue 7): each test builds its bad survey, file, server or
argument itself and checks for a one-line HipsmlError (or a bounded, correct result)."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from hips_server import Fault, HipsServer

from hipsml.errors import (
    FetchError,
    HipsmlError,
    InputFileError,
    InvalidInputError,
    InvalidLocationError,
    PropertiesError,
    TileDecodeError,
)
from hipsml.hips import open_survey, tile_path
from hipsml.hips._decode import decode_tile
from hipsml.hips._http import HttpTileStore, normalise_base_url

W = 8
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hips-samples"


def properties(order: int = 3, *, order_min: int | None = 3, width: int = W, extra: str = "") -> str:
    lines = [
        "creator_did = ivo://hipsml.test/hostile",
        f"hips_order = {order}",
        f"hips_tile_width = {width}",
        "hips_tile_format = fits",
        "hips_frame = equatorial",
    ]
    if order_min is not None:
        lines.append(f"hips_order_min = {order_min}")
    return "\n".join(lines) + "\n" + extra


def write_tile(root: Path, order: int, npix: int) -> np.ndarray:
    values = (np.arange(W * W, dtype=np.float32).reshape(W, W) + 100 * order + npix) % 97
    path = root / tile_path(order, npix, "fits")
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(values).writeto(path)
    return values


def write_moc(root: Path, uniq: list[int]) -> None:
    col = fits.Column(name="UNIQ", format="K", array=np.array(uniq, dtype=np.int64))
    hdu = fits.BinTableHDU.from_columns([col])
    hdu.header["ORDERING"] = "NUNIQ"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(root / "Moc.fits")


@pytest.fixture
def survey(tmp_path: Path) -> Path:
    root = tmp_path / "survey"
    root.mkdir()
    (root / "properties").write_text(properties())
    for npix in (0, 1, 5):
        write_tile(root, 3, npix)
    return root


def finishes_within(seconds: float, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a thread; fail the test if it is still running after ``seconds``.

    Returns what ``fn`` returned, or the exception it raised (as a value).
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (hangs)"
    return box["value"]


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, HipsmlError) and "\n" not in text and text
    return text


# -- 1. absurd tile width ----------------------------------------------------------------------


@pytest.mark.parametrize("width", [2**16, 2**29, 8192])
def test_absurd_tile_width_is_a_properties_error_naming_file_and_field(tmp_path: Path, width: int) -> None:
    (tmp_path / "properties").write_text(properties(0, order_min=0, width=width))
    with pytest.raises(PropertiesError) as info:
        open_survey(tmp_path)
    text = one_line(info.value)
    assert str(tmp_path / "properties") in text
    assert f"hips_tile_width = {width}" in text and "4096" in text


def test_tile_width_4096_is_still_accepted(tmp_path: Path) -> None:
    (tmp_path / "properties").write_text(properties(3, order_min=3, width=4096))
    assert open_survey(tmp_path).tile_width == 4096


# -- 2. FIFOs -----------------------------------------------------------------------------------


def test_fifo_as_properties_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "properties"
    os.mkfifo(fifo)
    try:
        result = finishes_within(5, lambda: open_survey(tmp_path))
    finally:  # unblock a reader stuck on the FIFO (today's code), so the thread can end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK) if _has_reader(fifo) else None
        if fd is not None:
            os.close(fd)
    assert isinstance(result, InputFileError)
    text = one_line(result)
    assert str(fifo) in text and "FIFO" in text


def _has_reader(fifo: Path) -> bool:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


def test_fifo_as_a_tile_is_refused_at_once(survey: Path) -> None:
    fifo = survey / tile_path(3, 7, "fits")
    os.mkfifo(fifo)
    s = open_survey(survey)
    try:
        result = finishes_within(5, lambda: s.read_tile(3, 7))
    finally:
        _has_reader(fifo)
    assert isinstance(result, InputFileError)
    text = one_line(result)
    assert str(fifo) in text and "not a regular file" in text
    np.testing.assert_array_equal(s.read_tile(3, 5)[0], (np.arange(W * W).reshape(W, W) + 305) % 97)


# -- 3. unbounded local reads -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["properties", "tile"])
def test_symlink_to_dev_zero_is_refused(survey: Path, name: str) -> None:
    target = survey / "properties" if name == "properties" else survey / tile_path(3, 9, "fits")
    target.unlink(missing_ok=True)
    target.symlink_to("/dev/zero")
    if name == "properties":
        result = finishes_within(5, lambda: open_survey(survey))
    else:
        s = open_survey(survey)
        result = finishes_within(5, lambda: s.read_tile(3, 9))
    assert isinstance(result, InputFileError)
    assert "character device" in one_line(result) and str(target) in str(result)


def test_moc_symlinked_to_dev_zero_is_ignored_with_a_warning(survey: Path, caplog: pytest.LogCaptureFixture) -> None:
    (survey / "Moc.fits").symlink_to("/dev/zero")
    with caplog.at_level(logging.WARNING, logger="hipsml.hips"):
        s = finishes_within(5, lambda: open_survey(survey))
    assert not isinstance(s, BaseException), s
    assert s.moc is None
    assert any("Moc.fits" in r.getMessage() and "not a regular file" in r.getMessage() for r in caplog.records)


def test_oversized_local_files_are_refused_before_reading(survey: Path) -> None:
    # sparse files: nothing is written to disk, but their size is over the limits
    with open(survey / "properties", "r+b") as fh:
        fh.truncate((1 << 20) + 1)
    with pytest.raises(InputFileError, match=r"1048577 bytes is more than the 1048576 bytes accepted for a properties"):
        open_survey(survey)
    (survey / "properties").write_text(properties())
    big = survey / tile_path(3, 11, "fits")
    with open(big, "wb") as fh:
        fh.truncate((1 << 30) + 1)
    s = open_survey(survey)
    tracemalloc.start()
    try:
        with pytest.raises(InputFileError, match="bytes is more than the 1073741824 bytes"):
            s.read_tile(3, 11)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# -- 4. gzip bombs ------------------------------------------------------------------------------


def fits_header(naxis1: int, naxis2: int, bitpix: int = -32) -> bytes:
    cards = [
        "SIMPLE  =                    T",
        f"BITPIX  = {bitpix:>20}",
        "NAXIS   =                    2",
        f"NAXIS1  = {naxis1:>20}",
        f"NAXIS2  = {naxis2:>20}",
        "END",
    ]
    text = "".join(c.ljust(80) for c in cards)
    return text.ljust(2880).encode("ascii")


def write_gzip_bomb(path: Path, header: bytes, inflated: int) -> int:
    """Write gzip(header + ``inflated`` zero bytes) incrementally; return the compressed size."""
    block = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(header)
        for _ in range(inflated // len(block)):
            fh.write(block)
    return path.stat().st_size


@pytest.mark.parametrize("claimed", [(W, W), (65536, 65536)])
def test_gzip_bomb_tile_inflates_only_what_its_header_and_width_allow(survey: Path, claimed: tuple[int, int]) -> None:
    path = survey / tile_path(3, 20, "fits")
    size = write_gzip_bomb(path, fits_header(*claimed), 64 << 20)
    assert size < 1 << 20  # 64 MiB of zeros in well under 1 MiB on disk
    s = open_survey(survey)
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(TileDecodeError, match="inflates to more than") as info:
            s.read_tile(3, 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in one_line(info.value)
    assert peak < 8 << 20, f"peak {peak} bytes"
    assert time.monotonic() - start < 20.0  # inflating 64 MiB and more would take far longer


def test_gzip_bomb_without_a_known_width_is_bounded_by_its_header(tmp_path: Path) -> None:
    path = tmp_path / "allsky.fits.gz"
    write_gzip_bomb(path, fits_header(64, 64), 64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(TileDecodeError, match=r"more than 20160 bytes"):  # 2880 + 64*64*4 padded to 2880
            decode_tile(path.read_bytes(), "fits", source=str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_honest_gzip_fits_tile_still_decodes(tmp_path: Path) -> None:
    values = np.arange(W * W, dtype=np.float32).reshape(W, W)
    raw = fits_header(W, W) + values.astype(">f4").tobytes()
    raw += bytes(-len(raw) % 2880)
    tile = decode_tile(gzip.compress(raw), "fits", source="t", width=W)
    np.testing.assert_array_equal(tile[0], values)
    # a stream cut short is corrupt, not a hang
    with pytest.raises(TileDecodeError, match="truncated"):
        decode_tile(gzip.compress(raw)[:-30], "fits", source="t", width=W)


def png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR is rewritten (with a valid CRC) to claim ``width`` x ``height``."""
    import io
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), fields (13), CRC (4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21])))
    return bytes(data)


def test_image_tiles_claiming_huge_sizes_are_refused_before_decoding() -> None:
    bomb = png_claiming(12000, 12000)  # under Pillow's own refusal (179 M pixels), over 4096^2
    tracemalloc.start()
    try:
        with pytest.raises(TileDecodeError, match="declares tiles 8x8"):
            decode_tile(bomb, "png", source="t.png", width=W)
        with pytest.raises(TileDecodeError, match="larger than any HiPS tile or Allsky"):
            decode_tile(bomb, "png", source="Allsky.png")
        # an uncompressed FITS header claiming 2^32 pixels: refused before any copy
        with pytest.raises(TileDecodeError, match="65536x65536 pixels is larger than a tile of this survey"):
            decode_tile(fits_header(65536, 65536, bitpix=8) + bytes(2880), "fits", source="t.fits", width=W)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_gzip_bomb_over_http_is_fetched_twice_not_six_times(
    survey: Path, hips_server: Callable[..., HipsServer], tmp_path: Path
) -> None:
    write_gzip_bomb(survey / tile_path(3, 21, "fits"), fits_header(W, W), 64 << 20)
    server = hips_server(survey)
    s = open_survey(server.url, cache_dir=tmp_path / "cache", retries=5, backoff=0.001)
    with pytest.raises(TileDecodeError, match="same corrupt body twice"):
        s.read_tile(3, 21)
    assert server.count("Norder3/Dir0/Npix21.fits") == 2
    assert not list((tmp_path / "cache").rglob("Npix21*"))


# -- 5. slow servers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [Fault.drip(0.02), Fault.drip_head(0.02)], ids=["body", "headers"]
)  # ~2880 bytes of body at a byte per 20 ms: about a minute; ~2 kB of headers: about 40 s
def test_slow_loris_is_cut_at_the_request_deadline(
    survey: Path, hips_server: Callable[..., HipsServer], fault: Fault
) -> None:
    relpath = tile_path(3, 5, "fits")
    server = hips_server(survey, faults={relpath: [fault]})
    s = open_survey(server.url, cache_dir=False, retries=3, backoff=0.001, deadline=0.5, timeout=(2.0, 2.0))
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        s.read_tile(3, 5)
    elapsed = time.monotonic() - start
    text = one_line(info.value)
    assert "deadline of 0.5 s" in text and relpath in text
    assert 0.4 < elapsed < 15.0  # the drip takes 40-60 s: it was cut at the 0.5 s deadline
    assert server.count(relpath) == 1  # a slow loris is not asked again
    np.testing.assert_array_equal(s.read_tile(3, 0)[0], (np.arange(W * W).reshape(W, W) + 300) % 97)


def test_a_server_that_never_answers_is_given_up_after_max_total_time(
    survey: Path, hips_server: Callable[..., HipsServer]
) -> None:
    relpath = tile_path(3, 5, "fits")
    server = hips_server(survey)
    server.inject(relpath, then=Fault.slow(30))
    s = open_survey(server.url, cache_dir=False, retries=20, backoff=0.001, timeout=(1.0, 0.3), max_total_time=1.0)
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        s.read_tile(3, 5)
    elapsed = time.monotonic() - start
    text = one_line(info.value)
    assert "max_total_time=1 s" in text and relpath in text
    assert 0.9 < elapsed < 5.0  # 21 attempts of 0.3 s would take 6.3 s
    assert 2 <= server.count(relpath) <= 5


# -- 6. malformed URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[::1/x", "https://[::1", "http://[nothost]/"])
def test_malformed_ipv6_location_is_an_invalid_location_error(url: str) -> None:
    with pytest.raises(InvalidLocationError) as info:
        open_survey(url)
    assert url in one_line(info.value)
    with pytest.raises(InvalidLocationError):
        normalise_base_url(url)


def test_malformed_redirect_location_is_a_fetch_error(survey: Path, hips_server: Callable[..., HipsServer]) -> None:
    server = hips_server(survey, faults={"properties": [Fault.redirect("http://[::1/x")]})
    with pytest.raises(FetchError) as info:
        open_survey(server.url, cache_dir=False, retries=3, backoff=0.001)
    assert "Invalid IPv6 URL" in one_line(info.value) and server.url in str(info.value)
    assert server.count("properties") == 1


# -- 8. ~unknownuser -----------------------------------------------------------------------------


def test_unknown_user_in_a_location_is_a_one_line_error() -> None:
    with pytest.raises(InvalidInputError) as info:
        open_survey("~hipsml-no-such-user/hips/DSS")
    assert "no user named 'hipsml-no-such-user'" in one_line(info.value)


def test_unknown_user_in_hipsml_cache_dir_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPSML_CACHE_DIR", "~hipsml-no-such-user/cache")
    with pytest.raises(InvalidInputError) as info:
        open_survey("http://127.0.0.1:9/hips")
    text = one_line(info.value)
    assert "HIPSML_CACHE_DIR" in text and "hipsml-no-such-user" in text


# -- 11. verify= wins over REQUESTS_CA_BUNDLE ----------------------------------------------------


def make_self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_explicit_verify_bundle_wins_over_requests_ca_bundle(
    survey: Path, hips_server: Callable[..., HipsServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, key = make_self_signed(tmp_path, "server")
    other, _ = make_self_signed(tmp_path, "other")
    server = hips_server(survey, tls=(good, key))
    assert server.url.startswith("https://127.0.0.1:")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))  # a real CA bundle, for another server
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other))
    # the environment applies when no bundle is given ...
    with pytest.raises(FetchError, match="TLS error"):
        open_survey(server.url, cache_dir=False, retries=0)
    # ... but an explicit verify= is what the TLS error tells the user to pass, and it must work
    s = open_survey(server.url, cache_dir=False, retries=0, verify=str(good))
    np.testing.assert_array_equal(s.read_tile(3, 1)[0], (np.arange(W * W).reshape(W, W) + 301) % 97)


# -- 12. builtin exceptions from bad arguments --------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.read_tile("abc", 0),
        lambda s: s.read_tile(None, 0),
        lambda s: s.read_tile(3, "x"),
        lambda s: s.read_tile(3, 1.5),
        lambda s: s.read_tile(3, 0, format=3),
        lambda s: s.read_tiles(3, [[1, 2], [3]]),
        lambda s: s.read_tiles(3, ["a", "b"]),
        lambda s: s.read_tiles(3, 5),
        lambda s: s.read_allsky("x"),
    ],
    ids=[
        "order-text",
        "order-none",
        "npix-text",
        "npix-fraction",
        "format-int",
        "ragged",
        "npix-texts",
        "not-a-sequence",
        "allsky-text",
    ],
)
def test_bad_read_arguments_are_invalid_input_errors(survey: Path, call: Callable[[Any], Any]) -> None:
    s = open_survey(survey)
    with pytest.raises(InvalidInputError) as info:
        call(s)
    one_line(info.value)


def test_numpy_and_integral_arguments_still_work(survey: Path) -> None:
    s = open_survey(survey)
    a = s.read_tile(np.int64(3), np.int32(5))
    assert a is not None and s.read_tile(3.0, 5.0) is a
    assert s.read_tiles(3, np.array([5, 0]))[0] is a


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"retries": "abc"}, "retries"),
        ({"timeout": "abc"}, "timeout"),
        ({"timeout": (1.0, "x")}, "timeout"),
        ({"backoff": None}, "backoff"),
        ({"max_backoff": float("nan")}, "max_backoff"),
        ({"deadline": 0}, "deadline"),
        ({"cache_dir": 123}, "cache_dir"),
        ({"memory_cache_bytes": "lots"}, "memory_cache_bytes"),
        ({"verify": 3.5}, "verify"),
    ],
)
@pytest.mark.parametrize("remote", [False, True])
def test_ill_typed_options_are_invalid_input_errors(
    survey: Path, options: dict[str, Any], field: str, remote: bool
) -> None:
    with pytest.raises(InvalidInputError) as info:
        open_survey("http://127.0.0.1:9/hips" if remote else survey, **options)
    assert field in one_line(info.value)


@pytest.mark.parametrize("remote", [False, True])
def test_misspelled_option_is_refused_with_a_suggestion(survey: Path, remote: bool) -> None:
    location = "http://127.0.0.1:9/hips" if remote else survey
    with pytest.raises(InvalidInputError, match="unknown option 'retrys'.*did you mean 'retries'") as info:
        open_survey(location, retrys=3)
    one_line(info.value)


# -- 13. orders that hold tiles -----------------------------------------------------------------


def test_local_survey_orders_come_from_the_norder_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "partial"
    root.mkdir()
    (root / "properties").write_text(properties(5, order_min=None))
    write_tile(root, 3, 0)
    write_tile(root, 4, 1)
    (root / "Norder1").mkdir()  # an empty order folder holds no tiles
    with caplog.at_level(logging.INFO, logger="hipsml.hips"):
        s = open_survey(root)
    assert (s.order_min, s.order, s.orders, s.declared_orders) == (3, 4, (3, 4), (0, 5))
    assert any("declares orders 0..5 but only orders 3, 4 hold tiles" in r.getMessage() for r in caplog.records)
    assert "3..4 (holding tiles; the properties say 0..5)" in s.summary()
    assert s.read_tile(5, 0) is None  # a declared order stays readable: it just holds nothing
    assert s.read_tile(3, 0) is not None


def test_missing_order_min_is_found_and_logged_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "nomin"
    root.mkdir()
    (root / "properties").write_text(properties(3, order_min=None))
    write_tile(root, 2, 0)
    write_tile(root, 3, 0)
    with caplog.at_level(logging.INFO, logger="hipsml.hips"):
        s = open_survey(root)
    assert (s.order_min, s.order, s.orders) == (2, 3, (2, 3))
    record = next(r for r in caplog.records if "no hips_order_min" in r.getMessage())
    assert record.levelno == logging.INFO


def test_declared_orders_are_kept_when_every_folder_is_present(survey: Path) -> None:
    (survey / "properties").write_text(properties(3, order_min=2))
    write_tile(survey, 2, 0)
    s = open_survey(survey)
    assert (s.order_min, s.order, s.orders) == (2, 3, (2, 3))


@pytest.mark.skipif(not (SAMPLES / "AKARI-FIS").is_dir(), reason="real HiPS samples not present")
def test_akari_sample_orders_are_truthful() -> None:
    s = open_survey(SAMPLES / "AKARI-FIS")
    assert s.declared_orders == (0, 5)
    assert (s.order_min, s.order, s.orders) == (3, 3, (3,))
    assert s.read_tile(3, 450) is not None


def test_remote_survey_without_order_min_is_probed(tmp_path: Path, hips_server: Callable[..., HipsServer]) -> None:
    root = tmp_path / "remote"
    root.mkdir()
    (root / "properties").write_text(properties(5, order_min=None))
    write_moc(root, [4 * 4**1 + 1])  # order-1 cell 1: order-3 tiles 16..31
    for npix in range(16, 20):
        write_tile(root, 3, npix)
    server = hips_server(root)
    s = open_survey(server.url, cache_dir=False, backoff=0.001)
    assert (s.order_min, s.order, s.orders, s.declared_orders) == (3, 3, (3,), (0, 5))
    probed = {r.path for r in server.log if r.path.startswith("Norder")}
    # one tile per order: orders 0, 1, 2, 3 upward, then 5, 4 downward (3 is in memory)
    assert probed == {
        "Norder0/Dir0/Npix0.fits",
        "Norder1/Dir0/Npix1.fits",
        "Norder2/Dir0/Npix4.fits",
        "Norder3/Dir0/Npix16.fits",
        "Norder5/Dir0/Npix256.fits",
        "Norder4/Dir0/Npix64.fits",
    }
    assert server.count() == len(probed) + 2  # + properties and Moc.fits
    np.testing.assert_array_equal(s.read_tile(3, 16)[0], (np.arange(W * W).reshape(W, W) + 316) % 97)


def test_remote_survey_with_declared_orders_and_no_moc_is_not_probed(
    survey: Path, hips_server: Callable[..., HipsServer]
) -> None:
    server = hips_server(survey)
    s = open_survey(server.url, cache_dir=False)
    assert (s.order_min, s.order, s.orders) == (3, 3, None)
    assert server.count() == 2  # properties and Moc.fits (absent)


# -- policy: moc_access_url on another host, DNS failures, close() --------------------------------


def test_moc_access_url_on_another_host_is_not_followed_unless_allowed(
    survey: Path, hips_server: Callable[..., HipsServer], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_moc(elsewhere, [4 * 4**3 + 5])
    other = hips_server(elsewhere)
    with open(survey / "properties", "a") as fh:
        fh.write(f"moc_access_url = {other.url}/Moc.fits\n")
    server = hips_server(survey)
    s = open_survey(server.url, cache_dir=False, backoff=0.001)
    assert s.moc is None and other.count("Moc.fits") == 0
    allowed = open_survey(server.url, cache_dir=False, backoff=0.001, moc_any_host=True)
    assert other.count("Moc.fits") == 1
    assert allowed.moc is not None and allowed.moc.contains_tile(3, 5) and not allowed.moc.contains_tile(3, 0)
    assert allowed.read_tile(3, 0) is None and server.count("Norder3/Dir0/Npix0.fits") == 0


def test_moc_access_url_on_the_same_host_is_followed(
    survey: Path, hips_server: Callable[..., HipsServer], tmp_path: Path
) -> None:
    site = tmp_path / "site"
    shutil.move(survey, site / "survey")
    (site / "mocs").mkdir()
    write_moc(site / "mocs", [4 * 4**3 + 5])
    server = hips_server(site)
    with open(site / "survey" / "properties", "a") as fh:
        fh.write(f"moc_access_url = {server.url}/mocs/Moc.fits\n")
    s = open_survey(f"{server.url}/survey", cache_dir=False, backoff=0.001)
    assert s.moc is not None and s.moc.contains_tile(3, 5)
    assert server.count("mocs/Moc.fits") == 1


def test_dns_failure_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    with HttpTileStore("http://hipsml-test.invalid", cache_dir=False, retries=5, backoff=0.5) as store:
        with caplog.at_level(logging.DEBUG, logger="hipsml.hips._http"):
            start = time.monotonic()
            with pytest.raises(FetchError) as info:
                store.fetch("properties", lambda b: b)
    assert "cannot resolve the host 'hipsml-test.invalid'" in one_line(info.value)
    attempts = [r for r in caplog.records if r.getMessage().startswith("GET http://hipsml-test.invalid")]
    assert len(attempts) == 1
    assert time.monotonic() - start < 5.0


def test_survey_is_a_context_manager_that_closes_its_session(
    survey: Path, hips_server: Callable[..., HipsServer]
) -> None:
    server = hips_server(survey)
    with open_survey(server.url, cache_dir=False) as s:
        first = s.read_tile(3, 0)
        assert first is not None
    assert s.read_tile(3, 0) is first  # the memory cache still answers
    with pytest.raises(FetchError, match="closed"):
        s.read_tile(3, 1)
    with open_survey(survey) as local:
        assert local.read_tile(3, 1) is not None
    local.close()  # closing twice is harmless
