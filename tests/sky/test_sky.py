"""Tests of hipsml.sky: synthetic skies written as real HiPS directories.

Tiles are read back with astropy.io.fits and mapped to HEALPix cells with
``tile_pixel_indices`` + healpy: a path independent of the writer.
"""

from __future__ import annotations

import math
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from PIL import Image

from hipsml.errors import InvalidInputError
from hipsml.hips import tile_pixel_indices
from hipsml.sky import make_sky, render_function_hips

ASTROPY_FRAME = {"icrs": "icrs", "galactic": "galactic", "ecliptic": "barycentricmeanecliptic"}


def analytic(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.sin(np.radians(2.0 * ra)) * np.cos(np.radians(dec)) + dec / 30.0


def read_properties(root: Path) -> dict[str, str]:
    out = {}
    for line in (root / "properties").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def tiles_on_disk(root: Path, order: int, ext: str = "fits") -> list[int]:
    return sorted(int(p.stem[4:]) for p in (root / f"Norder{order}").glob(f"Dir*/Npix*.{ext}"))


def tile_file(root: Path, order: int, npix: int, ext: str = "fits") -> Path:
    return root / f"Norder{order}" / f"Dir{(npix // 10000) * 10000}" / f"Npix{npix}.{ext}"


def read_cells(root: Path, order: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """All cells (NESTED at order + log2 width) and values of the tiles at ``order``."""
    cells, values = [], []
    for npix in tiles_on_disk(root, order):
        cells.append(tile_pixel_indices(order, npix, width).ravel())
        values.append(fits.getdata(tile_file(root, order, npix)).astype(np.float64).ravel())
    return np.concatenate(cells), np.concatenate(values)


def expected_values(frame: str, cell_order: int, cells: np.ndarray) -> np.ndarray:
    theta, phi = hp.pix2ang(1 << cell_order, cells, nest=True)
    c = SkyCoord(np.degrees(phi) * u.deg, (90.0 - np.degrees(theta)) * u.deg, frame=ASTROPY_FRAME[frame]).icrs
    return analytic(c.ra.deg, c.dec.deg)


def cell_map(root: Path, order: int, width: int) -> dict[int, float]:
    cells, values = read_cells(root, order, width)
    return dict(zip(cells.tolist(), values.tolist(), strict=True))


# ------------------------------------------------------------------------------------------
# render_function_hips


@pytest.mark.parametrize("frame", ["icrs", "galactic", "ecliptic"])
def test_render_values_are_func_at_cell_centres(tmp_path: Path, frame: str) -> None:
    width = 8
    root = render_function_hips(tmp_path / frame, analytic, order=2, tile_width=width, frame=frame)
    assert root == (tmp_path / frame).absolute()
    for k in range(0, 3):
        assert len(tiles_on_disk(root, k)) == 12 * 4**k  # all sky at every order
        cells, values = read_cells(root, k, width)
        want = expected_values(frame, k + 3, cells)
        np.testing.assert_allclose(values, want, rtol=0, atol=2e-6)
    assert not (root / "Moc.fits").exists()  # all-sky: no MOC
    assert read_properties(root)["hips_frame"] == {"icrs": "equatorial"}.get(frame, frame)


def test_render_region_properties_and_moc(tmp_path: Path) -> None:
    root = render_function_hips(
        tmp_path / "cone", analytic, order=4, tile_width=16, region=(150.0, 2.0, 3.0), order_min=1, title="my cone"
    )
    props = read_properties(root)
    assert props["hips_order"] == "4" and props["maxOrder"] == "4"
    assert props["hips_order_min"] == "1"
    assert props["hips_tile_width"] == "16"
    assert props["hips_tile_format"] == "fits"
    assert props["hips_pixel_bitpix"] == "-32"
    assert props["hips_frame"] == "equatorial" and props["coordsys"] == "C"
    assert props["hips_version"] == "1.4" and props["dataproduct_type"] == "image"
    assert props["obs_title"] == "my cone"
    assert props["creator_did"].startswith("ivo://")
    assert float(props["hips_initial_ra"]) == pytest.approx(150.0)
    assert float(props["hips_initial_dec"]) == pytest.approx(2.0)
    lo, hi = (float(v) for v in props["hips_pixel_cut"].split())
    assert lo < hi
    for key in ("hips_release_date", "hips_status", "hips_initial_fov"):
        assert props[key]
    assert not (root / "Norder0").exists()

    top = tiles_on_disk(root, 4)
    disc = hp.query_disc(16, hp.ang2vec(150.0, 2.0, lonlat=True), math.radians(3.0), inclusive=True, nest=True)
    assert set(top) == set(disc.tolist())
    for k in (1, 2, 3):  # parents of every max-order tile are written
        assert {n >> (2 * (4 - k)) for n in top} <= set(tiles_on_disk(root, k))

    with fits.open(root / "Moc.fits") as hdul:
        hdr = hdul[1].header
        uniq = np.asarray(hdul[1].data["UNIQ"], dtype=np.int64)
        assert hdul[1].columns["UNIQ"].format == "K"
    assert (hdr["PIXTYPE"], hdr["ORDERING"], hdr["COORDSYS"], hdr["MOCORDER"]) == ("HEALPIX", "NUNIQ", "C", 4)
    covered = set()
    for q in uniq:
        k = (int(q).bit_length() - 3) // 2
        n = int(q) - 4 * 4**k
        covered.update(range(n << (2 * (4 - k)), (n + 1) << (2 * (4 - k))))
    assert covered == set(top)


def test_render_explicit_tiles_integer_bitpix_and_png(tmp_path: Path) -> None:
    width = 16
    root = render_function_hips(
        tmp_path / "t", analytic, order=3, tile_width=width, tiles=[300, 301, 5], bitpix=16, formats=("fits", "png")
    )
    assert tiles_on_disk(root, 3) == [5, 300, 301]
    assert tiles_on_disk(root, 2) == [1, 75] and tiles_on_disk(root, 0) == [0, 4]
    assert tiles_on_disk(root, 3, "png") == [5, 300, 301]
    props = read_properties(root)
    assert props["hips_tile_format"] == "fits png" and props["hips_pixel_bitpix"] == "16"
    with fits.open(tile_file(root, 3, 300)) as hdul:
        assert hdul[0].header["BITPIX"] == 16 and "BLANK" in hdul[0].header
        bscale = hdul[0].header["BSCALE"]  # read before .data (astropy drops it once scaled)
        values = hdul[0].data.astype(np.float64)
    want = expected_values("icrs", 7, tile_pixel_indices(3, 300, width))
    np.testing.assert_allclose(values, want, atol=0.51 * bscale + 1e-6)
    # the PNG displays like the FITS: PNG row 0 is the last FITS row
    lo, hi = (float(v) for v in props["hips_pixel_cut"].split())
    png = np.asarray(Image.open(tile_file(root, 3, 300, "png")), dtype=np.float64)
    scaled = np.clip((want - lo) / (hi - lo) * 255.0, 0, 255)
    np.testing.assert_allclose(png, scaled[::-1], atol=1.01)


def test_render_is_atomic_and_refuses_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "s"
    render_function_hips(target, analytic, order=0, tile_width=4)
    with pytest.raises(InvalidInputError, match="not empty"):
        render_function_hips(target, analytic, order=0, tile_width=4)

    def broken(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        render_function_hips(tmp_path / "never", broken, order=0, tile_width=4)
    assert not (tmp_path / "never").exists()
    render_function_hips(target, lambda ra, dec: dec * 0 + 7.0, order=0, tile_width=4, overwrite=True)
    assert float(fits.getdata(tile_file(target, 0, 3))[0, 0]) == 7.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no staging leftovers


@pytest.mark.parametrize(
    "kwargs",
    [{"tile_width": 12}, {"frame": "supergalactic"}, {"order": -1}, {"bitpix": 8}, {"formats": ("jpeg",)},
     {"region": (10.0, 0.0, -1.0)}],
)  # fmt: skip
def test_render_bad_inputs(tmp_path: Path, kwargs: dict) -> None:
    args = {"order": 1, "tile_width": 8, **kwargs}
    with pytest.raises(InvalidInputError):
        render_function_hips(tmp_path / "bad", analytic, **args)


# ------------------------------------------------------------------------------------------
# make_sky

ORDER, WIDTH = 6, 128  # pixels (cells) of order 13: 25.8 arcsec
CELL_ORDER = ORDER + 7
CELL_DEG = math.degrees(hp.nside2resol(1 << CELL_ORDER))
SKY = {"order": ORDER, "tile_width": WIDTH, "radius": 1.0, "center": (150.0, 2.0)}


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory):
    return make_sky(tmp_path_factory.mktemp("sky") / "sky", n_sources=100, seed=3, workers=2, **SKY)


def test_make_sky_layout_and_catalogue(sky) -> None:
    assert set(sky.band_paths) == {"g", "r", "i", "radio"}
    assert sorted(p.name for p in sky.root.iterdir()) == ["catalogue.ecsv", "g", "i", "r", "radio"]
    cat = Table.read(sky.catalogue_path, format="ascii.ecsv")
    assert len(cat) == 100
    assert set(cat["class"]) == {"star", "elliptical", "disk", "radio_double"}
    for col in ("id", "ra", "dec", "class", "flux_g", "flux_r", "flux_i", "flux_radio", "sersic_n", "r_eff_arcsec",
                "axis_ratio", "position_angle_deg", "inclination_deg", "lobe_separation_arcsec", "has_core"):  # fmt: skip
        assert col in cat.colnames
    ell = cat[cat["class"] == "elliptical"]
    disk = cat[cat["class"] == "disk"]
    assert np.all(np.abs(ell["sersic_n"] - 4) <= 0.5) and np.all(np.abs(disk["sersic_n"] - 1) <= 0.2)
    gal_cells = np.concatenate([ell["r_eff_arcsec"], disk["r_eff_arcsec"]]) / (CELL_DEG * 3600)
    assert gal_cells.min() >= 1.5 - 1e-9 and gal_cells.max() <= 8 + 1e-9
    rad = cat[cat["class"] == "radio_double"]
    sep_cells = rad["lobe_separation_arcsec"] / (CELL_DEG * 3600)
    assert sep_cells.min() >= 6 - 1e-9 and sep_cells.max() <= 20 + 1e-9
    assert np.all(cat["flux_radio"][cat["class"] != "radio_double"] == 0)
    sep = SkyCoord(cat["ra"], cat["dec"], unit="deg").separation(SkyCoord(150.0, 2.0, unit="deg")).deg
    assert sep.max() <= 1.0
    props = read_properties(sky.band_paths["r"])
    assert props["hips_order"] == str(ORDER) and props["hips_tile_width"] == str(WIDTH)
    assert props["hips_hierarchy"] == "mean" and props["hips_frame"] == "equatorial"
    text = sky.summary()
    assert "radio_double" in text and "tiles written" in text and "bytes on disk" in text
    assert sky.bytes_on_disk > 0 and sky.tiles_written == 4 * sum(
        len(tiles_on_disk(sky.band_paths["r"], k)) for k in range(ORDER + 1)
    )


def test_make_sky_moc_and_mean_hierarchy(sky) -> None:
    root = sky.band_paths["g"]
    top = tiles_on_disk(root, ORDER)
    with fits.open(root / "Moc.fits") as hdul:
        uniq = np.asarray(hdul[1].data["UNIQ"], dtype=np.int64)
    covered = set()
    for q in uniq:
        k = (int(q).bit_length() - 3) // 2
        n = int(q) - 4 * 4**k
        covered.update(range(n << (2 * (ORDER - k)), (n + 1) << (2 * (ORDER - k))))
    assert covered == set(top)
    children = cell_map(root, ORDER, WIDTH)
    parent = tiles_on_disk(root, ORDER - 1)[0]
    pcells = tile_pixel_indices(ORDER - 1, parent, WIDTH)
    pdata = fits.getdata(tile_file(root, ORDER - 1, parent)).astype(np.float64)
    checked = 0
    for cell, value in zip(pcells.ravel().tolist(), pdata.ravel().tolist(), strict=True):
        kids = [children.get(4 * cell + j) for j in range(4)]
        kids = [v for v in kids if v is not None]
        if kids:
            assert value == pytest.approx(np.mean(kids), rel=1e-5, abs=1e-4)
            checked += 1
        else:
            assert np.isnan(value)
    assert checked > 0


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    kw = dict(n_sources=40, order=5, tile_width=32, radius=1.0, bands=["r", "radio"], workers=2)
    a = make_sky(tmp_path / "a", seed=11, **kw)
    b = make_sky(tmp_path / "b", seed=11, **kw)
    c = make_sky(tmp_path / "c", seed=12, **kw)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file() and p.name != "properties")
    assert files == sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file() and p.name != "properties")
    for rel in files:
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    assert a.catalogue_path.read_bytes() != c.catalogue_path.read_bytes()
    tile = next(p for p in files if p.suffix == ".fits" and p.parts[1] == "Norder5")
    assert (a.root / tile).read_bytes() != (c.root / tile).read_bytes()


