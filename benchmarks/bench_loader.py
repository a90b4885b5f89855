"""The training loaders: cutouts/s delivered by ``zarr_batches`` and ``sky_batches`` (issue 8, sections 1-2).

Builds (once, into a cache folder) 100,000 one-band 64x64 cutouts with ``hipsml.extract_dataset``
from the synthetic HiPS of ``benchmarks/bench_dataset.py`` (order 6, 512-pixel FITS tiles,
cells of 6.4 arcsec, cone of 8 deg; its cached survey is reused), in two variants: blosc lz4
and blosc zstd. Then, in one run:

1. ``zarr_batches`` over the train split: shuffled (chunk order, then rows within a window of
   chunks), min-max normalised, background prefetch, batches of 256: cutouts/s delivered;
2. the naive reference measured in the same run: ``ds.images[i]`` one row at a time, in
   shuffled order, on a few thousand rows;
3. ``sky_batches``: every target cut afresh from the tiles at a random rotation (tiles already
   decoded in the survey's memory cache), min-max normalised, ``--threads`` threads.

Usage::

    PYTHONPATH=. python benchmarks/bench_loader.py [--targets 100000] [--threads 2] [--naive 3000]

Prints cutouts/s for each, the ratio to the naive reader, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import healpy as hp
import numpy as np

import hipsml

CENTER = (150.0, 2.0)
RADIUS = 8.0
ORDER = 6
WIDTH = 512
PIXEL = 6.4  # arcsec, about the cell size at order 6 + 9


def sky_value(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth sky plus noise that depends only on the position (the same as bench_dataset.py)."""
    a, d = np.radians(ra), np.radians(dec)
    cells = hp.ang2pix(1 << 16, ra, dec, nest=True, lonlat=True).astype(np.uint64)
    z = cells * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
    noise = ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5) * 0.2
    return 10.0 + np.cos(40 * a) * np.sin(30 * d) + noise


def make_survey(cache: Path) -> Path:
    """The cached survey of bench_dataset.py (rendered here when absent)."""
    from hipsml.sky import render_function_hips

    root = cache / f"bench-o{ORDER}-w{WIDTH}-r{RADIUS:g}"
    if not (root / "properties").is_file():
        t0 = time.perf_counter()
        render_function_hips(root, sky_value, order=ORDER, tile_width=WIDTH, order_min=ORDER,
                             region=(*CENTER, RADIUS + 0.5), title="bench sky", overwrite=True)  # fmt: skip
        print(f"rendered the survey in {time.perf_counter() - t0:.1f} s: {root}")
    return root


