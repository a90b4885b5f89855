"""The ``hipsml`` command: cutout (FITS/PNG/NPY), survey info, demo, and one-line errors.

Surveys are rendered into tmp_path with :func:`hipsml.sky.render_function_hips`, so every
pixel value is known; the command is run in-process through ``hipsml.cli.main`` and once as
a real subprocess.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from PIL import Image

import hipsml
from hipsml.cli import main
from hipsml.errors import InvalidInputError
from hipsml.extract import asinh_levels, cutout_wcs, cutouts, output_format, write_cutout
from hipsml.sky import render_function_hips

RA, DEC = 150.0, 2.0


def dec_ramp(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Increases northwards only."""
    return dec + 0.0 * ra


def ra_ramp(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Increases eastwards only (near RA 150)."""
    return ra + 0.0 * dec


def wave(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.sin(np.radians(40.0 * ra)) * np.cos(np.radians(30.0 * dec))


@pytest.fixture(scope="module")
def surveys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small rendered surveys around (150, 2): a north ramp, an east ramp and a galactic wave.

    ``dec`` covers only a 1-degree cone, so cutouts near its edge are partly uncovered.
    """
    root = tmp_path_factory.mktemp("cli-surveys")
    return {
        "dec": render_function_hips(root / "dec", dec_ramp, order=4, tile_width=64, region=(RA, DEC, 1.0)),
        "ra": render_function_hips(root / "ra", ra_ramp, order=4, tile_width=64, region=(RA, DEC, 3.0)),
        "wave": render_function_hips(
            root / "wave", wave, order=3, tile_width=64, frame="galactic", region=(RA, DEC, 3.0)
        ),  # fmt: skip
    }


def run_ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def run_fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a failing command; assert exit code 2 and a single-line message; return it."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hipsml: error: ")
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------ FITS


def test_cutout_fits_has_exact_wcs_data_and_provenance(surveys, tmp_path, capsys):
    out = tmp_path / "two.fits"
    args = ["--size", "24", "--scale", "90", "--projection", "SIN", "--rotation", "20", "--interpolation", "nearest"]
    stdout = run_ok(["cutout", "--hips", str(surveys["ra"]), "--hips", str(surveys["wave"]),
                     "--ra", str(RA), "--dec", str(DEC), *args, "--out", str(out)], capsys)  # fmt: skip
    assert "two.fits" in stdout and "2 x 24 x 24" in stdout

    opened = [hipsml.open_survey(surveys["ra"]), hipsml.open_survey(surveys["wave"])]
    ref = cutouts(opened, ([RA], [DEC]), size=24, pixel_scale=90.0, projection="SIN", rotation=20.0,
                  interpolation="nearest")  # fmt: skip
    with fits.open(out) as hdul:
        header = hdul[0].header
        data = hdul[0].data
    assert data.dtype == np.dtype(">f4") and data.shape == (2, 24, 24)
    np.testing.assert_array_equal(data, ref.images[0])

    w = cutout_wcs(RA, DEC, size=24, pixel_scale=90.0, projection="SIN", rotation=20.0)
    assert [header["CRVAL1"], header["CRVAL2"]] == pytest.approx(list(w.wcs.crval), abs=1e-12)
    assert [header["CRPIX1"], header["CRPIX2"]] == [12.5, 12.5]
    cd = np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]])
    np.testing.assert_allclose(cd, w.wcs.cd, rtol=1e-12, atol=0)
    assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---SIN", "DEC--SIN")
    assert "PC1_1" not in header and "CDELT1" not in header
    # the file's WCS puts every pixel where cutout_wcs does
    back = WCS(header)
    assert back.naxis == 3 and back.wcs.ctype[2] == "CHANNEL"  # a cube: planes numbered 1..C
    pix = np.array([[0.0, 0.0], [23.0, 0.0], [7.0, 19.0]])
    np.testing.assert_allclose(back.celestial.wcs_pix2world(pix, 0), w.wcs_pix2world(pix, 0), atol=1e-10)

    assert header["HIPSMLV"] == hipsml.__version__
    assert header["NSURVEY"] == 2
    assert header["HIPS1"] == opened[0].location and header["HIPS2"] == opened[1].location
    assert (header["HIPSORD1"], header["HIPSORD2"]) == ref.orders
    assert header["INTERP"] == "nearest" and header["PROJ"] == "SIN"
    assert header["ROTATION"] == 20.0 and header["PIXSCALE"] == 90.0
    assert (header["CHANNEL1"], header["CHANNEL2"]) == ref.channels
    written = dt.datetime.fromisoformat(header["DATE"]).replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - written).total_seconds()) < 600