def test_noise_is_a_function_of_the_cell(tmp_path: Path) -> None:
    """Two skies over different regions agree exactly on the tiles they share."""
    kw = dict(n_sources=0, seed=5, order=5, tile_width=32, bands=["g"], workers=1)
    a = make_sky(tmp_path / "a", center=(150.0, 2.0), radius=2.0, **kw)
    b = make_sky(tmp_path / "b", center=(151.5, 2.5), radius=2.0, **kw)
    ta, tb = tiles_on_disk(a.band_paths["g"], 5), tiles_on_disk(b.band_paths["g"], 5)
    shared = sorted(set(ta) & set(tb))
    assert shared and set(ta) != set(tb)
    for n in shared:
        da = fits.getdata(tile_file(a.band_paths["g"], 5, n))
        db = fits.getdata(tile_file(b.band_paths["g"], 5, n))
        np.testing.assert_array_equal(da, db)
    assert np.std(da) > 0.5  # noise is there (sigma 1 for g)


def _disc_cells(ra: float, dec: float, radius_cells: float) -> np.ndarray:
    return hp.query_disc(
        1 << CELL_ORDER, hp.ang2vec(ra, dec, lonlat=True), radius_cells * math.radians(CELL_DEG), nest=True
    )


def _isolated(cat: Table, i: int, ra: float, dec: float, min_cells: float) -> bool:
    others = np.arange(len(cat)) != i
    pos = SkyCoord(cat["ra"][others], cat["dec"][others], unit="deg")
    return bool(pos.separation(SkyCoord(ra, dec, unit="deg")).deg.min() > min_cells * CELL_DEG)


