"""The engine's pieces: CutoutSpec, plan_work_units, extract_unit, SurveyRef and the per-process cache."""

from __future__ import annotations

import multiprocessing
import pickle

import healpy as hp
import numpy as np
import pytest

import hipsml
from hipsml.errors import InvalidInputError
from hipsml.extract import CutoutSpec, SurveyRef, UnitExtractor, extract_unit, open_cached, plan_work_units
from hipsml.sky import render_function_hips


def smooth(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    a, d = np.radians(ra), np.radians(dec)
    return np.cos(3 * a) * np.cos(d) + np.sin(2 * d)


@pytest.fixture(scope="module")
def survey_dir(tmp_path_factory):
    return render_function_hips(tmp_path_factory.mktemp("plan") / "s", smooth, order=6, tile_width=64,
                                region=(150.0, 2.0, 3.0))  # fmt: skip


def _targets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return 150.0 + rng.uniform(-2, 2, n), 2.0 + rng.uniform(-2, 2, n)


def test_plan_covers_every_target_once_in_nested_order_and_tile_compact(survey_dir):
    survey = hipsml.open_survey(survey_dir)
    ra, dec = _targets(20_000)
    spec = CutoutSpec.for_surveys(survey, size=16, pixel_scale=30.0, order=6)
    units = plan_work_units(ra, dec, spec, [survey], target_per_unit=1000)
    rows = np.concatenate([u.rows for u in units])
    assert np.array_equal(np.sort(rows), np.arange(ra.size))
    cells = hp.ang2pix(1 << 12, ra[rows], dec[rows], nest=True, lonlat=True)
    assert np.all(np.diff(cells) >= 0)
    assert all(500 <= len(u) <= 1000 for u in units[:-1])
    # tile-compact: a unit spans far fewer order-6 tiles than a random group of the same size
    tiles = hp.ang2pix(1 << 6, ra, dec, nest=True, lonlat=True)
    planned = np.mean([np.unique(tiles[u.rows]).size for u in units])
    rng = np.random.default_rng(1)
    random_groups = np.mean([np.unique(tiles[rng.choice(ra.size, 1000, replace=False)]).size for _ in range(10)])
    assert planned < random_groups / 5
    # and a unit ends where the tile under the centres changes when that happens in its second half
    visited = tiles[rows]
    change = np.flatnonzero(visited[1:] != visited[:-1]) + 1
    start, checked = 0, 0
    for u in units[:-1]:
        end = start + len(u)
        if np.any((change > start + 500) & (change <= start + 1000)):
            assert end in change
            checked += 1
        start = end
    assert checked >= 3
    # pure: same input, same plan
    again = plan_work_units(ra, dec, spec, [survey], target_per_unit=1000)
    assert all(np.array_equal(a.rows, b.rows) for a, b in zip(units, again, strict=True)) and len(units) == len(again)


def test_aligned_presorted_plans_own_whole_chunks(survey_dir):
    survey = hipsml.open_survey(survey_dir)
    ra, dec = _targets(5000)
    order = np.argsort(hp.ang2pix(1 << 12, ra, dec, nest=True, lonlat=True), kind="stable")
    ra, dec = ra[order], dec[order]
    spec = CutoutSpec.for_surveys(survey, size=16, pixel_scale=30.0)
    units = plan_work_units(ra, dec, spec, [survey], target_per_unit=700, align=64, presorted=True)
    starts = [u.start for u in units]
    assert starts[0] == 0 and all(s % 64 == 0 for s in starts)
    assert all(np.array_equal(u.rows, np.arange(u.start, u.start + len(u))) for u in units)
    assert sum(len(u) for u in units) == 5000


def test_extract_unit_fills_blocks_identical_to_cutouts(survey_dir):
    survey = hipsml.open_survey(survey_dir)
    ra, dec = _targets(3000, seed=2)
    rot = np.linspace(0, 90, ra.size)
    whole = hipsml.cutouts(survey, (ra, dec), size=16, pixel_scale=30.0, rotation=rot)
    spec = CutoutSpec.for_surveys(survey, size=16, pixel_scale=30.0)
    units = plan_work_units(ra, dec, spec, [survey], rotation=rot, target_per_unit=512)
    out = np.full((len(units[1]), 1, 16, 16), -1.0, dtype=np.float32)
    extract_unit([SurveyRef(survey_dir)], spec, units[1], out=out)
    assert np.array_equal(out, whole.images[units[1].rows], equal_nan=True)
    assert np.isfinite(out).all()
    with pytest.raises(InvalidInputError, match="C-contiguous float32"):
        extract_unit([survey], spec, units[0], out=np.zeros((3, 1, 16, 16), np.float32))


def test_unit_extractor_keeps_tiles_and_cuts_what_extract_unit_cuts(survey_dir):
    survey = hipsml.open_survey(survey_dir)
    ra, dec = _targets(2000, seed=4)
    rot = np.random.default_rng(5).uniform(0, 360, ra.size)
    # a small tile budget: the slab is emptied between batches while units keep coming
    spec = CutoutSpec.for_surveys(survey, size=16, pixel_scale=30.0, memory_limit=64 * 64 * 4 * 70)
    units = plan_work_units(ra, dec, spec, [survey], rotation=rot, target_per_unit=256)
    extractor = UnitExtractor([survey], spec)
    reads = []
    for _ in range(2):  # a second pass over the same sky, as the next epoch of a loader
        for k in np.random.default_rng(6).permutation(len(units)):
            stats: dict[str, float] = {}
            got = extractor.extract(spec, units[k], stats=stats)
            assert np.array_equal(got, extract_unit([survey], spec, units[k]), equal_nan=True)
            reads.append(stats["tiles_read"])
    assert sum(reads[len(units) :]) < sum(reads[: len(units)])  # tiles kept from unit to unit
    # another pixel scale (scale jitter) with the same orders: the same tiles, other cutouts
    jitter = CutoutSpec(size=16, pixel_scale=33.0, orders=spec.orders, memory_limit=spec.memory_limit)
    assert np.array_equal(extractor.extract(jitter, units[0]), extract_unit([survey], jitter, units[0]), equal_nan=True)
    with pytest.raises(InvalidInputError, match="orders and memory_limit"):
        extractor.extract(CutoutSpec(size=16, pixel_scale=30.0, orders=(5,)), units[0])


def test_spec_validation():
    with pytest.raises(InvalidInputError, match="smaller than 180 deg"):
        CutoutSpec(size=64, pixel_scale=1e5, orders=(3,))
    with pytest.raises(InvalidInputError, match="hemisphere"):
        CutoutSpec(size=64, pixel_scale=5000.0, orders=(3,), projection="SIN")
    with pytest.raises(InvalidInputError, match="interpolation"):
        CutoutSpec(size=64, pixel_scale=1.0, orders=(3,), interpolation=["x"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="rotation"):
        CutoutSpec(size=64, pixel_scale=1.0, orders=(3,), rotation=1e300)
    with pytest.raises(InvalidInputError, match="orders"):
        CutoutSpec(size=64, pixel_scale=1.0, orders=(30,))
    spec = CutoutSpec(size=64, pixel_scale=1.8, orders=(9,))
    assert pickle.loads(pickle.dumps(spec)) == spec and hash(spec) == hash(
        CutoutSpec(size=64, pixel_scale=1.8, orders=(9,))
    )


def test_cutouts_refuse_absurd_coordinates(survey_dir):
    survey = hipsml.open_survey(survey_dir)
    for ra, dec in ((1e308, 0.0), (np.nan, 0.0), (0.0, 91.0)):
        with pytest.raises(InvalidInputError, match="target 0: (ra|dec)"):
            hipsml.cutouts(survey, ([ra], [dec]), size=8, pixel_scale=30.0)
    with pytest.raises(InvalidInputError, match="complex"):
        hipsml.cutouts(survey, ([150 + 1j], [2.0]), size=8, pixel_scale=30.0)
    result = hipsml.cutouts(survey, ([150.0], [2.0]), size=8, pixel_scale=30.0)
    with pytest.raises(InvalidInputError, match="out of range"):
        result.wcs(5)
    images, mask = result
    assert images.shape == (1, 1, 8, 8) and mask.all()


def _stats_in_child(ref: SurveyRef, queue) -> None:
    survey = open_cached(ref)
    before = survey.stats["tile_reads"]
    survey.read_tile(survey.order, 0)
    queue.put((before, survey.stats["tile_reads"], open_cached(ref) is survey))


def test_survey_cache_is_per_process_and_counters_start_at_zero(survey_dir):
    ref = SurveyRef(survey_dir)
    parent = open_cached(ref)
    assert open_cached(SurveyRef(survey_dir)) is parent  # one open per process
    npix = int(hp.ang2pix(1 << parent.order, 150.0, 2.0, nest=True, lonlat=True))
    parent.read_tile(parent.order, npix)
    assert parent.stats["tile_reads"] >= 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_stats_in_child, args=(ref, queue))
    child.start()
    before, after, same = queue.get(timeout=60)
    child.join(timeout=60)
    assert before == 0 and same  # a forked worker opens its own survey: counters start at zero
    with pytest.raises(InvalidInputError):
        SurveyRef(survey_dir, {"retries": [1]})  # options must be hashable


def test_auto_order_skips_orders_without_tiles(tmp_path, caplog):
    import shutil

    root = render_function_hips(tmp_path / "gap", smooth, order=5, order_min=3, tile_width=64, region=(150.0, 2.0, 3.0))
    shutil.rmtree(root / "Norder4")
    survey = hipsml.open_survey(root)
    assert survey.orders == (3, 5)
    cell4 = 3600 * np.degrees(np.sqrt(4 * np.pi / (12 * 4 ** (4 + 6))))  # order 4 cells, 64-pixel tiles
    result = hipsml.cutouts(survey, ([150.0], [2.0]), size=16, pixel_scale=cell4 * 1.01)
    assert result.orders == (5,)  # 4 would fit, but holds no tile: the next finer order that does
    assert np.isfinite(result.images).all()
    # a whole request off the survey's tiles is logged, not silent
    with caplog.at_level("WARNING", logger="hipsml.extract"):
        empty = hipsml.cutouts(survey, ([10.0], [-60.0]), size=8, pixel_scale=cell4)
    assert np.isnan(empty.images).all() and "every cutout is empty" in caplog.text
