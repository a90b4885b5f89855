"""Hostile arguments and output paths for the cutout writers, the geometry, the sky renderer and the CLI.

Each test builds its hostile input itself (an over-long name, an unknown user, a path
through a regular file, ``/sys``, a full file system on a tiny tmpfs, absurd angles) and
checks the one-line error, the exit code 2 of the command, and that nothing half-written
is left behind.
"""

from __future__ import annotations

import pwd
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import hipsml
from hipsml.cli import main
from hipsml.errors import InvalidInputError, OutputError
from hipsml.extract import cutout_wcs, cutouts, write_cutout, write_cutout_png
from hipsml.extract._geometry import (
    check_field_of_view,
    check_rotation,
    check_sky_position,
    pixel_grid_vectors,
)
from hipsml.sky import make_sky, render_function_hips

LONG = "x" * 300  # longer than any file system's 255-byte name limit


def unknown_user() -> str:
    """A user name that does not exist on this machine."""
    name = f"hipsml-nouser-{secrets.token_hex(4)}"
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    return name


@pytest.fixture(scope="module")
def survey_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small all-sky survey holding its declination."""
    root = tmp_path_factory.mktemp("hostile")
    return render_function_hips(root / "dec", lambda ra, dec: dec + 0.0 * ra, order=2, tile_width=16)


@pytest.fixture(scope="module")
def result(survey_root: Path) -> hipsml.CutoutResult:
    return cutouts(hipsml.open_survey(survey_root), ([10.0], [10.0]), size=8, pixel_scale=600.0)


def run_fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a failing command in-process; assert exit code 2 and one stderr line; return it."""
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hipsml: error: ") and "Traceback" not in err
    return lines[0]


def listing(folder: Path) -> list[str]:
    """Every path under ``folder``, hidden ones (``.part`` files) included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, to fill up; skipped where mounting is not permitted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> None:
    """Fill the file system holding ``folder`` with one file."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        with pytest.raises(OSError):
            while True:
                fh.write(b"\0" * 4096)


# ---------------------------------------------------------------- geometry (defects 10, 12)


@pytest.mark.parametrize(
    "kwargs,culprit",
    [
        ({"pixel_scale": 0}, "pixel_scale"),
        ({"pixel_scale": -1.0}, "pixel_scale"),
        ({"pixel_scale": float("nan")}, "pixel_scale"),
        ({"dec": 100.0}, "dec 100.0"),
        ({"dec": float("nan")}, "dec nan"),
        ({"ra": float("nan")}, "ra nan"),
        ({"ra": float("inf")}, "ra inf"),
        ({"ra": 1e308}, "ra 1e+308"),
        ({"size": -1}, "size"),
        ({"size": 8.5}, "size"),
        ({"ra": 10 + 2j}, "complex"),
        ({"dec": np.complex128(3 + 0j)}, "complex"),
        ({"rotation": 1e300}, "rotation 1e+300"),
        ({"rotation": float("nan")}, "rotation nan"),
        ({"rotation": 1j}, "complex"),
        ({"ra": "ten"}, "ra"),
        ({"pixel_scale": 1e7}, "field of view"),
        ({"pixel_scale": 9000.0, "projection": "SIN"}, "hemisphere"),
        ({"projection": 3}, "projection"),
    ],
)
def test_cutout_wcs_rejects_bad_arguments(kwargs: dict, culprit: str) -> None:
    args = {"ra": 10.0, "dec": 20.0, "size": 64, "pixel_scale": 1.0, **kwargs}
    with pytest.raises(InvalidInputError) as info:
        cutout_wcs(args.pop("ra"), args.pop("dec"), **args)
    assert culprit in str(info.value) and "\n" not in str(info.value)