def test_radio_double_only_in_radio(sky) -> None:
    cat = sky.catalogue()
    maps = {b: cell_map(sky.band_paths[b], ORDER, WIDTH) for b in ("g", "r", "i", "radio")}
    medians = {b: float(np.median(list(m.values()))) for b, m in maps.items()}
    noise = {"g": 1.0, "r": 1.0, "i": 1.2, "radio": 0.5}
    tested = 0
    for i in np.flatnonzero(cat["class"] == "radio_double"):
        row = cat[i]
        if row["lobe_separation_arcsec"] < 10 * CELL_DEG * 3600:
            continue
        host = SkyCoord(row["ra"], row["dec"], unit="deg")
        lobe = host.directional_offset_by(
            row["position_angle_deg"] * u.deg, 0.5 * row["lobe_separation_arcsec"] * u.arcsec
        )
        if not _isolated(cat, i, lobe.ra.deg, lobe.dec.deg, 15):
            continue
        cells = _disc_cells(lobe.ra.deg, lobe.dec.deg, 1.6)
        if not all(int(c) in maps["r"] for c in cells):
            continue
        for b in maps:
            excess = sum(maps[b][int(c)] for c in cells) - medians[b] * len(cells)
            snr = excess / (noise[b] * math.sqrt(len(cells)))
            if b == "radio":
                assert snr > 15, (i, b, snr)
            else:
                assert abs(snr) < 5, (i, b, snr)
        tested += 1
    assert tested >= 1


