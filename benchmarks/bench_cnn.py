"""Benchmark the residual CNN on the synthetic sky: test accuracy, wall time and images/s on this machine.

Builds once, into a cache folder, a demo-like synthetic sky (``hipsml.sky.make_sky``: four classes,
star, elliptical, disk and radio double, in g, r, i and radio) with ``--sources`` sources (3000 by
default) and extracts it with the demo recipe's geometry (64x64 cutouts at 3.2 arcsec/pixel, healpix
splits 80/10/10). Then trains ``hipsml.train.train_cnn`` with the CPU default model (or the options
given) from a fresh run folder and prints the test accuracy, the training wall time (compilation
included, dataset build excluded), the training rate of the epochs after the first and the peak
resident memory. The goal of issue 8: >= 97 % test accuracy in <= 5 CPU minutes on 2 cores. Run::

    python benchmarks/bench_cnn.py                     # a few minutes on 2 cores
    python benchmarks/bench_cnn.py --sources 1000 --epochs 3
    python benchmarks/bench_cnn.py --members 3          # three seeds and their ensemble
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import hipsml


def build_dataset(
    cache: Path, sources: int, seed: int, *, radius: float = 1.0, workers: int | None = None, progress: bool = True
) -> hipsml.Dataset:
    """The synthetic sky (a cone of ``radius`` deg) and its 64x64 four-band dataset, made once per
    (sources, seed, radius); ``workers`` render the sky (default: make_sky's) and extract the cutouts (default 2)."""
    from hipsml.sky import make_sky

    tag = f"{sources}-{seed}" + (f"-r{radius:g}" if radius != 1.0 else "")
    sky = cache / f"sky-{tag}"
    if not (sky / "catalogue.ecsv").is_file():
        # the demo's region and bands, denser: 3000 sources in a 1 deg cone
        make_sky(
            sky,
            n_sources=sources,
            seed=seed,
            order=8,
            tile_width=256,
            radius=radius,
            progress=progress,
            workers=workers,
        )
    recipe = {
        "name": "bench-cnn",
        "surveys": [{"location": str(sky / b), "name": b} for b in ("g", "r", "i", "radio")],
        "targets": {
            "file": str(sky / "catalogue.ecsv"),
            "columns": {"id": "id", "ra": "ra", "dec": "dec", "label": "class"},
        },
        "cutout": {"size": 64, "pixel_scale": 3.2},
        "splits": {
            "scheme": "healpix",
            "order": 10,
            "salt": "demo",
            "fractions": {"train": 0.8, "val": 0.1, "test": 0.1},
        },
        "output": {"path": str(cache / f"dataset-{tag}")},
        "compute": {"workers": workers or 2},
    }
    return hipsml.extract_dataset(recipe, progress=progress)


def machine() -> str:
    """The machine line of the CNN benchmarks: processor, CPU count, JAX backend (and device)."""
    import jax

    device = jax.devices()[0].device_kind if jax.default_backend() != "cpu" else "CPU"
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, JAX on "
            f"{jax.default_backend()} ({device})")  # fmt: skip


def training_rate(history: list[dict]) -> float:
    """Images per second over the epochs after the first (which includes compiling)."""
    later = history[1:] or history
    return sum(r["images_per_second"] * r["seconds"] for r in later) / sum(r["seconds"] for r in later)


def per_class_text(names: list[str], accuracy: list[float | None]) -> str:
    return ", ".join(f"{n} {a:.3f}" for n, a in zip(names, accuracy, strict=True) if a is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the CNNConfig default")
    parser.add_argument("--config", default=None, help="JSON mapping of CNN options")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "hipsml-bench"))
    parser.add_argument("--build-only", action="store_true", help="build the dataset and stop")
    parser.add_argument(
        "--members",
        type=int,
        default=1,
        help="train this many runs (seeds seed, seed+1, ...) and report their ensemble too",
    )
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ds = build_dataset(cache, args.sources, args.seed)
    counts = {name: int(ds.split(name).size) for name in ds.split_names}
    print(f"dataset: {len(ds)} cutouts {tuple(ds.images.shape[1:])}, classes {ds.label_names}, splits {counts}")
    if args.build_only:
        return
    from hipsml.train import predict_cnn, read_cnn_predictions, train_cnn

    options = json.loads(args.config) if args.config else {}
    if args.epochs is not None:
        options["epochs"] = args.epochs

    def show(record: dict) -> None:
        print(
            f"  epoch {record['epoch'] + 1}: loss {record['train_loss']:.4f} accuracy {record['train_accuracy']:.4f} "
            f"val accuracy {record.get('val_accuracy', float('nan')):.4f} {record['images_per_second']:.0f} images/s "
            f"({record['seconds']:.1f} s)",
            flush=True,
        )

    runs, total = [], 0.0
    for member in range(args.members):
        run = cache / ("cnn-run" if args.members == 1 else f"cnn-run-{member}")
        shutil.rmtree(run, ignore_errors=True)
        seed = options.get("seed", 0) + member
        t0 = time.perf_counter()
        result = train_cnn(ds, {**options, "seed": seed}, workdir=run, on_epoch=show)
        wall = time.perf_counter() - t0
        total += wall
        runs.append(run)
        test = result.metrics["test"]
        if member == 0:
            print(machine())
            print(
                f"model: {result.config.stem_channels}-channel stride-{result.config.stem_stride} stem, widths "
                f"{list(result.config.widths)}, {result.config.blocks} block(s)/stage; "
                f"{json.loads((run / 'run.json').read_text())['parameters']:,} parameters"
            )
        print(
            f"seed {seed}: epochs run {len(result.history)} (best {result.metrics['best_epoch']}), "
            f"stopped early: {result.metrics['stopped_early']}"
        )
        print(
            f"seed {seed}: test accuracy {test['accuracy']:.4f} on {test['count']} cutouts "
            f"({per_class_text(result.label_names, test['per_class'])})"
        )
        print(
            f"seed {seed}: training wall time {wall:.1f} s, {training_rate(result.history):,.0f} images/s after "
            f"the first epoch",
            flush=True,
        )
    if args.members > 1:
        folder = predict_cnn(runs, ds, split="test", name="bench-ensemble", overwrite=True)
        got = read_cnn_predictions(ds, folder.name)
        truth = ds.column("label")[got.rows]
        right = got.predicted == truth
        per_class = [
            float(right[truth == k].mean()) if np.any(truth == k) else None for k in range(len(got.label_names))
        ]
        print(
            f"ensemble of {args.members} (mean class probabilities, hipsml predict RUN1 RUN2 ...): test accuracy "
            f"{right.mean():.4f} on {right.size} cutouts ({per_class_text(got.label_names, per_class)})"
        )
    print(f"training wall time: {total:.1f} s in all (goal <= 300 s)")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