def test_cutout_wcs_still_takes_good_arguments() -> None:
    """The edges of the valid ranges are kept: the poles, |ra| up to 1e6, a field just under 180 deg."""
    w = cutout_wcs(-720.0, -90.0, size=64, pixel_scale=10_000.0, rotation=-1e6)
    assert list(w.wcs.crval) == [0.0, -90.0]
    assert check_field_of_view(64, 179.99 * 3600 / 64) == pytest.approx(179.99)
    assert float(check_sky_position(1e6, 90.0)[0]) == 1e6


def test_field_of_view_is_refused_for_any_projection() -> None:
    for proj in ("TAN", "SIN"):
        with pytest.raises(InvalidInputError, match=r"field of view \(180 deg.*smaller than 180 deg"):
            check_field_of_view(36, 18_000.0, proj)
    with pytest.raises(InvalidInputError, match="size"):
        check_field_of_view(0, 1.0)


def test_sin_limit_is_where_the_pixel_centres_leave_the_hemisphere() -> None:
    """Independent of the check: a SIN pixel centre at plane radius r > 1 has no sphere point."""
    size = 64
    for scale in (3000.0, 4600.0, 4700.0, 6000.0):  # the limit is near 4630 arcsec
        half = (size - 1) / 2 * np.radians(scale / 3600.0)
        reachable = 2 * half**2 <= 1.0  # the corner pixel centres
        if reachable:
            grid = pixel_grid_vectors(size, scale, "SIN")
            assert np.allclose(np.linalg.norm(grid, axis=1), 1.0)
        else:
            with pytest.raises(InvalidInputError, match="hemisphere"):
                check_field_of_view(size, scale, "SIN")
            with pytest.raises(InvalidInputError, match="hemisphere"):
                pixel_grid_vectors(size, scale, "SIN")


def test_position_and_rotation_checks_name_the_target() -> None:
    with pytest.raises(InvalidInputError, match=r"target 2: dec 91\.0"):
        check_sky_position([1.0, 2.0, 3.0], [0.0, 0.0, 91.0])
    with pytest.raises(InvalidInputError, match=r"target 1: rotation inf"):
        check_rotation(np.array([0.0, np.inf]))
    with pytest.raises(InvalidInputError, match="complex"):
        check_sky_position(np.array([1.0 + 1.0j]), np.array([0.0]))
    ra, dec = check_sky_position([1.0, -400.0], [89.0, -90.0])
    assert ra.tolist() == [1.0, -400.0] and dec.tolist() == [89.0, -90.0]


def test_cutouts_gives_the_real_reason_for_a_huge_sin_field(survey_root: Path) -> None:
    with pytest.raises(InvalidInputError, match="field of view"):
        cutouts(hipsml.open_survey(survey_root), ([10.0], [10.0]), size=64, pixel_scale=1e7, projection="SIN")


# ---------------------------------------------------------------- writers (defects 7, 12)


@pytest.mark.parametrize("bad", [None, 123, "cut\x00out.fits", b"cutout.fits"])
def test_write_cutout_refuses_what_is_not_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result: hipsml.CutoutResult, bad: object
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputError) as info:
        write_cutout(bad, result)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert listing(tmp_path) == []


def test_write_cutout_refuses_an_unknown_user(tmp_path: Path, result: hipsml.CutoutResult) -> None:
    user = unknown_user()
    with pytest.raises(InvalidInputError, match=user):
        write_cutout(f"~{user}/m31.fits", result)


@pytest.mark.parametrize(
    "options,culprit",
    [
        ({"percentiles": (200, 300)}, "percentiles"),
        ({"percentiles": (50, 50)}, "percentiles"),
        ({"percentiles": (1, 2, 3)}, "percentiles"),
        ({"percentiles": "lo-hi"}, "percentiles"),
        ({"softening": 0}, "softening"),
        ({"softening": 1j}, "softening"),
        ({"stretch": "log"}, "stretch"),
    ],
)
def test_write_cutout_png_refuses_bad_options(
    tmp_path: Path, result: hipsml.CutoutResult, options: dict, culprit: str
) -> None:
    with pytest.raises(InvalidInputError, match=culprit):
        write_cutout_png(tmp_path / "c.png", result, **options)
    assert listing(tmp_path) == []


