"""``hipsml survey info`` without Moc.fits: the sky area, order-k tiles present and bounds of a local survey."""

from __future__ import annotations

import re
from pathlib import Path

import healpy as hp
import numpy as np
import pytest

import hipsml
from hipsml.cli import main
from hipsml.hips._moc import lonlat_bounds

GC_ICRS = (266.405, -28.936)  # the Galactic centre
ORDER = 6


@pytest.fixture(scope="module")
def gc_survey(tmp_path_factory) -> Path:
    """A galactic-frame survey of a 0.6 deg disc around the Galactic centre (straddling l = 0), Moc.fits removed."""
    from hipsml.sky import make_sky

    sky = make_sky(tmp_path_factory.mktemp("gc") / "sky", n_sources=5, seed=1, order=ORDER, tile_width=32,
                   frame="galactic", center=GC_ICRS, radius=0.6, bands=("r",), noise=False)  # fmt: skip
    root = Path(sky.band_paths["r"])
    (root / "Moc.fits").unlink()
    return root


def _info(location: str, capsys) -> str:
    assert main(["survey", "info", location]) == 0
    return capsys.readouterr().out


def test_local_survey_without_moc_reports_its_tiles_area_and_bounds(gc_survey, capsys):
    tiles = sorted(int(p.stem[4:]) for p in gc_survey.glob(f"Norder{ORDER}/Dir*/Npix*.fits"))
    assert len(tiles) > 1
    out = _info(str(gc_survey), capsys)
    area = len(tiles) * 4 * np.pi * (180 / np.pi) ** 2 / (12 * 4**ORDER)
    assert f"no Moc.fits; {len(tiles)} order-{ORDER} tiles present: {area:.4g} deg²" in out
    m = re.search(r"l (\S+) \.\. (\S+) \(across 0\), b (\S+) \.\. (\S+) \(galactic\)", out)
    assert m, out
    l0, l1, b0, b1 = (float(v) for v in m.groups())
    # every tile centre lies within the printed bounds; the bounds straddle l = 0 and hold b = 0
    lon, lat = hp.pix2ang(1 << ORDER, tiles, nest=True, lonlat=True)
    assert np.all((lon >= l0) | (lon <= l1)) and np.all((lat >= b0) & (lat <= b1))
    assert 355 < l0 < 360 and 0 < l1 < 5 and b0 < 0 < b1
    assert "coverage: none" not in out


def test_remote_survey_without_moc_says_why_and_a_local_one_lists_its_tiles(
    gc_survey, tmp_path, capsys, hips_server, monkeypatch
):
    monkeypatch.setenv("HIPSML_CACHE_DIR", str(tmp_path / "cache"))
    server = hips_server(gc_survey)
    out = _info(server.url, capsys)
    assert "coverage:    unknown: no Moc.fits, and a remote survey's tiles cannot be listed" in out
    # the local survey lists exactly the tile files on disk
    tiles = np.array(sorted(int(p.stem[4:]) for p in gc_survey.glob(f"Norder{ORDER}/Dir*/Npix*.fits")))
    assert np.array_equal(hipsml.open_survey(gc_survey).tiles_present(ORDER), tiles)


def test_lonlat_bounds_wraps_and_covers_poles():
    cells = hp.query_disc(1 << 6, hp.ang2vec(0.0, 0.0, lonlat=True), np.radians(2.0), nest=True)
    lo, hi, b0, b1 = lonlat_bounds(6, cells)
    assert 357 < lo < 358.5 and 1.5 < hi < 3 and -3 < b0 < -2 and 2 < b1 < 3
    lo, hi, b0, b1 = lonlat_bounds(2, hp.query_disc(4, [0.0, 0.0, 1.0], np.radians(5.0), nest=True, inclusive=True))
    assert (lo, hi, b1) == (0.0, 360.0, 90.0)