def test_star_peak_at_catalogue_position(sky) -> None:
    cat = sky.catalogue()
    rmap = cell_map(sky.band_paths["r"], ORDER, WIDTH)
    stars = [i for i in np.flatnonzero(cat["class"] == "star") if cat["flux_r"][i] > 300]
    tested = 0
    for i in stars:
        ra, dec = float(cat["ra"][i]), float(cat["dec"][i])
        if not _isolated(cat, i, ra, dec, 12):
            continue
        cells = _disc_cells(ra, dec, 5)
        if not all(int(c) in rmap for c in cells):
            continue
        peak = int(cells[np.argmax([rmap[int(c)] for c in cells])])
        pra, pdec = hp.pix2ang(1 << CELL_ORDER, peak, nest=True, lonlat=True)
        dist = SkyCoord(pra, pdec, unit="deg").separation(SkyCoord(ra, dec, unit="deg")).deg
        assert dist <= CELL_DEG, (i, dist / CELL_DEG)
        tested += 1
    assert tested >= 3


def test_continuity_across_tile_edges(tmp_path: Path) -> None:
    """Noise-free background: neighbouring cells across tile edges differ as little as within a tile."""
    sky = make_sky(tmp_path / "bg", n_sources=0, seed=1, noise=False, bands=["r"], order=5, tile_width=64,
                   radius=1.5, workers=2)  # fmt: skip
    cells, values = read_cells(sky.band_paths["r"], 5, 64)
    lookup = dict(zip(cells.tolist(), values.tolist(), strict=True))
    nbrs = hp.get_all_neighbours(1 << 11, cells, nest=True)[[0, 2, 4, 6]]  # edge neighbours (SW, NW, NE, SE)
    across, within = [], []
    for j in range(4):
        for c, nb, v in zip(cells.tolist(), nbrs[j].tolist(), values.tolist(), strict=True):
            if nb in lookup:
                (across if (c >> 12) != (nb >> 12) else within).append(abs(v - lookup[nb]))
    across, within = np.array(across), np.array(within)
    assert across.size > 100
    assert across.max() <= 1.5 * within.max()
    assert 0 < within.max() < 0.02  # a gentle gradient only