def test_cutout_fits_single_channel_is_2d_with_nan_where_uncovered(surveys, tmp_path, capsys):
    out = tmp_path / "edge.FITS"
    # 8 degrees across, beside the 1-degree cone: part of the cutout has no tile
    dec = DEC + 2.0
    run_ok(["cutout", "--hips", str(surveys["dec"]), "--ra", str(RA), "--dec", str(dec), "--size", "32",
            "--fov", "28800", "--order", "4", "--out", str(out)], capsys)  # fmt: skip
    ref = cutouts(hipsml.open_survey(surveys["dec"]), ([RA], [dec]), size=32, fov=28800.0, order=4)
    data = fits.getdata(out)
    header = fits.getheader(out)
    assert data.shape == (32, 32)
    assert header["PIXSCALE"] == pytest.approx(28800.0 / 32) and header["HIPSORD1"] == 4
    assert header["NAXIS"] == 2 and header["NCHAN"] == 1 and header["WCSAXES"] == 2
    w = cutout_wcs(RA, dec, size=32, pixel_scale=28800.0 / 32)
    corner = [[0.0, 31.0]]
    np.testing.assert_allclose(WCS(header).wcs_pix2world(corner, 0), w.wcs_pix2world(corner, 0), atol=1e-10)
    uncovered = ~ref.mask[0, 0]
    assert 0 < uncovered.sum() < uncovered.size
    assert np.isnan(data[uncovered]).all() and np.isfinite(data[~uncovered]).all()
    np.testing.assert_array_equal(data, ref.images[0, 0])


# ------------------------------------------------------------------------------- PNG


def test_cutout_png_is_north_up_east_left(surveys, tmp_path, capsys):
    north = tmp_path / "north.png"
    east = tmp_path / "east.png"
    common = ["--ra", str(RA), "--dec", str(DEC), "--size", "40", "--scale", "60"]
    run_ok(["cutout", "--hips", str(surveys["dec"]), *common, "--out", str(north)], capsys)
    run_ok(["cutout", "--hips", str(surveys["ra"]), *common, "--out", str(east)], capsys)
    with Image.open(north) as im:
        assert im.format == "PNG" and im.mode == "L" and im.size == (40, 40)
        a = np.asarray(im, dtype=np.float64)
    # the value grows with dec: the top row on screen (north) is the brightest
    assert a[0].mean() > a[20].mean() > a[-1].mean()
    assert a[0].mean() - a[-1].mean() > 150
    with Image.open(east) as im:
        b = np.asarray(im, dtype=np.float64)
    # the value grows with RA: east is on the left
    assert b[:, 0].mean() > b[:, 20].mean() > b[:, -1].mean()


def test_cutout_png_rgb_and_transparent_where_uncovered(surveys, tmp_path, capsys):
    rgb = tmp_path / "rgb.png"
    hips = ["--hips", str(surveys["ra"]), "--hips", str(surveys["wave"]), "--hips", str(surveys["dec"])]
    run_ok(["cutout", *hips, "--ra", str(RA), "--dec", str(DEC), "--size", "16", "--scale", "60", "--out", str(rgb)],
           capsys)  # fmt: skip
    with Image.open(rgb) as im:
        assert im.mode == "RGB" and im.size == (16, 16)

    edge = tmp_path / "edge.png"
    dec = DEC + 2.0
    run_ok(["cutout", "--hips", str(surveys["dec"]), "--ra", str(RA), "--dec", str(dec), "--size", "32",
            "--fov", "28800", "--order", "4", "--out", str(edge)], capsys)  # fmt: skip
    ref = cutouts(hipsml.open_survey(surveys["dec"]), ([RA], [dec]), size=32, fov=28800.0, order=4)
    with Image.open(edge) as im:
        assert im.mode == "LA"
        alpha = np.asarray(im)[..., 1]
    # alpha is 0 exactly where the survey has no data (flipped: PNG row 0 is north)
    np.testing.assert_array_equal(alpha == 0, ~ref.mask[0, 0][::-1])