def test_write_cutout_refuses_options_its_format_does_not_take(tmp_path: Path, result: hipsml.CutoutResult) -> None:
    with pytest.raises(InvalidInputError, match="stretch"):
        write_cutout(tmp_path / "c.fits", result, stretch="linear")
    with pytest.raises(InvalidInputError, match=r"index 1 is out of range"):
        write_cutout(tmp_path / "c.npy", result, 1)
    with pytest.raises(InvalidInputError, match="CutoutResult"):
        write_cutout(tmp_path / "c.npy", None)  # type: ignore[arg-type]
    assert listing(tmp_path) == []


@pytest.mark.parametrize("suffix", [".fits", ".png", ".npy"])
def test_write_cutout_overlong_name_is_an_output_error(
    tmp_path: Path, result: hipsml.CutoutResult, suffix: str
) -> None:
    with pytest.raises(OutputError, match="longer than|too long"):
        write_cutout(tmp_path / (LONG + suffix), result)
    assert listing(tmp_path) == []


def test_write_cutout_on_a_full_disk_leaves_nothing(tiny_disk: Path, result: hipsml.CutoutResult) -> None:
    fill(tiny_disk)
    with pytest.raises(OutputError, match="No space left"):
        write_cutout(tiny_disk / "c.fits", result)
    assert listing(tiny_disk) == ["filler"]


# ---------------------------------------------------------------- the cutout command (7, 8, 10)


def test_cli_cutout_checks_an_overlong_out_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the survey does not exist: had the output been checked after the work, the error would name the survey
    out = tmp_path / (LONG + ".fits")
    msg = run_fails(["cutout", "--hips", str(tmp_path / "no-survey"), "--ra", "10", "--dec", "10", "--out", str(out)],
                    capsys)  # fmt: skip
    assert "x" * 40 in msg and ("longer than" in msg or "too long" in msg)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("where", ["--hips", "--out"])
def test_cli_cutout_unknown_user(
    survey_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    user = unknown_user()
    paths = {"--hips": str(survey_root), "--out": str(tmp_path / "c.fits"), where: f"~{user}/x.fits"}
    msg = run_fails(["cutout", "--hips", paths["--hips"], "--ra", "10", "--dec", "10", "--out", paths["--out"]], capsys)
    assert f"~{user}" in msg and where in msg


@pytest.mark.parametrize(
    "extra,culprit",
    [
        (["--scale", "1e7", "--projection", "SIN"], "field of view (177778 deg"),
        (["--scale", "1e7"], "field of view (177778 deg"),
        (["--fov", "648000"], "field of view (180 deg"),
        (["--ra", "1e308"], "ra 1e+308"),
        (["--ra", "nan"], "ra nan"),
        (["--dec", "-91"], "dec -91.0"),
        (["--rotation", "1e300"], "rotation 1e+300"),
        (["--rotation", "inf"], "rotation inf"),
    ],
)
def test_cli_cutout_absurd_geometry(
    survey_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], culprit: str
) -> None:
    argv = ["cutout", "--hips", str(survey_root), "--ra", "10", "--dec", "10", "--out", str(tmp_path / "c.fits")]
    msg = run_fails(argv + extra, capsys)
    assert culprit in msg and "memory" not in msg
    assert listing(tmp_path) == []