def test_same_sky_whatever_the_tiling(tmp_path: Path) -> None:
    """Sources and noise are functions of the cell: tiles of 64 at order 5 and of 128 at order 4 agree."""
    kw = dict(n_sources=150, seed=1, bands=["r", "radio"], radius=1.5, workers=2)
    a = make_sky(tmp_path / "a", order=5, tile_width=64, **kw)
    b = make_sky(tmp_path / "b", order=4, tile_width=128, **kw)  # same cells (order 11), other tile edges
    for band in ("r", "radio"):
        ca, va = read_cells(a.band_paths[band], 5, 64)
        cb, vb = read_cells(b.band_paths[band], 4, 128)
        common, ia, ib = np.intersect1d(ca, cb, return_indices=True)
        assert common.size > 20_000
        np.testing.assert_array_equal(va[ia], vb[ib])
        assert np.ptp(va[ia]) > 50  # sources are there


def _flux_excess(sky, empty, band: str, order: int) -> float:
    """Sum over all max-order cells of (pixel - background): the rendered source flux.

    The background is measured, not computed: ``empty`` is the same sky rendered with no
    sources and no noise, so its tiles hold the background alone.
    """
    root, bg_root = sky.band_paths[band], empty.band_paths[band]
    assert tiles_on_disk(root, order) == tiles_on_disk(bg_root, order)
    total = 0.0
    for npix in tiles_on_disk(root, order):
        data = fits.getdata(tile_file(root, order, npix)).astype(np.float64)
        total += float((data - fits.getdata(tile_file(bg_root, order, npix))).sum())
    return total


