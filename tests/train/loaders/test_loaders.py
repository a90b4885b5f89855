"""The training loaders: zarr_batches and sky_batches on a small real dataset, and the normalisations."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zarr
from dataset_helpers import recipe_data, small_sky
from zarr.storage import LocalStore, WrapperStore

import hipsml
from hipsml.errors import InvalidInputError
from hipsml.train import (
    ChannelStats,
    asinh_stretch,
    channel_stats,
    fill_nan,
    minmax,
    parse_normalisation,
    percentile_clip,
    plan_epoch,
    sky_batches,
    standardise,
    zarr_batches,
)
from hipsml.train.loaders._normalise import prepare_batch
from hipsml.train.loaders._sky import offset_centres


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> Path:
    return small_sky(tmp_path_factory.mktemp("loader-sky"))


@pytest.fixture(scope="module")
def ds(sky, tmp_path_factory) -> hipsml.Dataset:
    # 120 cutouts of 2 x 32 x 32 in chunks of 6 rows (20 chunks)
    return hipsml.extract_dataset(recipe_data(sky, tmp_path_factory.mktemp("loader-ds") / "ds"))


def _epoch(loader) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[int]]:
    batches = list(loader)
    images = np.concatenate([b.images for b in batches])
    rows = np.concatenate([b.rows for b in batches])
    labels = None if batches[0].labels is None else np.concatenate([b.labels for b in batches])
    return images, rows, labels, [len(b.rows) for b in batches]


def _loader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hipsml-loader")]


# --- zarr_batches -------------------------------------------------------------------------


def test_zarr_batches_deliver_every_row_of_the_split_once_with_its_image_and_label(ds):
    assert ds.images.chunks[0] == 6 and len(ds) == 120
    codes = ds.column("label")
    for split in ("train", "val", None):
        want = ds.split(split) if split else np.arange(len(ds))
        images, rows, labels, sizes = _epoch(zarr_batches(ds, split, batch_size=7, window_chunks=3, nan_to=None))
        assert np.array_equal(np.sort(rows), want)  # each row exactly once
        assert sizes == [7] * (want.size // 7) + ([want.size % 7] if want.size % 7 else [])
        assert images.dtype == np.float32 and images.shape == (want.size, 2, 32, 32)
        assert np.array_equal(images, ds.images.oindex[rows], equal_nan=True)  # each image is its row's
        assert labels.dtype == np.int64 and np.array_equal(labels, codes[rows])
    loader = zarr_batches(ds, "train", batch_size=7, drop_last=True)
    _, rows, _, sizes = _epoch(loader)
    assert sizes == [7] * (ds.split("train").size // 7) == [7] * len(loader)
    assert zarr_batches(ds, labels=False).__iter__().__next__().labels is None


def test_zarr_batches_are_deterministic_for_seed_and_epoch(ds):
    def rows_of(**kw):
        return _epoch(zarr_batches(ds, "train", batch_size=16, window_chunks=2, **kw))[1]

    a = _epoch(zarr_batches(ds, "train", batch_size=16, window_chunks=2, seed=5, epoch=3, normalise="minmax"))
    b = _epoch(zarr_batches(ds, "train", batch_size=16, window_chunks=2, seed=5, epoch=3, normalise="minmax"))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert not np.array_equal(rows_of(seed=5, epoch=3), rows_of(seed=5, epoch=4))
    assert not np.array_equal(rows_of(seed=5, epoch=3), rows_of(seed=6, epoch=3))
    assert np.array_equal(rows_of(shuffle=False), ds.split("train"))  # no shuffle: dataset order
    loader = zarr_batches(ds, "train", batch_size=16, seed=5)
    assert np.array_equal(_epoch(loader.for_epoch(2))[1], _epoch(zarr_batches(ds, "train", batch_size=16, seed=5,
                                                                              epoch=2))[1])  # fmt: skip


class _CountingStore(WrapperStore):
    """A real local store that counts the reads of each key."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.reads: Counter[str] = Counter()

    async def get(self, key, prototype, byte_range=None):
        self.reads[key] += 1
        return await self._store.get(key, prototype, byte_range)


