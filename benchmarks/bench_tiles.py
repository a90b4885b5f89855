"""Decode rate of HiPS FITS tiles from the page cache: hipsml vs a naive astropy.io.fits read.

Writes 512x512 tiles (BITPIX -32 and BITPIX 16 with BLANK/BZERO) into a temporary
directory, reads each once to warm the page cache, then times, on one core:

- hipsml: ``Path.read_bytes()`` + :func:`hipsml.hips.decode_tile` (float32, BLANK -> NaN);
- reference: ``astropy.io.fits.getdata(path)`` converted to float32 (what a naive reader does);
- survey: :meth:`hipsml.HipsSurvey.read_tile` on a local HiPS with the memory cache off
  (validation, path building, file read, decode).

Usage::

    python benchmarks/bench_tiles.py [--tiles 200] [--width 512] [--repeat 3]

Prints tiles/s for each, the ratio, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from hipsml.hips import decode_tile, open_survey, tile_path


def _write_tiles(root: Path, n: int, width: int, bitpix: int) -> list[Path]:
    rng = np.random.default_rng(bitpix & 0xFF)
    paths = []
    for i in range(n):
        if bitpix == -32:
            data = rng.normal(size=(width, width)).astype(np.float32)
            data[:3, :3] = np.nan
            hdu = fits.PrimaryHDU(data)
        else:
            data = rng.integers(-32000, 32000, size=(width, width)).astype(np.int16)
            data[:3, :3] = -32768
            hdu = fits.PrimaryHDU(data)
            hdu.header["BLANK"] = -32768
            hdu.header["BSCALE"] = 0.5
            hdu.header["BZERO"] = 100.0
        path = root / f"Npix{i}_{bitpix}.fits"
        hdu.writeto(path)
        paths.append(path)
    return paths


def _survey(root: Path, n: int, width: int):
    """A local HiPS of order 9 whose first ``n`` tiles are BITPIX -32 copies of one tile."""
    hips = root / "survey"
    hips.mkdir()
    (hips / "properties").write_text(
        f"hips_order = 9\nhips_frame = equatorial\nhips_tile_width = {width}\nhips_tile_format = fits\n"
    )
    blob = (root / "Npix0_-32.fits").read_bytes()
    for npix in range(n):
        path = hips / tile_path(9, npix, "fits")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return open_survey(hips, memory_cache_bytes=0)


def _rate(fn, paths: list[Path], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        dt = time.perf_counter() - t0
        best = max(best, len(paths) / dt)
    return best


def _hipsml(path: Path) -> np.ndarray:
    return decode_tile(path.read_bytes(), "fits", source=str(path))


def _astropy(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(fits.getdata(path), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    print(f"{args.tiles} tiles {args.width}x{args.width}, best of {args.repeat}, one core, page cache warm")
    with tempfile.TemporaryDirectory() as tmp:
        for bitpix in (-32, 16):
            paths = _write_tiles(Path(tmp), args.tiles, args.width, bitpix)
            for p in paths:  # warm the page cache and check agreement
                a = _hipsml(p)[0]
                b = _astropy(p)
                if not np.allclose(a, b, equal_nan=True):
                    raise SystemExit(f"hipsml and astropy disagree on {p}")
            ours = _rate(_hipsml, paths, args.repeat)
            ref = _rate(_astropy, paths, args.repeat)
            print(
                f"BITPIX {bitpix:>3}: hipsml {ours:8.0f} tiles/s   astropy.io.fits {ref:8.0f} tiles/s   "
                f"ratio {ours / ref:5.1f}x"
            )
        survey = _survey(Path(tmp), args.tiles, args.width)
        order = 9
        for npix in range(args.tiles):  # warm the page cache
            survey.read_tile(order, npix)
        best = 0.0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for npix in range(args.tiles):
                survey.read_tile(order, npix)
            best = max(best, args.tiles / (time.perf_counter() - t0))
        print(f"HipsSurvey.read_tile (BITPIX -32, memory cache off): {best:8.0f} tiles/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
