"""How fast are the integrity checks? The cheap check at open and ``verify``'s hashing rate.

Builds a synthetic published version of ``--chunks`` images chunks (default 10,000, each one
row of 2 x 64 x 64 float32 noise, blosc-lz4 as hipsml writes them: about 32 kB each) in a
temporary folder, with its manifest and ``versions.json``, then prints:

- the cheap check at open (every manifest file lstat'ed, the ``zarr.json`` documents hashed),
  alone and as part of a whole :func:`hipsml.open_dataset`;
- :func:`hipsml.verify_dataset`'s rate in MB/s on 1 thread and on ``--threads`` threads,
  against two references measured in the same run over the same files: plain ``hashlib.sha256``
  on one thread, and a ``cat``-style read of every file (no hashing).

The files were just written, so they are read from the page cache: the rates are the hashing
and file-system overheads, the upper bound of "disk speed". Run::

    python benchmarks/bench_verify.py [--chunks 10000] [--threads 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def build(root: Path, chunks: int, rows: int = 1, channels: int = 2, size: int = 64) -> Path:
    """A published one-version dataset at ``root`` with ``chunks`` images chunks of ``rows`` rows."""
    import zarr

    from hipsml.dataset._build import _compressors
    from hipsml.dataset._integrity import manifest_path, write_manifest
    from hipsml.dataset._store import _entry, write_image_rows, write_versions

    n = chunks * rows
    folder = root / "v1"
    group = zarr.open_group(folder, mode="w", zarr_format=3)
    group.create_array("images", shape=(n, channels, size, size), chunks=(rows, channels, size, size), dtype="float32",
                       fill_value=np.nan, compressors=_compressors("lz4", 4),
                       dimension_names=["cutout", "channel", "y", "x"])  # fmt: skip
    split = group.create_array("split", shape=(n,), chunks=(min(n, 1 << 18),), dtype="int8")
    split[:] = np.arange(n) % 3
    split.attrs["names"] = ["train", "val", "test"]
    rng = np.random.default_rng(0)
    block_rows = 500 * rows
    for start in range(0, n, block_rows):
        block = rng.standard_normal((min(block_rows, n - start), channels, size, size), dtype=np.float32)
        write_image_rows(folder / "images", start, block, chunk_rows=rows, compressor="lz4")
    attrs = {"format": "hipsml-dataset", "version": 1, "hash": "0" * 64, "complete": True, "count": n,
             "channels": [f"b{i}" for i in range(channels)], "geometry": {"size": size},
             "splits": {"names": ["train", "val", "test"]}}  # fmt: skip
    group.attrs["hipsml"] = attrs
    write_manifest(folder, manifest_path(folder))
    write_versions(root, "bench", [_entry(folder, attrs)])
    return root


def read_all(paths: list[str]) -> int:
    """``cat``: read every file once, no hashing (the file-system reference)."""
    total = 0
    buf = bytearray(1 << 18)
    view = memoryview(buf)
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    return total


def hash_all(paths: list[str]) -> int:
    """Plain ``hashlib.sha256`` of every file on one thread (the hashing reference)."""
    total = 0
    for p in paths:
        with open(p, "rb") as fh:
            data = fh.read()
        hashlib.sha256(data).hexdigest()
        total += len(data)
    return total


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import hipsml
    from hipsml.dataset._integrity import check_files, load_manifest
    from hipsml.dataset._store import read_versions

    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        root = Path(tmp) / "ds"
        t0 = time.perf_counter()
        build(root, args.chunks)
        print(f"built a version of {args.chunks:,} images chunks in {time.perf_counter() - t0:.1f} s")
        entry = read_versions(root)[0]
        folder = root / "v1"
        files = load_manifest(folder, entry["manifest"], where="bench")
        assert files is not None
        paths = [os.path.join(folder, r) for r in files]
        nbytes = sum(int(r["size"]) for r in files.values())
        print(f"  {len(files):,} files, {nbytes / 1e6:,.1f} MB; CPUs: {os.cpu_count()}")

        def cheap() -> None:
            check_files(folder, load_manifest(folder, entry["manifest"], where="bench"), where="bench")

        t_cheap, _ = best(cheap, args.repeat)
        t_open, ds = best(lambda: hipsml.open_dataset(root), args.repeat)
        print(f"check at open: {t_cheap * 1e3:.1f} ms for {args.chunks:,} chunks (manifest read + lstat + zarr.json "
              f"hashes); whole open_dataset {t_open * 1e3:.1f} ms (goal: check <= 100 ms)")  # fmt: skip

        t_cat, _ = best(lambda: read_all(paths), args.repeat)
        t_ref, _ = best(lambda: hash_all(paths), args.repeat)
        t_one, _ = best(lambda: hipsml.verify_dataset(root, threads=1), args.repeat)
        t_many, _ = best(lambda: hipsml.verify_dataset(root, threads=args.threads), args.repeat)
        rate = {k: nbytes / t / 1e6 for k, t in
                {"cat": t_cat, "ref": t_ref, "one": t_one, "many": t_many}.items()}  # fmt: skip
        print(f"reference, cat-style read of every file:     {rate['cat']:8,.0f} MB/s")
        print(f"reference, hashlib.sha256 on one thread:     {rate['ref']:8,.0f} MB/s")
        print(f"verify_dataset, 1 thread:                    {rate['one']:8,.0f} MB/s "
              f"({rate['one'] / rate['ref']:.2f}x the hashlib reference)")  # fmt: skip
        print(f"verify_dataset, {args.threads} threads:                   {rate['many']:8,.0f} MB/s "
              f"({rate['many'] / rate['ref']:.2f}x; goal >= 300 MB/s per core)")  # fmt: skip
        print(
            f"(best of {args.repeat} runs each) "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        )
        del ds


if __name__ == "__main__":
    main()