def test_zarr_batches_read_whole_chunks_each_once_per_epoch_in_windows(ds):
    counted = hipsml.open_dataset(ds.path)
    store = _CountingStore(LocalStore(counted.location, read_only=True))
    counted.group = zarr.open_group(store=store, mode="r")
    chunk, window = 6, 3
    loader = zarr_batches(counted, "train", batch_size=10, window_chunks=window, seed=1, threads=2)
    store.reads.clear()
    _, rows, _, _ = _epoch(loader)
    image_reads = {k: v for k, v in store.reads.items() if k.startswith("images/c/")}
    want = {f"images/c/{c}/0/0/0" for c in np.unique(ds.split("train") // chunk)}
    assert set(image_reads) == want and set(image_reads.values()) == {1}  # each chunk decoded once
    # the order property: the epoch is a run of windows, each from at most `window` chunks,
    # so a batch (which may join two windows) holds rows of at most 2 * window chunks
    plan = loader.plan()
    assert np.array_equal(loader.rows[plan.order], rows)
    start = 0
    for order in plan.orders:
        assert np.unique(loader.rows[order] // chunk).size <= window
        assert np.array_equal(np.sort(rows[start : start + order.size]), np.sort(loader.rows[order]))
        start += order.size
    for b in range(0, rows.size, 10):
        assert np.unique(rows[b : b + 10] // chunk).size <= 2 * window


def test_plan_epoch_is_a_pure_function_of_seed_and_epoch():
    blocks = [np.arange(i * 5, i * 5 + 5) for i in range(9)] + [np.zeros(0, dtype=np.int64)]
    p1, p2 = plan_epoch(blocks, seed=2, epoch=1, window=4), plan_epoch(blocks, seed=2, epoch=1, window=4)
    assert np.array_equal(p1.order, p2.order) and sorted(p1.order.tolist()) == list(range(45))
    assert [w.size for w in p1.windows] == [4, 4, 1]  # the empty block is skipped
    assert not np.array_equal(p1.order, plan_epoch(blocks, seed=2, epoch=2, window=4).order)
    assert np.array_equal(plan_epoch(blocks, shuffle=False, window=4).order, np.arange(45))


def test_float16_datasets_come_out_float32(sky, tmp_path):
    half = hipsml.extract_dataset(recipe_data(sky, tmp_path / "half", output={"dtype": "float16"}))
    assert half.images.dtype == np.float16
    images, rows, _, _ = _epoch(zarr_batches(half, None, batch_size=50, nan_to=None))
    assert images.dtype == np.float32
    assert np.array_equal(images, half.images.oindex[rows].astype(np.float32), equal_nan=True)


def test_mask_channel_and_nan_fill_in_the_loader(ds, tmp_path):
    # blank some pixels in a copy of the dataset: they come out as 0 with a 0 in the mask channel
    copy = tmp_path / "copy"
    shutil.copytree(ds.path, copy)
    blanked = hipsml.open_dataset(copy)
    arr = zarr.open_array(blanked.location / "images", mode="r+")
    block = arr[0:6]
    block[2, 1, :5, :] = np.nan
    arr[0:6] = block
    images, rows, _, _ = _epoch(zarr_batches(blanked, None, batch_size=40, mask_channel=True))
    assert images.shape == (120, 3, 32, 32)
    j = int(np.flatnonzero(rows == 2)[0])
    assert np.all(images[j, 1, :5] == 0) and np.all(images[j, 2, :5] == 0) and np.all(images[j, 2, 5:] == 1)
    assert np.array_equal(images[j, 0], block[2, 0])
    others = np.flatnonzero(rows != 2)
    assert np.all(images[others, 2] == 1)


def test_early_stop_leaves_no_prefetch_thread(ds):
    before = _loader_threads()
    assert before == []
    for _batch in zarr_batches(ds, "train", batch_size=4, prefetch=1):
        assert _loader_threads()  # the prefetch and reader threads run
        break
    assert _loader_threads() == []
    for _batch in zarr_batches(ds, "train", batch_size=4, prefetch=0):  # no prefetch thread, reader threads only
        break
    assert _loader_threads() == []
    it = iter(sky_batches(ds, batch_size=4, unit_size=8, prefetch=1))
    next(it)
    it.close()
    assert _loader_threads() == []
    with pytest.raises(ZeroDivisionError):
        for _batch in zarr_batches(ds, "train", batch_size=4):
            raise ZeroDivisionError("the consumer fails at its first batch")
    assert _loader_threads() == []


def test_errors_in_the_reader_threads_reach_the_consumer(ds, tmp_path):
    copy = tmp_path / "broken"
    shutil.copytree(ds.path, copy)
    broken = hipsml.open_dataset(copy)
    (broken.location / "images" / "c" / "3" / "0" / "0" / "0").write_bytes(b"not a blosc chunk")
    with pytest.raises(
        hipsml.errors.DatasetError, match=r"v1: array 'images' chunk 3 \(rows 18\.\.23\) cannot be read"
    ):
        list(zarr_batches(broken, None, batch_size=8))
    assert _loader_threads() == []


def test_bad_arguments_are_one_line_errors(ds):
    with pytest.raises(InvalidInputError, match="no split 'trian'"):
        zarr_batches(ds, "trian")
    with pytest.raises(InvalidInputError, match="batch_size must be an integer >= 1, got 0"):
        zarr_batches(ds, batch_size=0)
    with pytest.raises(InvalidInputError, match="unknown normalisation 'minmx'; did you mean 'minmax'"):
        zarr_batches(ds, normalise="minmx")
    with pytest.raises(InvalidInputError, match="has no option 'lowr'; did you mean 'lower'"):
        parse_normalisation({"name": "percentile", "lowr": 5})
    with pytest.raises(InvalidInputError, match="'minmax' takes no options, got 'a'"):
        parse_normalisation({"name": "minmax", "a": 1})
    with pytest.raises(InvalidInputError, match="nan_to"):
        zarr_batches(ds, nan_to="nan please")
    with pytest.raises(InvalidInputError, match="scale_jitter"):
        sky_batches(ds, scale_jitter=1.5)
    for err in (InvalidInputError("x"),):
        assert isinstance(err, ValueError) and isinstance(err, hipsml.HipsmlError)


# --- normalisations -----------------------------------------------------------------------


def _batch(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(5.0, 2.0, (4, 2, 8, 8)).astype(np.float32)
    x[1, 0, 0, :3] = np.nan  # some blank pixels
    x[2, 1] = 7.0  # a constant channel
    x[3, 0] = np.nan  # an empty channel
    return x


def test_minmax_asinh_percentile_match_independent_expectations():
    from astropy.visualization import AsinhStretch, AsymmetricPercentileInterval, MinMaxInterval

    x = _batch()
    before = x.copy()
    y_mm, y_as, y_pc = minmax(x), asinh_stretch(x, a=0.2), percentile_clip(x, lower=5, upper=95)
    assert np.array_equal(x, before, equal_nan=True)  # inputs untouched
    for b in range(4):
        for c in range(2):
            img = x[b, c].astype(np.float64)
            if b == 3 and c == 0:  # empty: stays NaN
                assert np.isnan(y_mm[b, c]).all() and np.isnan(y_pc[b, c]).all()
                continue
            if b == 2 and c == 1:  # constant: 0
                assert np.all(y_mm[b, c] == 0) and np.all(y_pc[b, c] == 0)
                continue
            lo, hi = np.nanmin(img), np.nanmax(img)  # hand-computed min-max
            np.testing.assert_allclose(y_mm[b, c], (img - lo) / (hi - lo), rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(y_as[b, c], AsinhStretch(0.2)(MinMaxInterval()(img)), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(y_pc[b, c], AsymmetricPercentileInterval(5, 95)(img), rtol=1e-5, atol=1e-6)
    assert np.isnan(y_mm[1, 0, 0, :3]).all() and np.isfinite(y_mm[1, 0, 1:]).all()


def test_standardise_uses_the_training_statistics_for_every_split(ds, tmp_path):
    train = ds.split("train")
    data = ds.images.oindex[train].astype(np.float64)
    stats = channel_stats(ds, split="train", sample=10_000)  # the whole split
    assert stats.rows == train.size
    np.testing.assert_allclose(stats.mean, [np.nanmean(data[:, c]) for c in range(2)], rtol=1e-12)
    np.testing.assert_allclose(stats.std, [np.nanstd(data[:, c]) for c in range(2)], rtol=1e-12)
    # a sample of whole chunks: deterministic, and of the requested size
    s1, s2 = channel_stats(ds, sample=20, seed=4), channel_stats(ds, sample=20, seed=4)
    assert s1 == s2 and s1.rows == 20 and s1 != channel_stats(ds, sample=20, seed=5)
    # loading val standardises with the train statistics
    val = zarr_batches(ds, "val", normalise={"name": "standardise", "sample": 10_000}, nan_to=None, shuffle=False)
    assert val.normalisation.stats == stats
    images, rows, _, _ = _epoch(val)
    raw = ds.images.oindex[rows].astype(np.float64)
    want = (raw - np.array(stats.mean)[None, :, None, None]) / np.array(stats.std)[None, :, None, None]
    np.testing.assert_allclose(images, want, rtol=1e-5, atol=1e-5)
    # stored and reused
    path = stats.save(tmp_path / "stats.json")
    assert ChannelStats.load(path) == stats
    assert parse_normalisation({"name": "standardise", "stats": str(path)}).stats == stats
    x = np.ones((1, 2, 2, 2), dtype=np.float32)
    np.testing.assert_allclose(standardise(x, stats)[0, :, 0, 0], (1 - np.array(stats.mean)) / np.array(stats.std),
                               rtol=1e-6)  # fmt: skip


def test_fill_nan_and_mask_channel():
    x = _batch()
    y = fill_nan(x.copy(), 0.0, mask_channel=True)
    assert y.shape == (4, 3, 8, 8)
    assert np.all(y[1, 0, 0, :3] == 0) and np.all(y[1, 2, 0, :3] == 0) and np.all(y[1, 2, 0, 3:] == 1)
    assert np.all(y[3, 2] == 0) and np.all(y[0, 2] == 1) and np.array_equal(y[0, :2], x[0])
    z = fill_nan(x.copy(), -1.0)
    assert z.shape == x.shape and np.all(z[3, 0] == -1.0) and not np.isnan(z).any()
    assert np.isnan(fill_nan(x.copy(), None)).sum() == np.isnan(x).sum()


def test_loaders_minmax_in_one_pass_is_bitwise_minmax_then_fill():
    # prepare_batch rescales and fills NaN in one compiled pass for minmax: the same bits as
    # numpy's minmax followed by fill_nan, signed zeros, infinities and overflow included
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((16, 3, 8, 8)) * 1e3).astype(np.float32)
    x[0, 1] = np.nan
    x[1, 0] = 5.0
    x[2, 2, :2] = np.nan
    x[3, 0, 0, 0], x[4, 1, 0, 0] = np.inf, -np.inf
    x[5, 0] = rng.choice([0.0, -0.0, 2.0], (8, 8))
    x[6, 0, 0, :2] = 3e38, -3e38
    norm = parse_normalisation("minmax")
    with np.errstate(all="ignore"):
        flat = x.reshape(16, 3, -1)  # numpy, step by step, in float32
        lo, hi = np.fmin.reduce(flat, axis=2), np.fmax.reduce(flat, axis=2)
        scale = np.where(hi - lo > 0, np.float32(1.0) / (hi - lo), np.float32(0.0)).astype(np.float32)
        ref = ((flat - lo[..., None]) * scale[..., None]).reshape(x.shape)
        for nan_to in (0.0, -1.0, None):
            want = ref.copy()
            if nan_to is not None:
                want[np.isnan(want)] = nan_to
            got = prepare_batch(x.copy(), norm, nan_to=nan_to)
            assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))
            assert np.array_equal(fill_nan(minmax(x), nan_to).view(np.uint32), want.view(np.uint32))


# --- sky_batches ----------------------------------------------------------------------------


def test_sky_batches_deliver_every_target_once_deterministically(ds):
    kw = {"batch_size": 10, "unit_size": 12, "window_units": 2, "nan_to": None}
    a = _epoch(sky_batches(ds, seed=3, epoch=1, **kw))
    b = _epoch(sky_batches(ds, seed=3, epoch=1, **kw))
    assert np.array_equal(np.sort(a[1]), ds.split("train"))  # every target once
    assert np.array_equal(a[0], b[0], equal_nan=True) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[2], ds.column("label")[a[1]])
    source = sky_batches(ds, seed=3, epoch=1, **kw)
    c = _epoch(source.for_epoch(2))
    assert not np.array_equal(a[1], c[1])  # another order ...
    assert not np.allclose(source.augmentation().rotation, source.for_epoch(2).augmentation().rotation)  # ... angles
    assert np.array_equal(np.sort(c[1]), ds.split("train"))


def test_sky_rotation_is_exact_reprojection(ds, sky):
    source = sky_batches(ds, split="val", batch_size=8, unit_size=8, nan_to=None, seed=9)
    batch = next(iter(source))
    aug = source.augmentation().select(batch.rows)
    assert np.all((aug.rotation >= 0) & (aug.rotation < 360)) and np.unique(aug.rotation).size == 8
    assert np.array_equal(aug.ra, ds.column("ra")[batch.rows])  # no shift asked: the targets themselves
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    for j in range(len(batch.rows)):
        ref = hipsml.cutouts(surveys, ([aug.ra[j]], [aug.dec[j]]), size=32, pixel_scale=4.0, rotation=aug.rotation[j])
        assert np.array_equal(batch.images[j], ref.images[0], equal_nan=True)
    # rotated: differs from the stored unrotated cutout, except where the angle is ~0
    stored = ds.images.oindex[batch.rows]
    assert not np.allclose(batch.images, stored)


def test_sky_without_augmentation_reproduces_the_dataset(ds):
    images, rows, _, _ = _epoch(sky_batches(ds, split=None, batch_size=32, unit_size=16, rotation=None,
                                            shuffle=False, nan_to=None))  # fmt: skip
    assert np.array_equal(rows, np.arange(len(ds)))
    assert np.array_equal(images, ds.images[:], equal_nan=True)


def test_sky_shift_is_the_wcs_pixel_offset_and_scale_jitter_is_exact(ds, sky):
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 20), rng.uniform(-80, 80, 20)
    rot, dx, dy = rng.uniform(0, 360, 20), rng.uniform(-0.5, 0.5, 20), rng.uniform(-0.5, 0.5, 20)
    for proj in ("TAN", "SIN"):
        got_ra, got_dec = offset_centres(ra, dec, rot, dx, dy, 4.0, proj)
        for i in range(20):
            w = hipsml.cutout_wcs(ra[i], dec[i], size=32, pixel_scale=4.0, projection=proj, rotation=rot[i])
            c = w.pixel_to_world(15.5 + dx[i], 15.5 + dy[i])  # 0-based CRPIX is 15.5
            assert abs(((got_ra[i] - c.ra.deg + 180) % 360) - 180) * np.cos(np.radians(dec[i])) < 1e-10
            assert abs(got_dec[i] - c.dec.deg) < 1e-10
    source = sky_batches(ds, split="test", batch_size=6, unit_size=6, nan_to=None, shift_pixels=0.5, scale_jitter=0.2)
    batch = next(iter(source))
    aug = source.augmentation().select(batch.rows)
    assert np.all(np.abs(aug.dx) <= 0.5) and np.any(aug.dx != 0)
    assert np.all((aug.pixel_scale >= 3.2) & (aug.pixel_scale <= 4.8))
    assert np.unique(source.augmentation().pixel_scale).size > 1  # one scale per unit
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    orders = list(source.spec.orders)
    for j in range(len(batch.rows)):
        ref = hipsml.cutouts(surveys, ([aug.ra[j]], [aug.dec[j]]), size=32, pixel_scale=aug.pixel_scale[j],
                             rotation=aug.rotation[j], order=orders)  # fmt: skip
        assert np.array_equal(batch.images[j], ref.images[0], equal_nan=True)


def test_sky_epochs_reuse_their_extractors_and_stay_exact(ds, sky):
    # extractors (and their decoded tiles) carry over from epoch to epoch: every cutout of a
    # later epoch is still the engine's, with scale jitter changing the spec per unit
    source = sky_batches(ds, split="train", batch_size=16, unit_size=8, nan_to=None, scale_jitter=0.1, threads=2)
    _epoch(source)
    assert not source.extractors.empty()
    later = source.for_epoch(1)
    assert later.extractors is source.extractors
    images, rows, _, _ = _epoch(later)
    aug = later.augmentation().select(rows)
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    for j in range(0, rows.size, 7):
        ref = hipsml.cutouts(surveys, ([aug.ra[j]], [aug.dec[j]]), size=32, pixel_scale=aug.pixel_scale[j],
                             rotation=aug.rotation[j], order=list(source.spec.orders))  # fmt: skip
        assert np.array_equal(images[j], ref.images[0], equal_nan=True)


def test_sky_batches_from_surveys_and_targets(sky):
    from astropy.table import Table

    cat = Table.read(sky / "catalogue.ecsv")[:30]
    surveys = [hipsml.open_survey(sky / "r")]
    labels = np.arange(30) % 4
    source = sky_batches(surveys, (np.asarray(cat["ra"]), np.asarray(cat["dec"])), labels=labels, size=16,
                         pixel_scale=5.0, batch_size=8, unit_size=8, normalise="minmax", seed=1)  # fmt: skip
    images, rows, got_labels, sizes = _epoch(source)
    assert sizes == [8, 8, 8, 6] and np.array_equal(np.sort(rows), np.arange(30))
    assert np.array_equal(got_labels, labels[rows])
    assert images.shape == (30, 1, 16, 16) and images.min() == 0.0 and images.max() == 1.0
    aug = source.augmentation().select(rows[:1])
    ref = hipsml.cutouts(surveys, ([cat["ra"][rows[0]]], [cat["dec"][rows[0]]]), size=16, pixel_scale=5.0,
                         rotation=aug.rotation[0])  # fmt: skip
    np.testing.assert_allclose(images[0], minmax(ref.images)[0], rtol=1e-6, atol=1e-6)
    by_path = sky_batches(str(sky / "r"), (np.asarray(cat["ra"]), np.asarray(cat["dec"])), size=16, pixel_scale=5.0,
                          batch_size=8, unit_size=8, normalise="minmax", seed=1)  # fmt: skip
    assert np.array_equal(_epoch(by_path)[0], images)


def test_direct_chunk_reads_equal_zarr_reads(ds, sky, tmp_path):
    from hipsml.train.loaders._zarr import _direct_blosc_reader, chunk_reader

    output = {"dtype": "float16", "compressor": "zstd"}
    half = hipsml.extract_dataset(recipe_data(sky, tmp_path / "half", output=output))
    for d in (ds, half):
        read = _direct_blosc_reader(d.images)
        assert read is not None  # hipsml's own layout takes the direct route
        chunk = d.images.chunks[0]
        for k in range(-(-len(d) // chunk)):
            lo, hi = k * chunk, min(len(d), (k + 1) * chunk)
            got = read(k, lo, hi)
            assert got.dtype == d.images.dtype and np.array_equal(got, d.images[lo:hi], equal_nan=True)
    # a chunk never written reads as the fill value, as zarr reads it
    copy = tmp_path / "copy"
    shutil.copytree(ds.path, copy)
    holed = hipsml.open_dataset(copy)
    (holed.location / "images" / "c" / "4" / "0" / "0" / "0").unlink()
    assert np.isnan(chunk_reader(holed.images)(4, 24, 30)).all() and np.isnan(holed.images[24:30]).all()
    # another store: zarr's own route
    wrapped = zarr.open_group(store=_CountingStore(LocalStore(ds.location, read_only=True)), mode="r")["images"]
    assert _direct_blosc_reader(wrapped) is None
    assert np.array_equal(chunk_reader(wrapped)(2, 12, 18), ds.images[12:18], equal_nan=True)


def test_device_prefetch_puts_batches_ahead_and_closes_the_loader(ds):
    from hipsml.train import device_prefetch

    put_rows: list[int] = []

    def put(array):  # stands for jax.device_put: a copy made ahead of use
        put_rows.append(array.shape[0])
        return np.array(array, copy=True)

    loader = zarr_batches(ds, "train", batch_size=8, shuffle=False)
    it = device_prefetch(loader, size=2, put=put)
    first = next(it)
    assert len(put_rows) == 2 * 3  # images and labels of three batches: the first and two ahead
    assert np.array_equal(first.rows, ds.split("train")[:8])
    assert np.array_equal(first.images, ds.images.oindex[first.rows])
    it.close()
    assert _loader_threads() == []
    assert sum(b.rows.size for b in device_prefetch(loader, size=1, put=put)) == ds.split("train").size
