"""The training loaders: cutouts/s delivered by ``zarr_batches`` and ``sky_batches`` (issue 8, sections 1-2).

Builds (once, into a cache folder) 100,000 one-band 64x64 cutouts with ``hipsml.extract_dataset``
from the synthetic HiPS of ``benchmarks/bench_dataset.py`` (order 6, 512-pixel FITS tiles,
cells of 6.4 arcsec, cone of 8 deg; its cached survey is reused), in two variants: blosc lz4
and blosc zstd. Then, in one run:

1. ``zarr_batches`` over the train split: shuffled (chunk order, then rows within a window of
   chunks), min-max normalised, background prefetch, batches of 256: cutouts/s delivered;
2. the naive reference measured in the same run: ``ds.images[i]`` one row at a time, in
   shuffled order, on a few thousand rows;
3. ``torch_dataset`` (when PyTorch is installed) under ``DataLoader(tds, batch_size=None,
   num_workers=--torch-workers, persistent_workers=True)``, the same split, batches and normalisation, its epochs
   alternating with ``zarr_batches``' so both see the same load: cutouts/s delivered to the
   main process as tensors, and the ratio to ``zarr_batches``;
4. ``sky_batches``: every target cut afresh from the tiles at a random rotation (tiles already
   decoded in the survey's memory cache), min-max normalised, ``--threads`` threads.

Usage::

    PYTHONPATH=. python benchmarks/bench_loader.py [--targets 100000] [--threads 2] [--naive 3000] [--torch-workers 2]

Prints cutouts/s for each (for ``sky_batches`` also cutouts per CPU-second of the process, all
threads: the cost per cutout, which other jobs on the machine disturb less), the ratio to the
naive reader, and peak memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

# the survey and targets of bench_dataset.py (this folder is on sys.path when a script here runs)
from bench_dataset import PIXEL, make_survey, make_targets

import hipsml


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


def torch_rates_for(workers: int, threads: int):
    """``rate(ds, epoch)``: cutouts/s of one epoch of ``torch_dataset`` under a DataLoader; None without torch.

    One ``DataLoader(persistent_workers=True)`` per dataset, as a training loop keeps it: its
    workers start in the first timed epoch and are reused by the next ones (``set_epoch`` reaches them).
    """
    if workers < 0:
        return None
    try:
        from torch.utils.data import DataLoader
    except ImportError:
        print('torch is not installed: torch_dataset not measured (pip install "hipsml[torch]")')
        return None
    from hipsml.train import torch_dataset

    loaders: dict[str, tuple] = {}

    def rate(ds: hipsml.Dataset, epoch: int) -> float:
        t0 = time.perf_counter()
        if ds.hash not in loaders:
            tds = torch_dataset(ds, "train", batch_size=256, normalise="minmax", seed=0, threads=threads)
            loaders[ds.hash] = tds, DataLoader(tds, batch_size=None, num_workers=workers,
                                               persistent_workers=workers > 0)  # fmt: skip
        tds, loader = loaders[ds.hash]
        tds.set_epoch(epoch)
        n = 0
        for batch in loader:
            n += batch["rows"].shape[0]
        return n / (time.perf_counter() - t0)

    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive", type=int, default=3000, help="rows for the one-row-at-a-time reader")
    parser.add_argument("--sky", type=int, default=30_000, help="targets for sky_batches")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "hipsml-bench"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed per loader")
    parser.add_argument(
        "--torch-workers", type=int, default=2, help="DataLoader workers for torch_dataset (-1: skip it)"
    )
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
    torch_rate = torch_rates_for(args.torch_workers, args.threads)
    for name, ds in datasets.items():
        rates, trates = [], []
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            n = 0
            for _images, _labels, rows in zarr_batches(
                ds, "train", epoch=epoch, normalise="minmax", threads=args.threads
            ):
                n += rows.size
            rates.append(n / (time.perf_counter() - t0))
            if torch_rate is not None:  # alternating epochs: both loaders see the same load
                trates.append(torch_rate(ds, epoch))
        # the naive reader: one row at a time, in shuffled order
        order = np.random.default_rng(0).permutation(train)[: args.naive]
        t0 = time.perf_counter()
        for i in order:
            np.asarray(ds.images[int(i)], dtype=np.float32)
        naive = order.size / (time.perf_counter() - t0)
        print(f"\nblosc {name}: zarr_batches (shuffled, minmax) {', '.join(f'{r:,.0f}' for r in rates)} cutouts/s "
              f"(epochs 0..{args.epochs - 1}); naive ds.images[i] (shuffled, {order.size:,} rows) {naive:,.0f} cutouts/s; "
              f"{max(rates) / naive:.0f}x")  # fmt: skip
        if trates:
            ratios = [t / r for t, r in zip(trates, rates, strict=True)]
            print(f"  torch_dataset, DataLoader(batch_size=None, num_workers={args.torch_workers}, persistent_workers=True): "
                  f"{', '.join(f'{r:,.0f}' for r in trates)} cutouts/s as tensors in the main process; "
                  f"{', '.join(f'{q:.2f}' for q in ratios)}x zarr_batches' epoch by epoch")  # fmt: skip

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
        t0, c0 = time.perf_counter(), time.process_time()
        n = 0
        for _images, _labels, rows in source.for_epoch(epoch):
            n += rows.size
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        note = " (tiles read from disk and decoded)" if epoch == 0 else " (tiles in the survey's memory cache)"
        # cutouts per CPU-second (all threads): the work per cutout, less sensitive to other jobs
        print(f"  epoch {epoch}: {n / dt:,.0f} cutouts/s, {n / cpu:,.0f} per CPU-second{note}")
    # the engine alone on the same targets and angles, one thread, one call (tiles decoded): the ceiling per core
    aug = source.for_epoch(args.epochs - 1).augmentation()
    t0 = time.perf_counter()
    hipsml.cutouts(list(source.surveys), (aug.ra, aug.dec), size=64, pixel_scale=PIXEL, rotation=aug.rotation)
    engine = subset.size / (time.perf_counter() - t0)
    print(
        f"  the engine alone (hipsml.cutouts, same targets and angles, 1 thread, no normalising): {engine:,.0f} cutouts/s"
    )
    print(f"\npeak RSS {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