def test_flux_is_conserved_across_face_edges(tmp_path: Path) -> None:
    """Sources straddling HEALPix face edges (a 4-face corner) keep all their flux, in any frame."""
    ratios = {}
    for name, center, frame in [("ref", (150.0, 2.0), "icrs"), ("corner", (45.0, 0.0), "icrs"),
                                ("polar", (45.0, 41.8103), "icrs"), ("gal", (150.0, 2.0), "galactic")]:  # fmt: skip
        kw = dict(seed=2, noise=False, order=3, tile_width=128, center=center, radius=1.5, bands=["r", "radio"],
                  frame=frame, workers=2)  # fmt: skip
        sky = make_sky(tmp_path / name, n_sources=60, **kw)
        empty = make_sky(tmp_path / f"{name}-empty", n_sources=0, **kw)
        cat = sky.catalogue()
        ratios[name] = [_flux_excess(sky, empty, b, 3) / float(np.sum(cat[f"flux_{b}"])) for b in ("r", "radio")]
        if name in ("corner", "polar"):
            assert len(tiles_on_disk(sky.band_paths["r"], 3)) >= 3  # the cone spans several faces
    # measured: optical within 0.23% of the reference sky, radio within 0.022% of 1
    for name in ("corner", "polar", "gal"):
        assert ratios[name][0] == pytest.approx(ratios["ref"][0], rel=0.004)
        assert ratios[name][1] == pytest.approx(1.0, rel=4e-4)


@pytest.mark.parametrize(
    "kwargs,culprit",
    [({"n_sources": -1}, "n_sources must be a non-negative integer; got -1"),
     ({"frame": "fk4"}, "frame must be one of icrs, galactic, ecliptic; got 'fk4'"),
     ({"tile_width": 100}, "tile_width must be a power of two; got 100"),
     ({"radius": 0.0}, "radius must be in (0, 90] degrees; got 0.0"),
     ({"radius": -2.0}, "radius must be in (0, 90] degrees; got -2.0"),
     ({"bands": ["r", "x"]}, "bands: unknown band 'x'"),
     ({"formats": ("fits", "tiff")}, "formats: unknown tile format 'tiff'"),
     ({"seed": -3}, "seed must be a non-negative integer; got -3"),
     ({"order": 40}, "order must be an integer in 0..25 for tile width 16; got 40")],
)  # fmt: skip
def test_make_sky_bad_inputs(tmp_path: Path, kwargs: dict, culprit: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        make_sky(tmp_path / "bad", **{"n_sources": 5, "order": 3, "tile_width": 16, **kwargs})
    assert culprit in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()


def test_cli_sky_make_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hipsml.cli import main

    out = tmp_path / "cli"
    code = main(["-q", "sky", "make", str(out), "--sources", "30", "--order", "5", "--tile-width", "32",
                 "--radius", "1", "--formats", "fits,png"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "synthetic sky at" in text and "sources: 30" in text
    assert tiles_on_disk(out / "radio", 5, "png")
    assert main(["-q", "sky", "make", str(out), "--sources", "-5"]) == 2
