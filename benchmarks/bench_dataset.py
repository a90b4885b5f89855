"""The dataset builder end to end: N cutouts of 64x64 from a local HiPS on disk into Zarr.

Renders (once, into a cache folder) a one-band HiPS on disk: order 6, 512-pixel FITS tiles
(cells of 6.4 arcsec) over a cone of radius 8 deg, holding a smooth sky plus per-cell noise
(real sky noise barely compresses), and draws N random targets in the cone. Then, in one run:

1. ``hipsml.extract_dataset`` of all N targets (threads, ``--workers`` of them, blosc lz4),
   timed as a whole (recipe to published version), with the peak RSS of the process;
2. the engine alone in memory: ``hipsml.cutouts`` on 20,000 of the targets with the tiles
   already decoded, on one thread and on ``--workers`` threads (the builder's ceiling);
3. the naive route: one ``hipsml.cutouts`` call per target, on a few hundred targets;
4. with ``--compare-compressors``: lz4 against zstd (level 1, shuffle) on 100,000 targets.

Usage::

    python benchmarks/bench_dataset.py [--targets 1000000] [--workers 2] [--compare-compressors]

Prints cutouts/s, the share of worker time in tile reading, the kernel and writing, bytes
written, the ratio to the naive loop, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import healpy as hp
import numpy as np

import hipsml
from hipsml.dataset._store import folder_bytes
from hipsml.sky import render_function_hips

CENTER = (150.0, 2.0)
RADIUS = 8.0
ORDER = 6
WIDTH = 512
PIXEL = 6.4  # arcsec, about the cell size at order 6 + 9


def sky_value(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth sky plus noise that depends only on the position (so tiles agree everywhere)."""
    a, d = np.radians(ra), np.radians(dec)
    cells = hp.ang2pix(1 << 16, ra, dec, nest=True, lonlat=True).astype(np.uint64)
    z = cells * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
    noise = ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5) * 0.2
    return 10.0 + np.cos(40 * a) * np.sin(30 * d) + noise


def make_survey(cache: Path) -> Path:
    root = cache / f"bench-o{ORDER}-w{WIDTH}-r{RADIUS:g}"
    if not (root / "properties").is_file():
        t0 = time.perf_counter()
        render_function_hips(root, sky_value, order=ORDER, tile_width=WIDTH, order_min=ORDER, region=(*CENTER, RADIUS + 0.5),
                             title="bench sky", overwrite=True)  # fmt: skip
        print(f"rendered the survey in {time.perf_counter() - t0:.1f} s: {root}")
    return root