def test_cli_cutout_into_a_file_or_sys(survey_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["cutout", "--hips", str(survey_root), "--ra", "10", "--dec", "10", "--out"]
    assert "is a file, not a folder" in run_fails(argv + [str(blocker / "c.fits")], capsys)
    if Path("/sys/kernel").is_dir():
        assert "/sys/hipsml-test.fits" in run_fails(argv + ["/sys/hipsml-test.fits"], capsys)
        assert not Path("/sys/hipsml-test.fits").exists()


def test_cli_cutout_on_a_full_disk(survey_root: Path, tiny_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tiny_disk)
    argv = ["cutout", "--hips", str(survey_root), "--ra", "10", "--dec", "10", "--out", str(tiny_disk / "c.fits")]
    assert "No space left" in run_fails(argv, capsys)
    assert listing(tiny_disk) == ["filler"]


# ---------------------------------------------------------------- sky make (7, 8, 9)

# about 14 s to render on 2 cores: a refusal before rendering is told apart by the time it takes
SKY = ["-q", "sky", "make", "--sources", "100000", "--order", "6", "--tile-width", "64", "--radius", "3"]


def test_cli_sky_make_overlong_name_fails_before_rendering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # rendering this sky takes many seconds; the check takes none
    for name in (LONG, "y" * 250):  # too long itself, or once the staging suffix is added
        t0 = time.perf_counter()
        msg = run_fails(SKY + [str(tmp_path / name)], capsys)
        assert time.perf_counter() - t0 < 8.0  # refused before rendering (about 14 s on 2 cores)
        assert name[:40] in msg and ("longer than" in msg or "no room" in msg)
    assert listing(tmp_path) == []


def test_cli_sky_make_unknown_user(capsys: pytest.CaptureFixture[str]) -> None:
    user = unknown_user()
    msg = run_fails(SKY + [f"~{user}/sky"], capsys)
    assert f"~{user}" in msg


def test_sky_make_under_a_file_and_into_sys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    msg = run_fails(SKY + [str(blocker / "sky")], capsys)
    assert str(blocker) in msg and "not a folder" in msg
    with pytest.raises(OutputError, match="not a folder"):
        render_function_hips(blocker / "s", lambda ra, dec: ra, order=0, tile_width=8)
    if Path("/sys/kernel").is_dir():
        t0 = time.perf_counter()
        msg = run_fails(SKY + ["/sys/hipsml-sky"], capsys)
        assert "/sys/hipsml-sky" in msg and time.perf_counter() - t0 < 8.0
        assert not list(Path("/sys").glob("hipsml-sky*")) and not list(Path("/sys").glob(".hipsml-probe*"))


def test_sky_make_on_a_full_disk_leaves_nothing(tiny_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--sources", "20", "--order", "3", "--tile-width", "64", "--radius", "2"]
    msg = run_fails(["-q", "sky", "make", str(tiny_disk / "sky")] + small, capsys)
    assert "No space left" in msg and str(tiny_disk / "sky") in msg
    assert listing(tiny_disk) == []  # the staging folder is gone
    with pytest.raises(OutputError, match="No space left"):
        make_sky(tiny_disk / "sky", n_sources=20, order=3, tile_width=64, radius=2.0, bands=["r"], workers=1)
    assert listing(tiny_disk) == []


# ---------------------------------------------------------------- demo (7, 8)


def test_cli_demo_bad_folders_fail_before_rendering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    user = unknown_user()
    for folder, culprit in [
        (str(tmp_path / LONG), "x" * 40),
        (f"~{user}/demo", f"~{user}"),
        (str(blocker), "not a folder"),
    ]:
        t0 = time.perf_counter()
        msg = run_fails(["-q", "demo", folder], capsys)
        assert culprit in msg and time.perf_counter() - t0 < 20.0  # the demo sky takes far longer to render
    assert listing(tmp_path) == ["file"]


def test_cli_sky_make_absurd_centre(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for ra, dec in (("1e308", "0"), ("nan", "0"), ("0", "91")):
        msg = run_fails(SKY + [str(tmp_path / "sky"), "--ra", ra, "--dec", dec], capsys)
        assert "center must have a finite RA" in msg and ra in msg.replace("1e+308", "1e308")
    assert listing(tmp_path) == []