def test_asinh_stretch_is_monotonic_and_robust():
    img = np.linspace(-1.0, 100.0, 400).reshape(1, 20, 20)
    img[0, 0, 0] = np.nan
    out = asinh_levels(img)
    flat = out.ravel()[1:]
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0
    assert np.all(np.diff(flat.astype(int)) >= 0) and flat[0] == 0 and flat[-1] == 255
    # asinh lifts the faint end: with limits (0, 100), 50 -> asinh(5)/asinh(10) = 0.771 -> 197
    fixed = asinh_levels(np.array([[[0.0, 10.0, 50.0, 100.0, 200.0, -5.0]]]), limits=[(0.0, 100.0)])
    assert fixed.ravel().tolist() == [0, 75, 197, 255, 255, 0]
    assert not asinh_levels(np.full((1, 4, 4), 3.0)).any()


# ------------------------------------------------------------------------------- NPY


def test_cutout_npy_round_trips(surveys, tmp_path, capsys):
    out = tmp_path / "sub" / "c.npy"  # missing parent folders are created
    run_ok(["cutout", "--hips", str(surveys["ra"]), "--hips", str(surveys["wave"]), "--ra", "151.5", "--dec", "-0.3",
            "--size", "20", "--scale", "45", "--out", str(out)], capsys)  # fmt: skip
    opened = [hipsml.open_survey(surveys["ra"]), hipsml.open_survey(surveys["wave"])]
    ref = cutouts(opened, ([151.5], [-0.3]), size=20, pixel_scale=45.0)
    arr = np.load(out)
    assert arr.dtype == np.float32 and arr.shape == (2, 20, 20)
    np.testing.assert_array_equal(arr, ref.images[0])
    assert [p.name for p in out.parent.iterdir()] == ["c.npy"]  # no temporary left behind


# ---------------------------------------------------------------------------- errors


def test_unknown_extension_fails_before_writing(surveys, tmp_path, capsys):
    out = tmp_path / "c.jpg"
    msg = run_fails(["cutout", "--hips", str(surveys["ra"]), "--ra", "150", "--dec", "2", "--out", str(out)], capsys)
    assert "'.jpg'" in msg and ".fits" in msg and not out.exists()
    with pytest.raises(InvalidInputError, match="unknown file extension"):
        output_format("cutout")
    ref = cutouts(hipsml.open_survey(surveys["ra"]), ([RA], [DEC]), size=4, pixel_scale=60.0)
    with pytest.raises(InvalidInputError):
        write_cutout(tmp_path / "x.tiff", ref)
    with pytest.raises(InvalidInputError, match="out of range"):
        write_cutout(tmp_path / "x.npy", ref, 1)


