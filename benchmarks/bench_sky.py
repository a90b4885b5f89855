"""Benchmark of :func:`hipsml.sky.make_sky`: a 100,000-source synthetic sky.

Prints sources/s and tiles/s for the whole render (catalogue, profiles, noise, all
bands, FITS writing of every order), the phase timings, the peak memory, and the rate of
a naive reference (per-source ``healpy.query_disc`` + numpy profile, no tiling, one band)
measured in the same run on a subset of the sources.

Run::

    .venv/bin/python benchmarks/bench_sky.py                     # 100,000 sources, radius 1.5 deg
    .venv/bin/python benchmarks/bench_sky.py --sources 20000 --radius 1
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import healpy as hp
import numpy as np


def naive_rate(sky_root: Path, order: int, width: int, n: int) -> float:
    """Sources/s of a naive per-source renderer (query_disc + numpy Moffat/Gaussian, r band only)."""
    from astropy.table import Table

    cat = Table.read(sky_root / "catalogue.ecsv", format="ascii.ecsv")[:n]
    cell_order = order + int(math.log2(width))
    nside = 1 << cell_order
    cell = hp.nside2resol(nside)
    image: dict[int, float] = {}
    t0 = time.perf_counter()
    for row in cat:
        vec = hp.ang2vec(row["ra"], row["dec"], lonlat=True)
        r_cells = 6.0 if row["class"] == "star" else min(64.0, 6.0 * (row["r_eff_arcsec"] / 3600 / math.degrees(cell)))
        cells = hp.query_disc(nside, vec, r_cells * cell, nest=True)
        v = np.stack(hp.pix2vec(nside, cells, nest=True), axis=-1)
        r2 = np.sum((v - vec) ** 2, axis=-1) / cell**2
        val = row["flux_r"] * np.exp(-0.5 * r2 / 1.5**2)
        for c, x in zip((cells >> (2 * int(math.log2(width)))).tolist(), val.tolist(), strict=True):
            image[c] = image.get(c, 0.0) + x
    return len(cat) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--radius", type=float, default=1.5, help="region radius, deg (default 1.5)")
    parser.add_argument("--order", type=int, default=8)
    parser.add_argument("--tile-width", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--naive", type=int, default=2000, help="sources for the naive reference (0: skip)")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one, removed)")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="  %(name)s: %(message)s")
    from hipsml.sky import make_sky

    tmp = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_sky_"))
    target = tmp / "sky"
    print(f"make_sky: {args.sources} sources, radius {args.radius} deg, order {args.order}, "
          f"tile width {args.tile_width}, {os.cpu_count()} CPUs")  # fmt: skip
    # warm up the numba kernels (compiled on first use, then cached)
    make_sky(tmp / "warmup", n_sources=50, order=5, tile_width=32, radius=1.0, bands=["r"])
    t0 = time.perf_counter()
    sky = make_sky(target, n_sources=args.sources, order=args.order, tile_width=args.tile_width,
                   radius=args.radius, workers=args.workers)  # fmt: skip
    dt = time.perf_counter() - t0
    n_bands = len(sky.band_paths)
    top = sum(1 for _ in (sky.band_paths["r"] / f"Norder{args.order}").rglob("*.fits"))
    print(sky.summary())
    print(f"total {dt:.2f} s: {args.sources / dt:,.0f} sources/s, {top * n_bands / dt:,.1f} max-order tiles/s "
          f"({top} tiles x {n_bands} bands), {sky.tiles_written / dt:,.1f} tiles/s over all orders")  # fmt: skip
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    if args.naive:
        rate = naive_rate(target, args.order, args.tile_width, args.naive)
        ours = args.sources * n_bands / dt
        print(f"naive reference (query_disc + numpy, 1 band, {args.naive} sources): {rate:,.0f} sources/s; "
              f"make_sky: {ours:,.0f} source-bands/s, {ours / rate:.1f}x")  # fmt: skip
    if not args.out:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