def make_targets(cache: Path, n: int) -> Path:
    """``n`` targets uniform in the cone (the same file as bench_dataset.py's)."""
    path = cache / f"targets-{n}.parquet"
    if not path.is_file():
        from astropy.table import Table

        rng = np.random.default_rng(42)
        cos_t = rng.uniform(np.cos(np.radians(RADIUS)), 1.0, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        sin_t = np.sqrt(1 - cos_t**2)
        local = np.stack([cos_t, sin_t * np.cos(phi), sin_t * np.sin(phi)], axis=-1)
        ra0, dec0 = np.radians(CENTER[0]), np.radians(CENTER[1])
        e_r = np.array([np.cos(dec0) * np.cos(ra0), np.cos(dec0) * np.sin(ra0), np.sin(dec0)])
        e_e = np.array([-np.sin(ra0), np.cos(ra0), 0.0])
        e_n = np.cross(e_r, e_e)
        ra, dec = hp.vec2ang(local @ np.stack([e_r, e_e, e_n]), lonlat=True)
        Table({"id": np.arange(n, dtype=np.int64), "ra": ra, "dec": dec}).write(path, overwrite=True)
    return path


def make_dataset(cache: Path, survey: Path, targets: Path, compressor: str) -> hipsml.Dataset:
    """The dataset of these targets (an unchanged recipe finds the existing version: built once)."""
    recipe = {
        "name": f"bench-loader-{compressor}",
        "surveys": [{"location": str(survey), "name": "sky"}],
        "targets": {"file": str(targets)},
        "cutout": {"size": 64, "pixel_scale": PIXEL},
        "splits": {"order": 8},
        "output": {"path": str(cache / f"loader-{targets.stem}-{compressor}"), "compressor": compressor},
        "compute": {"workers": 2},
    }
    t0 = time.perf_counter()
    ds = hipsml.extract_dataset(recipe)
    if ds.report is not None and ds.report.created:
        print(f"built {ds} in {time.perf_counter() - t0:.1f} s")
    return ds


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive", type=int, default=3000, help="rows for the one-row-at-a-time reader")
    parser.add_argument("--sky", type=int, default=30_000, help="targets for sky_batches")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "hipsml-bench"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per loader")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    survey_dir = make_survey(cache)
    targets = make_targets(cache, args.targets)
    datasets = {name: make_dataset(cache, survey_dir, targets, name) for name in ("lz4", "zstd")}
    if args.build_only:
        return
    from hipsml.train import sky_batches, zarr_batches

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; load average {os.getloadavg()[0]:.2f} (other work shares the cores)")  # fmt: skip
    ds0 = datasets["lz4"]
    train = ds0.split("train")
    print(f"dataset: {len(ds0):,} cutouts of 1 x 64 x 64 float32, chunks of {ds0.images.chunks[0]} rows; "
          f"train split {train.size:,}; batches of 256, {args.threads} reader threads")  # fmt: skip
    for name, ds in datasets.items():
        rates = []
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            n = 0
            for images, _labels, rows in zarr_batches(ds, "train", epoch=epoch, normalise="minmax", threads=args.threads):
                n += rows.size
            rates.append(n / (time.perf_counter() - t0))
        # the naive reader: one row at a time, in shuffled order
        order = np.random.default_rng(0).permutation(train)[: args.naive]
        t0 = time.perf_counter()
        for i in order:
            np.asarray(ds.images[int(i)], dtype=np.float32)
        naive = order.size / (time.perf_counter() - t0)
        print(f"\nblosc {name}: zarr_batches (shuffled, minmax) {', '.join(f'{r:,.0f}' for r in rates)} cutouts/s "
              f"(epochs 0..{args.epochs - 1}); naive ds.images[i] (shuffled, {order.size:,} rows) {naive:,.0f} cutouts/s; "
              f"{max(rates) / naive:.0f}x")  # fmt: skip

    if args.sky <= 0:
        print(f"\npeak RSS {peak_rss_gb():.2f} GB")
        return
    # from the sky: every target cut afresh at a random rotation
    rng = np.random.default_rng(1)
    subset = np.sort(rng.choice(train, size=min(args.sky, train.size), replace=False))
    source = sky_batches(ds0, split=subset, normalise="minmax", threads=args.threads)
    print(f"\nsky_batches: {subset.size:,} targets of the train split, random rotations, minmax, "
          f"{len(source.units)} work units, {args.threads} threads")  # fmt: skip
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        n = 0
        for images, _labels, rows in source.for_epoch(epoch):
            n += rows.size
        dt = time.perf_counter() - t0
        note = " (tiles read from disk and decoded)" if epoch == 0 else " (tiles in the survey's memory cache)"
        print(f"  epoch {epoch}: {n / dt:,.0f} cutouts/s{note}")
    # the engine alone on the same targets and angles, one thread, one call (tiles decoded): the ceiling per core
    aug = source.for_epoch(args.epochs - 1).augmentation()
    t0 = time.perf_counter()
    hipsml.cutouts(list(source.surveys), (aug.ra, aug.dec), size=64, pixel_scale=PIXEL, rotation=aug.rotation)
    engine = subset.size / (time.perf_counter() - t0)
    print(f"  the engine alone (hipsml.cutouts, same targets and angles, 1 thread, no normalising): {engine:,.0f} cutouts/s")
    print(f"\npeak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