def make_targets(cache: Path, n: int) -> Path:
    path = cache / f"targets-{n}.parquet"
    if not path.is_file():
        from astropy.table import Table

        rng = np.random.default_rng(42)
        # uniform in the cone: cos(theta) uniform over [cos(R), 1]
        cos_t = rng.uniform(np.cos(np.radians(RADIUS)), 1.0, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        sin_t = np.sqrt(1 - cos_t**2)
        local = np.stack([cos_t, sin_t * np.cos(phi), sin_t * np.sin(phi)], axis=-1)
        ra0, dec0 = np.radians(CENTER[0]), np.radians(CENTER[1])
        e_r = np.array([np.cos(dec0) * np.cos(ra0), np.cos(dec0) * np.sin(ra0), np.sin(dec0)])
        e_e = np.array([-np.sin(ra0), np.cos(ra0), 0.0])
        e_n = np.cross(e_r, e_e)
        vec = local @ np.stack([e_r, e_e, e_n])
        ra, dec = hp.vec2ang(vec, lonlat=True)
        Table({"id": np.arange(n, dtype=np.int64), "ra": ra, "dec": dec}).write(path, overwrite=True)
    return path


def recipe(survey: Path, targets: Path, out: Path, *, workers: int, compressor: str = "lz4") -> dict:
    return {
        "name": "bench",
        "surveys": [{"location": str(survey), "name": "sky"}],
        "targets": {"file": str(targets)},
        "cutout": {"size": 64, "pixel_scale": PIXEL},
        "splits": {"order": 8},
        "output": {"path": str(out), "compressor": compressor},
        "compute": {"workers": workers},
    }


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--naive", type=int, default=300, help="targets for the one-call-per-target loop")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "hipsml-bench"))
    parser.add_argument("--out", default=None, help="dataset folder (default: a temporary one, removed after)")
    parser.add_argument("--compare-compressors", action="store_true")
    args = parser.parse_args()

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    survey_dir = make_survey(cache)
    targets = make_targets(cache, args.targets)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-ds-", dir=cache))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"survey: order {ORDER}, {WIDTH}-pixel FITS tiles on disk, cone of {RADIUS} deg; {args.targets:,} targets")

    # 1. the builder, recipe to published version
    shutil.rmtree(work / "ds", ignore_errors=True)
    t0 = time.perf_counter()
    ds = hipsml.extract_dataset(recipe(survey_dir, targets, work / "ds", workers=args.workers), progress=False)
    wall = time.perf_counter() - t0
    rep = ds.report
    busy = rep.tile_seconds + rep.kernel_seconds + rep.write_seconds
    nbytes = folder_bytes(ds.location)
    raw = len(ds) * 64 * 64 * 4
    print(f"\nextract_dataset: {len(ds):,} cutouts in {wall:.1f} s wall = {len(ds) / wall:,.0f} cutouts/s "
          f"({args.workers} worker threads), peak RSS {peak_rss_gb():.2f} GB")  # fmt: skip
    print(f"  worker time: tile reading {100 * rep.tile_seconds / busy:.0f}%, kernel {100 * rep.kernel_seconds / busy:.0f}%, "
          f"writing (encoding + files) {100 * rep.write_seconds / busy:.0f}%; {rep.units} work units")  # fmt: skip
    print(f"  written: {nbytes / 1e9:.2f} GB for {raw / 1e9:.2f} GB of float32 ({raw / nbytes:.2f}x); "
          f"coverage {rep.full:,} full / {rep.partial:,} partial / {rep.empty:,} empty")  # fmt: skip

    # 2. the engine alone, in memory, one thread, tiles decoded
    survey = hipsml.open_survey(survey_dir)
    ra, dec = ds.column("ra")[:20_000], ds.column("dec")[:20_000]
    hipsml.cutouts(survey, (ra, dec), size=64, pixel_scale=PIXEL)  # warm: decode tiles, compile
    t0 = time.perf_counter()
    hipsml.cutouts(survey, (ra, dec), size=64, pixel_scale=PIXEL)
    engine = ra.size / (time.perf_counter() - t0)
    print(f"\nengine alone (hipsml.cutouts in memory, 1 thread, tiles decoded): {engine:,.0f} cutouts/s")
    from concurrent.futures import ThreadPoolExecutor

    parts = np.array_split(np.arange(ra.size), args.workers)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda p: hipsml.cutouts(survey, (ra[p], dec[p]), size=64, pixel_scale=PIXEL), parts))
    engine_n = ra.size / (time.perf_counter() - t0)
    print(f"engine alone, {args.workers} threads (no writing): {engine_n:,.0f} cutouts/s "
          f"-> the builder delivers {len(ds) / wall / engine_n:.0%} of it, writing and all")  # fmt: skip

    # 3. the naive loop: one cutouts() call per target
    t0 = time.perf_counter()
    for i in range(args.naive):
        hipsml.cutouts(survey, ([ra[i]], [dec[i]]), size=64, pixel_scale=PIXEL)
    naive = args.naive / (time.perf_counter() - t0)
    print(f"naive loop (one hipsml.cutouts call per target, tiles decoded): {naive:,.0f} cutouts/s")
    print(f"builder vs naive loop: {len(ds) / wall / naive:.1f}x")

    if args.compare_compressors:
        n = min(100_000, args.targets)
        sub = cache / f"targets-{n}.parquet"
        if not sub.is_file():
            from astropy.table import Table

            Table.read(targets)[:n].write(sub, overwrite=True)
        print(f"\ncompressors on {n:,} cutouts ({args.workers} workers):")
        for name in ("lz4", "zstd"):
            out = work / f"cmp-{name}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            d = hipsml.extract_dataset(recipe(survey_dir, sub, out, workers=args.workers, compressor=name))
            dt = time.perf_counter() - t0
            b = folder_bytes(d.location)
            t1 = time.perf_counter()
            for start in range(0, len(d), 4096):
                d.images[start : start + 4096]
            read = len(d) / (time.perf_counter() - t1)
            print(f"  blosc {name}-1 + shuffle: {n / dt:,.0f} cutouts/s written, {n * 16384 / b:.2f}x smaller, "
                  f"{read:,.0f} cutouts/s read back (1 thread)")  # fmt: skip
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