@pytest.mark.parametrize(
    "case",
    [
        "missing-survey",
        "bad-scheme",
        "unwritable",
        "size",
        "dec",
        "scale",
        "nan-ra",
        "order",
        "png-channels",
        "rotation",
    ],  # fmt: skip
)
def test_errors_are_one_line_with_exit_code_2(case, surveys, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    hips = ["--hips", str(surveys["ra"])]
    where = ["--ra", "150", "--dec", "2"]
    out = ["--out", str(tmp_path / "c.fits")]
    argv, needle = {
        "missing-survey": (["--hips", str(tmp_path / "nowhere"), *where, *out], "nowhere"),
        "bad-scheme": (["--hips", "ftp://example.org/hips", *where, *out], "ftp"),
        "unwritable": ([*hips, *where, "--out", str(blocker / "c.fits")], "a-file"),
        "size": ([*hips, *where, "--size", "0", *out], "size"),
        "dec": ([*hips, "--ra", "150", "--dec", "95", *out], "dec"),
        "scale": ([*hips, *where, "--scale", "-3", *out], "pixel_scale"),
        "nan-ra": ([*hips, "--ra", "nan", "--dec", "2", *out], "ra"),
        "order": ([*hips, *where, "--order", "9", *out], "order 9"),
        "png-channels": ([*hips, "--hips", str(surveys["wave"]), *where, "--out", str(tmp_path / "c.png")], "PNG"),
        "rotation": ([*hips, *where, "--rotation", "inf", *out], "rotation"),
    }[case]
    msg = run_fails(["cutout", *argv], capsys)
    assert needle in msg
    assert not (tmp_path / "c.fits").exists() and not (tmp_path / "c.png").exists()


def test_argparse_errors_exit_2(surveys, capsys):
    for argv in (
        ["cutout", "--hips", str(surveys["ra"]), "--ra", "x", "--dec", "2", "--out", "c.fits"],
        ["cutout", "--hips", str(surveys["ra"]), "--ra", "1", "--dec", "2", "--order", "fine", "--out", "c.fits"],
        [
            "cutout",
            "--hips",
            str(surveys["ra"]),
            "--ra",
            "1",
            "--dec",
            "2",
            "--scale",
            "1",
            "--fov",
            "9",
            "--out",
            "c.fits",
        ],  # fmt: skip
        ["cutout", "--ra", "1", "--dec", "2", "--out", "c.fits"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_console_script_in_a_subprocess(surveys, tmp_path):
    script = Path(sys.executable).with_name("hipsml")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "hipsml.cli"]
    out = tmp_path / "s.npy"
    ok = subprocess.run(
        [*cmd, "cutout", "--hips", str(surveys["dec"]), "--ra", "150", "--dec", "2", "--size", "8", "--scale", "100",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # the ramp's values are the declination of each pixel centre: rows go north
    arr = np.load(out)
    assert arr.shape == (1, 8, 8) and np.all(np.diff(arr[0, :, 4]) > 0)
    assert abs(float(arr[0, 3:5, 3:5].mean()) - 2.0) < 0.05

    bad = subprocess.run(
        [*cmd, "cutout", "--hips", "ftp://example.org/x", "--ra", "1", "--dec", "2", "--out", str(tmp_path / "b.fits")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------ survey info


def test_survey_info_prints_layout(surveys, capsys):
    out = run_ok(["survey", "info", str(surveys["wave"])], capsys)
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line}
    assert lines["orders"] == "0..3"
    assert lines["tile width"] == "64"
    assert lines["frame"] == "galactic"
    assert lines["formats"] == "fits"


# ------------------------------------------------------------------------------ demo


def test_run_demo_tiny_sky(tmp_path, capsys):
    from hipsml.demo._run import run_demo

    knobs = {"n_sources": 30, "order": 6, "tile_width": 64, "radius": 0.6}
    report = run_demo(tmp_path / "d", progress=False, train=False, **knobs)
    printed = capsys.readouterr().out
    files = report["files"]
    assert "published v1" in printed and str(files["preview"]) in printed and "sources: 30" in printed
    ds = report["dataset"]
    assert ds.images.shape == (30, 4, 64, 64) and ds.images.dtype == np.float32
    assert ds.channels == ["g", "r", "i", "radio"]
    sky = report["sky"]
    catalogue = Table.read(sky.catalogue_path, format="ascii.ecsv")
    # the row holding source 7 is its cutout in every band, labelled with its class
    row = int(np.flatnonzero(ds.column("id") == 7)[0])
    bands = [hipsml.open_survey(sky.band_paths[b]) for b in ("g", "r", "i", "radio")]
    one = cutouts(bands, ([catalogue["ra"][7]], [catalogue["dec"][7]]), size=64, pixel_scale=3.2)
    np.testing.assert_array_equal(ds.images[row], one.images[0])
    assert ds.label_names[ds.column("label")[row]] == catalogue["class"][7]
    with Image.open(files["preview"]) as im:
        assert im.mode == "RGB" and im.size[0] > 4 * 4 * 64
    assert not report["sky_reused"]

    again = run_demo(tmp_path / "d", progress=False, verbose=False, train=False, **knobs)
    assert again["sky_reused"] and again["dataset"].report.created is False and again["dataset"].version == 1
    with pytest.raises(InvalidInputError, match="different"):
        run_demo(tmp_path / "d", progress=False, verbose=False, train=False, **{**knobs, "n_sources": 31})


def test_demo_recipe_is_the_recipe_in_recipes_folder(tmp_path):
    import yaml

    from hipsml.dataset import load_recipe, parse_recipe
    from hipsml.demo._run import DEMO_RECIPE

    repo = Path(__file__).resolve().parents[2]
    shipped = load_recipe(repo / "recipes" / "demo.yaml")
    packaged = parse_recipe(yaml.safe_load(DEMO_RECIPE), base_dir=repo / "demo-output")
    assert shipped.canonical() == packaged.canonical()
    assert [shipped.resolve(s.location) for s in shipped.surveys] == [
        packaged.resolve(s.location) for s in packaged.surveys
    ]
    assert (
        Path(shipped.resolve(shipped.output.path)).resolve() == Path(packaged.resolve(packaged.output.path)).resolve()
    )


@pytest.mark.slow
def test_demo_command_end_to_end(tmp_path, capsys):
    # the full-size sky and dataset; the training and the report are tested at a reduced size in test_demo_report.py
    out = run_ok(["-q", "demo", str(tmp_path / "demo"), "--no-train"], capsys)
    assert "sources: 2000" in out and "cutouts/s" in out
    ds = hipsml.open_dataset(tmp_path / "demo" / "datasets" / "demo")
    assert ds.images.shape == (2000, 4, 64, 64)
    assert {p.name for p in (tmp_path / "demo").iterdir()} == {"sky", "demo.yaml", "datasets", "preview.png"}


def test_demo_refuses_a_file_as_directory(tmp_path, capsys):
    target = tmp_path / "f"
    target.write_text("x")
    msg = run_fails(["demo", str(target)], capsys)
    assert "not a folder" in msg


def png_only_survey(root: Path) -> Path:
    """A survey whose tiles exist only as 8-bit PNG display images (a declination ramp)."""
    render_function_hips(root, dec_ramp, order=2, tile_width=16, region=(10.0, 10.0, 8.0), formats=("fits", "png"))
    for tile in root.rglob("Npix*.fits"):
        tile.unlink()
    props = root / "properties"
    lines = props.read_text().splitlines()
    props.write_text("\n".join("hips_tile_format = png" if ln.startswith("hips_tile_format") else ln
                               for ln in lines) + "\n")  # fmt: skip
    return root


def test_png_stretch_auto_keeps_display_levels_of_png_surveys(tmp_path):
    """Cutouts of PNG/JPEG-only surveys keep their 0..255 levels: auto picks linear; FITS surveys get asinh."""
    root = png_only_survey(tmp_path / "png")
    survey = hipsml.open_survey(root)
    assert survey.formats == ("png",)
    args = ["-q", "cutout", "--hips", str(root), "--ra", "10", "--dec", "10", "--size", "16", "--scale", "600",
            "--interpolation", "nearest"]  # fmt: skip
    png = {}
    for stretch in ("auto", "linear", "asinh"):
        out = tmp_path / f"{stretch}.png"
        assert main(args + ["--out", str(out)] + ([] if stretch == "auto" else ["--stretch", stretch])) == 0
        png[stretch] = np.asarray(Image.open(out))
    # the levels of the tiles, north up: the cells' own 0..255 values, unchanged
    res = cutouts(survey, ([10.0], [10.0]), size=16, pixel_scale=600.0, interpolation="nearest")
    levels = res.images[0, 0][::-1]
    assert np.array_equal(levels, np.rint(levels)) and np.ptp(levels) > 20
    assert np.array_equal(png["auto"], levels.astype(np.uint8))
    assert np.array_equal(png["auto"], png["linear"]) and not np.array_equal(png["auto"], png["asinh"])
    # a FITS survey's auto stretch is asinh
    fits_root = render_function_hips(tmp_path / "fits", dec_ramp, order=2, tile_width=16, region=(10.0, 10.0, 8.0))
    fits_args = [
        "-q",
        "cutout",
        "--hips",
        str(fits_root),
        "--ra",
        "10",
        "--dec",
        "10",
        "--size",
        "16",
        "--scale",
        "600",
    ]
    assert main(fits_args + ["--out", str(tmp_path / "fa.png")]) == 0
    assert main(fits_args + ["--stretch", "asinh", "--out", str(tmp_path / "fs.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "fa.png")), np.asarray(Image.open(tmp_path / "fs.png")))
