"""Fetch throughput of :class:`hipsml.hips._http.HttpTileStore` vs naive ``requests.get``.

Writes ``--tiles`` float32 FITS tiles of ``--width`` x ``--width`` pixels into a
temporary HiPS, serves it with the test server of ``tests/hips_server.py`` on
127.0.0.1 (in its own process, so the server does not share the client's GIL), and
times, in one run:

- reference: a plain ``requests.get(url)`` per tile, sequential, with a new connection
  each time (what a naive script does);
- hipsml: ``HttpTileStore.fetch`` called from a ``ThreadPoolExecutor`` of 1, 4, 16 and
  32 threads, disk cache disabled, ``max_connections_per_host`` equal to the thread
  count (one pooled keep-alive connection per thread).

Every body's length is checked. Each figure is the median of ``--repeat`` passes.

Usage::

    python benchmarks/bench_fetch.py [--tiles 200] [--width 512] [--repeat 3] [--latency-ms 0]

``--latency-ms 20`` makes the server wait 20 ms before each reply, which is where
concurrency pays off; on loopback with no latency both ends are CPU-bound.

Prints the machine, tiles/s and MB/s for each, the ratio to the reference and the
peak resident memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import requests
from astropy.io import fits

from hipsml.hips._http import HttpTileStore

TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"
LEVELS = (1, 4, 16, 32)


def _write_survey(root: Path, n: int, width: int) -> list[str]:
    rng = np.random.default_rng(0)
    relpaths = []
    (root / "properties").write_text(f"hips_order = 9\nhips_tile_width = {width}\nhips_tile_format = fits\n")
    for npix in range(n):
        relpath = f"Norder9/Dir{(npix // 10000) * 10000}/Npix{npix}.fits"
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(rng.normal(size=(width, width)).astype(np.float32)).writeto(path)
        relpaths.append(relpath)
    return relpaths


def _serve(directory: str, latency: float, conn: Connection) -> None:
    """Child process: run the test server until the parent sends anything."""
    sys.path.insert(0, str(TESTS_DIR))
    from hips_server import Fault, HipsServer

    with HipsServer(directory) as server:
        if latency > 0:
            server.inject("*", then=Fault.slow(latency))
        conn.send(server.url)
        conn.recv()


def _median_seconds(run: Callable[[], int], expected_bytes: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        got = run()
        times.append(time.perf_counter() - start)
        if got != expected_bytes:
            raise RuntimeError(f"received {got} bytes, expected {expected_bytes}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="server-side delay before each reply, to mimic a distant server (default 0)",
    )
    args = parser.parse_args(argv)

    print(
        f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"requests {requests.__version__}; server: tests/hips_server.py (ThreadingHTTPServer, HTTP/1.1) in a child process"
    )
    with tempfile.TemporaryDirectory(prefix="hipsml-bench-fetch-") as tmp:
        root = Path(tmp)
        relpaths = _write_survey(root, args.tiles, args.width)
        sizes = {p: (root / p).stat().st_size for p in relpaths}
        total = sum(sizes.values())
        print(
            f"{args.tiles} tiles of {args.width}x{args.width} float32 FITS, {total / 1e6:.1f} MB in all; "
            f"median of {args.repeat} passes; server latency {args.latency_ms:g} ms per request"
        )

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(str(root), args.latency_ms / 1000, child), daemon=True)
        proc.start()
        try:
            url = parent.recv()

            def naive() -> int:
                received = 0
                for p in relpaths:
                    response = requests.get(f"{url}/{p}", timeout=30)  # no session: a new connection per tile
                    response.raise_for_status()
                    received += len(response.content)
                return received

            ref = _median_seconds(naive, total, args.repeat)
            rows = [("naive requests.get, sequential", ref)]
            for level in LEVELS:
                store = HttpTileStore(url, cache_dir=False, max_connections_per_host=level)

                def pooled(store: HttpTileStore = store, level: int = level) -> int:
                    with ThreadPoolExecutor(max_workers=level) as pool:
                        return sum(pool.map(lambda p: store.fetch(p, len) or 0, relpaths))

                pooled()  # open the keep-alive connections once, outside the timing
                rows.append((f"HttpTileStore.fetch, {level:2d} threads", _median_seconds(pooled, total, args.repeat)))
                store.close()
        finally:
            parent.send("stop")
            proc.join(timeout=10)

    print(f"{'method':36s} {'tiles/s':>9s} {'MB/s':>8s} {'x naive':>8s}")
    for name, seconds in rows:
        print(f"{name:36s} {args.tiles / seconds:9.1f} {total / 1e6 / seconds:8.1f} {ref / seconds:8.2f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory (client process): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
