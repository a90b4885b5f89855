"""Cutout rate: hipsml's fused kernel vs the naive healpy.get_interp_weights route, on one core.

Renders an analytic HiPS (order 6, 512-pixel tiles, cells of 6.4 arcsec) around (150, 2),
warms the survey's memory cache so tiles are already decoded, then times 64x64 cutouts at
the cell scale around random targets within 1 degree:

- hipsml bilinear, nearest, bicubic, and 3 channels (three surveys sharing the geometry);
- the naive reference measured in the same run: per cutout, astropy-free numpy geometry,
  ``healpy.get_interp_weights`` (RING-ordered bilinear in theta/phi, converted to NESTED),
  and a numpy lookup of the four cells in the decoded tiles.

Usage::

    python benchmarks/bench_cutouts.py [--targets 20000] [--naive 300] [--size 64]

Prints cutouts/s and megapixels/s for each, the ratio to the naive route and peak memory.
Pinned to one CPU core (numba kernels are single-threaded).
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
from hipsml.extract import cutouts
from hipsml.extract._geometry import healpix_cell_size_arcsec, pixel_grid_vectors, target_bases
from hipsml.sky import render_function_hips


def smooth(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    a, d = np.radians(ra), np.radians(dec)
    x, y, z = np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)
    return np.cos(300.0 * x) + np.sin(200.0 * y + 100.0 * z)


def naive_cutouts(survey, ra, dec, size: int, scale: float, korder: int) -> np.ndarray:
    """The straightforward numpy route: interp weights per cutout, cell lookup in tiles."""
    s = survey.tile_width.bit_length() - 1
    nside = 1 << (korder + s)
    grid = pixel_grid_vectors(size, scale)
    out = np.empty((ra.size, size * size), dtype=np.float32)
    tiles: dict[int, np.ndarray] = {}
    for n in range(ra.size):
        vec = grid @ target_bases(ra[n : n + 1], dec[n : n + 1], np.zeros(1))[0].T
        theta, phi = hp.vec2ang(vec)
        pix, w = hp.get_interp_weights(nside, theta, phi, nest=True)
        tile = pix >> (2 * s)
        local = pix & ((1 << (2 * s)) - 1)
        x = np.zeros_like(local)
        y = np.zeros_like(local)
        for b in range(s):
            x |= ((local >> (2 * b)) & 1) << b
            y |= ((local >> (2 * b + 1)) & 1) << b
        vals = np.empty(pix.shape, dtype=np.float32)
        for t in np.unique(tile):
            t = int(t)
            if t not in tiles:
                tiles[t] = survey.read_tile(korder, t)[0]
            sel = tile == t
            vals[sel] = tiles[t][survey.tile_width - 1 - x[sel], y[sel]]
        out[n] = np.sum(vals * w, axis=0)
    return out


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20000)
    parser.add_argument("--naive", type=int, default=300, help="cutouts timed for the naive route")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    korder, width = 6, 512
    scale = healpix_cell_size_arcsec(korder + 9)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        roots = [
            render_function_hips(
                Path(tmp) / f"s{i}",
                lambda r, d, i=i: smooth(r, d) + i,
                order=korder,
                tile_width=width,
                order_min=korder,
                region=(150.0, 2.0, 1.3),
            )
            for i in range(3)
        ]
        render_s = time.perf_counter() - t0
        surveys = [hipsml.open_survey(r) for r in roots]
        rng = np.random.default_rng(0)
        r = np.degrees(np.arccos(1 - rng.uniform(0, 1 - np.cos(np.radians(1.0)), args.targets)))
        pa = rng.uniform(0, 2 * np.pi, args.targets)
        dec = 2.0 + r * np.cos(pa)
        ra = 150.0 + r * np.sin(pa) / np.cos(np.radians(dec))
        n = args.targets
        npx = args.size * args.size

        # warm up: compile the kernels and decode every tile into the survey memory caches
        for interp in ("bilinear", "nearest", "bicubic"):
            cutouts(surveys, (ra, dec), size=args.size, pixel_scale=scale, order=korder, interpolation=interp)

        def run(svs, interp):
            return cutouts(svs, (ra, dec), size=args.size, pixel_scale=scale, order=korder, interpolation=interp)

        rows = []
        for label, svs, interp in [
            ("hipsml bilinear, 1 channel", surveys[:1], "bilinear"),
            ("hipsml nearest, 1 channel", surveys[:1], "nearest"),
            ("hipsml bicubic, 1 channel", surveys[:1], "bicubic"),
            ("hipsml bilinear, 3 channels", surveys, "bilinear"),
        ]:
            dt = best_of(lambda svs=svs, interp=interp: run(svs, interp), args.repeat)
            rows.append((label, n / dt, n * npx * len(svs) / dt / 1e6))

        m = min(args.naive, n)
        naive_cutouts(surveys[0], ra[:5], dec[:5], args.size, scale, korder)  # warm its tile dict
        dt_naive = best_of(lambda: naive_cutouts(surveys[0], ra[:m], dec[:m], args.size, scale, korder), 2)
        naive_rate = m / dt_naive
        # the naive route interpolates differently (RING theta/phi weights); report the agreement
        ref = naive_cutouts(surveys[0], ra[:50], dec[:50], args.size, scale, korder)
        ours = run(surveys[:1], "bilinear").images[:50, 0].reshape(50, -1)
        diff = np.nanmax(np.abs(ours - ref))

    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; pinned to 1 core"
    )
    print(
        f"survey: order {korder}, tile width {width}, cell {scale:.2f} arcsec, rendered in {render_s:.1f} s; "
        f"{n} targets, {args.size}x{args.size} cutouts, tiles decoded in memory"
    )
    print(f"{'route':34s} {'cutouts/s':>11s} {'Mpix/s':>9s} {'x naive':>9s}")
    for label, rate, mpix in rows:
        print(f"{label:34s} {rate:11,.0f} {mpix:9.1f} {rate / naive_rate:9.1f}")
    print(f"{'naive healpy.get_interp_weights':34s} {naive_rate:11,.0f} {naive_rate * npx / 1e6:9.1f} {1.0:9.1f}")
    print(f"max |hipsml - naive| on 50 cutouts: {diff:.2e} (two bilinear schemes; values span ~4)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
