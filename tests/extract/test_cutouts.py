"""Cutout engine: geometry, nearest vs an independent slow reference, bilinear accuracy, seams."""

from __future__ import annotations

import logging

import healpy as hp
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from cutout_reference import ASTROPY_FRAMES, TileReader, pixel_centres_in_frame, reference_nearest, spec_wcs

import hipsml
from hipsml.errors import InvalidInputError
from hipsml.extract import cutout_wcs, cutouts
from hipsml.extract._geometry import frame_matrix, pixel_grid_vectors, target_bases
from hipsml.extract._kernels import face_coordinates
from hipsml.hips._healpix import interleave_bits
from hipsml.sky import render_function_hips


def unit(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, d = np.radians(ra), np.radians(dec)
    return np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)


def wiggly(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Varies from cell to cell, so equal values mean the same cell."""
    x, y, z = unit(ra, dec)
    return np.sin(4000.0 * x) + np.cos(3000.0 * y) + z * 1e-3


def smooth(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Smooth everywhere on the sphere, poles included (a function of the unit vector)."""
    x, y, z = unit(ra, dec)
    return np.cos(3.0 * x) + np.sin(2.0 * y + z) + x * z


def to_icrs(lon: float, lat: float, frame: str) -> tuple[float, float]:
    c = SkyCoord(lon * u.deg, lat * u.deg, frame=ASTROPY_FRAMES[frame]).icrs
    return float(c.ra.deg), float(c.dec.deg)


# ---------------------------------------------------------------- geometry


def test_cutout_wcs_matches_definition():
    w = cutout_wcs(150.0, 2.0, size=64, pixel_scale=1.5, rotation=30.0)
    ref = spec_wcs(150.0, 2.0, 64, 1.5, 30.0)
    assert np.allclose(w.wcs.cd, ref.wcs.cd)
    assert np.allclose(w.wcs.crpix, [32.5, 32.5])
    assert list(w.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    # north up, east left: row 0 is south of the centre, column 0 east of it
    w0 = cutout_wcs(150.0, 2.0, size=64, pixel_scale=1.5)
    assert w0.pixel_to_world(32, 0).dec.deg < 2.0 and w0.pixel_to_world(0, 32).ra.deg > 150.0
    # the rotation, from the CD definition: a pixel offset (dx, dy) from CRPIX lies
    # 1.5" * (-cos t dx + sin t dy) east and 1.5" * (sin t dx + cos t dy) north of the centre
    # (a zenithal projection keeps position angles; TAN stretches 67" by < 1e-5")
    centre = SkyCoord(150.0 * u.deg, 2.0 * u.deg)
    t = np.radians(30.0)
    for col, row in [(32, 0), (0, 32), (63, 63), (5, 40)]:
        dx, dy = col + 1 - 32.5, row + 1 - 32.5
        east = 1.5 * (-np.cos(t) * dx + np.sin(t) * dy)
        north = 1.5 * (np.sin(t) * dx + np.cos(t) * dy)
        c = w.pixel_to_world(col, row)
        assert centre.separation(c).arcsec == pytest.approx(np.hypot(east, north), abs=1e-4)
        pa = np.degrees(np.arctan2(east, north)) % 360.0
        assert centre.position_angle(c).deg == pytest.approx(pa, abs=1e-5)


@pytest.mark.parametrize("proj", ["TAN", "SIN"])
@pytest.mark.parametrize(
    "ra,dec,rot",
    [
        (150.0, 2.0, 0.0),
        (10.0, -89.9, 0.0),
        (300.0, 89.99, 45.0),
        (45.0, 41.81, -120.0),
        (30.0, 90.0, 10.0),
        (30.0, -90.0, 0.0),
    ],
)
def test_pixel_grid_matches_astropy_wcs(proj, ra, dec, rot):
    size, scale = 33, 20.0
    grid = pixel_grid_vectors(size, scale, proj)
    bases = target_bases(np.array([ra]), np.array([dec]), np.array([rot]))
    vec = grid @ bases[0].T
    lon, lat = pixel_centres_in_frame(ra, dec, size, scale, "icrs", rot, proj)
    ref = hp.ang2vec(lon.ravel(), lat.ravel(), lonlat=True)
    sep_arcsec = np.degrees(np.linalg.norm(vec - ref, axis=1)) * 3600  # chord = angle here
    assert sep_arcsec.max() < 1e-4


@pytest.mark.parametrize("frame", ["galactic", "ecliptic"])
def test_frame_matrix_matches_astropy(frame):
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 50), np.degrees(np.arcsin(rng.uniform(-1, 1, 50)))
    mine = hp.ang2vec(ra, dec, lonlat=True) @ frame_matrix(frame).T
    c = SkyCoord(ra * u.deg, dec * u.deg).transform_to(ASTROPY_FRAMES[frame]).spherical
    ref = hp.ang2vec(c.lon.deg, c.lat.deg, lonlat=True)
    assert np.abs(mine - ref).max() < 1e-12


@pytest.mark.parametrize("order", [0, 5, 13, 22])
def test_face_coordinates_give_healpy_cells(order):
    rng = np.random.default_rng(order)
    v = rng.normal(size=(100_000, 3))
    v[:200] = [0, 0, 1] + rng.normal(size=(200, 3)) * 1e-6  # pole
    v[200:400] = [0, 0, -1] + rng.normal(size=(200, 3)) * 1e-6
    z23 = np.sqrt(1 - (2 / 3) ** 2)
    v[400:600] = [z23 / np.sqrt(2), z23 / np.sqrt(2), 2 / 3] + rng.normal(size=(200, 3)) * 1e-7  # cap/belt edge
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    nside = 1 << order
    face, x, y = face_coordinates(v, float(nside))
    ix = np.clip(np.floor(x).astype(np.int64), 0, nside - 1)
    iy = np.clip(np.floor(y).astype(np.int64), 0, nside - 1)
    mine = face * nside * nside + interleave_bits(ix, iy)
    ref = hp.vec2pix(nside, v[:, 0], v[:, 1], v[:, 2], nest=True)
    assert np.array_equal(mine, ref)  # measured: every point, poles and cap edges included


# ---------------------------------------------------------------- nearest vs reference


def _targets_for(frame: str, korder: int, seed: int) -> list[tuple[float, float]]:
    """Hard places in the survey frame (poles, base-face corners, tile corners), as ICRS."""
    rng = np.random.default_rng(seed)
    places = [(0.0, 90.0), (123.0, -89.99), (45.0, 0.0), (0.0, 41.8103149), (90.0, -41.8103149), (180.0, 41.81)]
    corners = hp.boundaries(1 << korder, int(rng.integers(12 * 4**korder)), step=1, nest=True)
    lon, lat = hp.vec2ang(corners.T, lonlat=True)
    places += list(zip(lon.tolist(), lat.tolist(), strict=True))
    return [to_icrs(lo, la, frame) for lo, la in places]


@pytest.mark.parametrize(
    "frame,korder,width,rot",
    [("icrs", 3, 64, 0.0), ("galactic", 2, 256, 30.0), ("ecliptic", 4, 64, -75.0), ("icrs", 1, 512, 10.0)],
)
def test_nearest_matches_slow_reference(tmp_path, frame, korder, width, rot):
    root = render_function_hips(tmp_path / "s", wiggly, order=korder, tile_width=width, frame=frame)
    survey = hipsml.open_survey(root)
    reader = TileReader(root, korder, width)
    cell = np.degrees(np.sqrt(4 * np.pi / (12 * 4 ** (korder + width.bit_length() - 1)))) * 3600
    targets = _targets_for(frame, korder, seed=korder)
    ra, dec = np.array(targets).T
    size = 24
    res = cutouts(
        survey, (ra, dec), size=size, pixel_scale=0.7 * cell, rotation=rot, interpolation="nearest", order=korder
    )
    agree = []
    for n in range(len(ra)):
        ref, _ = reference_nearest(reader, frame, ra[n], dec[n], size, 0.7 * cell, rot)
        agree.append(np.mean(res.images[n, 0] == ref.astype(np.float32)))
    assert min(agree) == 1.0, agree  # measured: every pixel of every cutout
    assert res.mask.all()


def test_nearest_matches_reference_on_real_planck_tiles(samples_dir):
    root = samples_dir / "Planck-HFI143"
    survey = hipsml.open_survey(root)
    assert survey.frame == "galactic" and survey.tile_width == 256
    reader = TileReader(root, 3, 256)
    present = sorted(int(p.stem[4:]) for p in (root / "Norder3" / "Dir0").glob("Npix*.fits"))
    # targets at the centres and corners of tiles in the sample
    ra, dec = [], []
    for npix in present[:6]:
        lon, lat = hp.pix2ang(8, npix, nest=True, lonlat=True)
        for dl, db in [(0, 0), (1.5, 1.5), (-2, 1)]:
            r, d = to_icrs(lon + dl, lat + db, "galactic")
            ra.append(r)
            dec.append(d)
    cell = 3600 * np.degrees(np.sqrt(4 * np.pi / (12 * 4**11)))
    res = cutouts(
        survey, (np.array(ra), np.array(dec)), size=48, pixel_scale=0.8 * cell, interpolation="nearest", rotation=20.0
    )
    total = agree = 0
    for n in range(len(ra)):
        ref, _ = reference_nearest(reader, "galactic", ra[n], dec[n], 48, 0.8 * cell, 20.0)
        both_nan = np.isnan(ref) & np.isnan(res.images[n, 0])
        agree += np.sum((res.images[n, 0] == ref.astype(np.float32)) | both_nan)
        total += ref.size
        assert np.array_equal(res.mask[n, 0], ~np.isnan(ref))
    assert agree == total  # measured: every pixel
    assert np.isfinite(res.images).mean() > 0.5


def test_each_tile_read_once_per_call(tmp_path):
    korder, width = 3, 64
    root = render_function_hips(tmp_path / "s", wiggly, order=korder, tile_width=width, region=(40.0, 20.0, 8.0))
    survey = hipsml.open_survey(root)
    reader = TileReader(root, korder, width)
    rng = np.random.default_rng(0)
    ra = 40 + rng.uniform(-4, 4, 300)
    dec = 20 + rng.uniform(-4, 4, 300)
    cell = 3600 * np.degrees(np.sqrt(4 * np.pi / (12 * 4 ** (korder + 6))))
    before = survey.stats["tile_reads"]
    res = cutouts(survey, (ra, dec), size=16, pixel_scale=cell, interpolation="nearest", order=korder)
    needed = set()
    for n in range(ra.size):
        _, cells = reference_nearest(reader, "icrs", ra[n], dec[n], 16, cell)
        needed |= set((cells >> 12).ravel().tolist())
    assert res.tiles_read == len(needed)
    assert survey.stats["tile_reads"] - before == len(needed)


# ---------------------------------------------------------------- bilinear accuracy and seams


def _bilinear_error(tmp_path, korder: int, targets) -> float:
    """Max |cutout - f| over cutouts of a HiPS holding f at its cell centres."""
    root = render_function_hips(tmp_path / f"smooth{korder}", smooth, order=korder, tile_width=64, order_min=korder)
    survey = hipsml.open_survey(root)
    ra, dec = np.array(targets).T
    res = cutouts(survey, (ra, dec), size=32, fov=4 * 3600.0, order=korder)
    errs = []
    for n in range(ra.size):
        lon, lat = pixel_centres_in_frame(ra[n], dec[n], 32, 4 * 3600.0 / 32, "icrs")
        errs.append(np.abs(res.images[n, 0] - smooth(lon, lat)).max())
    assert res.mask.all()
    return float(max(errs))


def test_bilinear_error_small_and_shrinks_with_order(tmp_path):
    # inside faces the error falls as the cell size squared (~4x per order)
    inner = [(10.0, 20.0), (45.0, 60.0), (135.0, -41.81), (45.0, 0.0), (200.0, -30.0)]
    errors = {k: _bilinear_error(tmp_path / "inner", k, inner) for k in (2, 3, 4)}
    assert errors[3] < errors[2] / 3 and errors[4] < errors[3] / 3, errors
    assert errors[4] < 2e-5, errors
    # across polar-cap face edges, at face corners and near the poles the face grids are
    # turned against each other; weighting the real cell centres there keeps the error
    # falling faster than first order (which would be ~2x per order)
    kinks = [(200.0, 89.0), (77.0, -88.5), (90.5, 80.0), (0.0, 41.8103149)]
    kerr = {k: _bilinear_error(tmp_path / "kinks", k, kinks) for k in (2, 3, 4)}
    assert kerr[3] < kerr[2] / 2.5 and kerr[4] < kerr[3] / 2.5, kerr
    assert kerr[4] < 1e-4, kerr


def test_no_seams_across_tiles_and_faces(tmp_path):
    """Cutouts straddling tile edges, base-face edges, face corners and poles are continuous.

    A discontinuity gives the same step between neighbouring pixels however fine the pixels;
    a continuous image's steps shrink with the pixel size. Nearest-cell cutouts (which are
    discontinuous at every cell edge) show the metric does catch seams.
    """
    korder = 3
    root = render_function_hips(tmp_path / "s", smooth, order=korder, tile_width=64, order_min=korder)
    survey = hipsml.open_survey(root)
    targets = [(45.0, 0.0), (0.0, 41.8103149), (90.0, -41.8103149), (0.0, 90.0), (270.0, -90.0), (90.0, 70.0)]
    for c in hp.boundaries(1 << korder, [100, 500, 700], step=1, nest=True):
        lon, lat = hp.vec2ang(c.T, lonlat=True)
        targets += list(zip(lon.tolist(), lat.tolist(), strict=True))
    ra, dec = np.array(targets).T

    def max_step(scale, interpolation):
        res = cutouts(survey, (ra, dec), size=40, pixel_scale=scale, order=korder, interpolation=interpolation)
        assert res.mask.all()  # no NaN stripes
        im = res.images[:, 0]
        return np.maximum(np.abs(np.diff(im, axis=1)).max(axis=(1, 2)), np.abs(np.diff(im, axis=2)).max(axis=(1, 2)))

    shrink = max_step(60.0, "bilinear") / max_step(15.0, "bilinear")
    assert shrink.min() > 3.0, shrink
    control = max_step(60.0, "nearest") / max_step(15.0, "nearest")
    assert np.median(control) < 1.5, control
    # and the values are right there
    res = cutouts(survey, (ra, dec), size=40, pixel_scale=60.0, order=korder)
    for n in range(ra.size):
        lon, lat = pixel_centres_in_frame(ra[n], dec[n], 40, 60.0, "icrs")
        assert np.abs(res.images[n, 0] - smooth(lon, lat)).max() < 5e-4


# ---------------------------------------------------------------- behaviour


def test_multi_survey_channels_and_partial_coverage(tmp_path):
    a = render_function_hips(tmp_path / "a", smooth, order=3, tile_width=64, region=(30.0, 10.0, 3.0))
    b = render_function_hips(tmp_path / "b", lambda r, d: 2 * smooth(r, d), order=2, tile_width=128, frame="galactic")
    sa, sb = hipsml.open_survey(a), hipsml.open_survey(b)
    res = cutouts([sa, sb], SkyCoord([30.0, 60.0] * u.deg, [10.0, 10.0] * u.deg), size=32, pixel_scale=200.0)
    assert res.images.shape == (2, 2, 32, 32) and res.images.dtype == np.float32
    assert res.mask[0].all()  # inside survey a
    assert not res.mask[1, 0].any() and res.mask[1, 1].all()  # outside a, all-sky b
    assert np.allclose(res.images[0, 1], 2 * res.images[0, 0], rtol=2e-3, atol=2e-3)
    images, mask = res
    assert images is res.images and mask is res.mask
    # a cutout half off the survey is still produced, covered exactly where the nearest
    # cell's tile is on disk (an independent astropy WCS + healpy + FITS computation; a
    # point whose nearest cell holds data is kept, with every interpolation)
    lon_edge = 30.0 + 3.0 / np.cos(np.radians(10.0)) + 0.3
    reader = TileReader(a, 3, 64)
    for interpolation, rot in [("bilinear", 0.0), ("nearest", 25.0), ("bicubic", -40.0)]:
        half = cutouts(sa, ([lon_edge], [10.0]), size=64, pixel_scale=120.0, rotation=rot, interpolation=interpolation)
        ref, _ = reference_nearest(reader, "icrs", lon_edge, 10.0, 64, 120.0, rot)
        covered = np.isfinite(ref)
        assert 0.05 < covered.mean() < 0.95  # the cutout does straddle the survey's edge
        assert np.array_equal(half.mask[0, 0], covered), (interpolation, np.sum(half.mask[0, 0] != covered))
        assert np.isfinite(half.images[0, 0][covered]).all() and np.isnan(half.images[0, 0][~covered]).all()


def test_auto_order_is_logged_and_coarsest_sufficient(tmp_path, caplog):
    root = render_function_hips(tmp_path / "s", smooth, order=4, tile_width=64, region=(10.0, 10.0, 2.0))
    survey = hipsml.open_survey(root)
    cell = {k: 3600 * np.degrees(np.sqrt(4 * np.pi / (12 * 4 ** (k + 6)))) for k in range(5)}
    with caplog.at_level(logging.INFO, logger="hipsml.extract"):
        res = cutouts(survey, ([10.0], [10.0]), size=8, pixel_scale=cell[2] * 1.01)
    assert res.orders == (2,)
    assert "order 2" in caplog.text
    assert cutouts(survey, ([10.0], [10.0]), size=8, pixel_scale=cell[4] * 0.5).orders == (4,)
    assert cutouts(survey, ([10.0], [10.0]), size=8, pixel_scale=2e4).orders == (0,)


def test_bad_input_raises_clear_errors(tmp_path):
    root = render_function_hips(tmp_path / "s", smooth, order=1, tile_width=16)
    survey = hipsml.open_survey(root)
    good = ([1.0], [2.0])
    with pytest.raises(InvalidInputError, match="interpolation"):
        cutouts(survey, good, interpolation="cubic-spline")
    with pytest.raises(InvalidInputError, match="projection"):
        cutouts(survey, good, projection="AIT")
    with pytest.raises(InvalidInputError, match="target 1"):
        cutouts(survey, ([1.0, 2.0], [2.0, 95.0]))
    with pytest.raises(InvalidInputError, match="size"):
        cutouts(survey, good, size=0)
    with pytest.raises(InvalidInputError, match="pixel_scale or fov"):
        cutouts(survey, good, pixel_scale=1.0, fov=10.0)
    with pytest.raises(InvalidInputError, match="order 7"):
        cutouts(survey, good, order=7)
    with pytest.raises(InvalidInputError, match="12 is not a survey: give a HipsSurvey"):
        cutouts(12, good)
    with pytest.raises(InvalidInputError, match="is not a survey"):
        cutouts([object()], good)


@pytest.mark.parametrize("order", [0, 2, 5])
def test_cell_centres_match_healpy(order):
    from hipsml.extract._kernels import cell_centres
    from hipsml.hips._healpix import deinterleave_bits

    nside = 1 << order
    pix = np.arange(12 * nside * nside)
    ix, iy = deinterleave_bits(pix % (nside * nside))
    mine = cell_centres(pix // (nside * nside), ix, iy, nside)
    ref = np.array(hp.pix2vec(nside, pix, nest=True)).T
    assert np.abs(mine - ref).max() < 1e-14


def test_memory_limit_bounds_tiles_held(tmp_path):
    """Targets scattered over the whole sky: the call holds about memory_limit of tiles, not all."""
    import tracemalloc

    root = render_function_hips(tmp_path / "s", smooth, order=2, tile_width=256, order_min=2)  # 192 tiles, 48 MiB
    survey = hipsml.open_survey(root, memory_cache_bytes=1 << 20)
    rng = np.random.default_rng(1)
    n = 1500
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    cutouts(survey, (ra[:3], dec[:3]), size=8, pixel_scale=60.0, order=2)  # load the kernels first
    tracemalloc.start()
    try:
        res = cutouts(survey, (ra, dec), size=8, pixel_scale=60.0, order=2, memory_limit=8 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # at most max(64 tiles, budget) = 16 MiB of tiles plus decoding scratch (unbounded: ~97 MiB)
    assert peak < 24 << 20, peak / 2**20
    assert res.mask.all()
    for n_ in range(0, n, 250):
        lon, lat = pixel_centres_in_frame(ra[n_], dec[n_], 8, 60.0, "icrs")
        assert np.abs(res.images[n_, 0] - smooth(lon, lat)).max() < 1e-3


def test_argument_types_are_checked(tmp_path):
    root = render_function_hips(tmp_path / "s", smooth, order=1, tile_width=16)
    survey = hipsml.open_survey(root)
    good = ([1.0], [2.0])
    for kwargs, match in [
        (dict(rotation="abc"), "rotation"),
        (dict(order=None), "order"),
        (dict(order=1.5), "order"),
        (dict(memory_limit="x"), "memory_limit"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            cutouts(survey, good, size=4, **kwargs)
    with pytest.raises(InvalidInputError, match="angle"):
        cutouts(survey, (1.0 * u.m, 2.0 * u.m), size=4)
    # an angle Quantity is converted, not read as degrees
    assert cutouts(survey, good, size=4, rotation=0.5 * u.rad).rotation[0] == pytest.approx(np.degrees(0.5))
    # a 2-D SkyCoord is flattened
    sc = SkyCoord([[1.0, 2.0], [3.0, 4.0]] * u.deg, [[5.0, 6.0], [7.0, 8.0]] * u.deg)
    assert cutouts(survey, sc, size=4).images.shape == (4, 1, 4, 4)


def test_bicubic_is_more_accurate_away_from_face_edges(tmp_path):
    targets = [(10.0, 20.0), (200.0, -30.0), (100.0, -20.0)]
    root = render_function_hips(tmp_path / "s", smooth, order=3, tile_width=64, order_min=3)
    survey = hipsml.open_survey(root)
    ra, dec = np.array(targets).T
    errs = {}
    for interp in ("bilinear", "bicubic"):
        res = cutouts(survey, (ra, dec), size=32, fov=4 * 3600.0, order=3, interpolation=interp)
        assert res.mask.all()
        errs[interp] = max(
            np.abs(res.images[n, 0] - smooth(*pixel_centres_in_frame(ra[n], dec[n], 32, 450.0, "icrs"))).max()
            for n in range(ra.size)
        )
    assert errs["bicubic"] < errs["bilinear"] / 10, errs
    # near face edges, poles and the cap/belt line it falls back to the (geometric) bilinear
    hard = [(45.0, 0.0), (0.0, 41.8103149), (0.0, 90.0), (135.0, -41.81)]
    ra, dec = np.array(hard).T
    res = cutouts(survey, (ra, dec), size=32, fov=4 * 3600.0, order=3, interpolation="bicubic")
    for n in range(ra.size):
        lon, lat = pixel_centres_in_frame(ra[n], dec[n], 32, 450.0, "icrs")
        assert np.abs(res.images[n, 0] - smooth(lon, lat)).max() < 5e-4


def test_bicubic_coverage_and_channels_match_bilinear(tmp_path):
    a = render_function_hips(tmp_path / "a", smooth, order=3, tile_width=64, region=(30.0, 10.0, 3.0))
    b = render_function_hips(
        tmp_path / "b", lambda r, d: 2 * smooth(r, d), order=3, tile_width=64, region=(30.0, 10.0, 6.0)
    )
    sa, sb = hipsml.open_survey(a), hipsml.open_survey(b)
    lon_edge = 30.0 + 3.0 / np.cos(np.radians(10.0)) + 0.3
    target = ([lon_edge, 30.0], [10.0, 10.0])
    bil = cutouts([sa, sb], target, size=48, pixel_scale=120.0, interpolation="bilinear")
    cub = cutouts([sa, sb], target, size=48, pixel_scale=120.0, interpolation="bicubic")
    assert np.array_equal(bil.mask, cub.mask)  # the nearest cell decides coverage in both
    assert 0.05 < cub.mask[0, 0].mean() < 0.95 and cub.mask[:, 1].all()
    # well inside both surveys the two channels are the same interpolation of f and 2f
    # (near a's edge a falls back to bilinear where its 4x4 meets blank cells, b does not)
    assert np.allclose(cub.images[1, 1], 2 * cub.images[1, 0], rtol=1e-5, atol=1e-5)
    alone = cutouts(sb, target, size=48, pixel_scale=120.0, interpolation="bicubic")
    assert np.array_equal(alone.images[:, 0], cub.images[:, 1], equal_nan=True)
