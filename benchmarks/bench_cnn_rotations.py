"""Exact rotations cut from the sky against interpolated rotations of the stored cutouts: same CNN, same budget.

On bench_cnn.py's synthetic sky and dataset (64x64 cutouts at 3.2 arcsec/pixel in g, r, i and
radio; four classes; healpix splits 80/10/10; built once into a cache folder), trains the same
CNN (same options, seed and number of epochs, no early stopping) with two kinds of rotation:

``sky``    ``source="sky"``: every epoch, every training target cut afresh from the HiPS tiles at
           a random angle (exact: the survey reprojected onto the rotated pixel grid), plus the
           exact 90-degree turns and flips.
``pixel``  ``source="dataset", pixel_rotation=True``: the stored cutouts, turned and flipped
           exactly, then by a random angle in [0, 90) by bilinear interpolation on the device;
           the corners come from outside the cutout (filled with 0, the standardised mean).
``turns``  (optional) the stored cutouts with the exact turns and flips only (the default CNN).

Both are tested on the same stored test split. Prints, per arm, the test accuracy (overall and per
class), the training wall time (compilation included; the dataset build and the training-split
statistics, computed once for all arms, excluded) and the training
rate after the first epoch, and the machine. Run::

    python benchmarks/bench_cnn_rotations.py                         # 3000 sources, 15 epochs per arm
    python benchmarks/bench_cnn_rotations.py --sources 1000 --epochs 3 --arms sky,pixel,turns
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_cnn import build_dataset, machine, per_class_text, training_rate

#: the options of each arm, over the common ones
ARMS: dict[str, dict[str, Any]] = {
    "sky": {"source": "sky"},
    "pixel": {"source": "dataset", "pixel_rotation": True},
    "turns": {"source": "dataset"},
}


def train_arm(ds: Any, name: str, options: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Train one arm from a fresh run folder; its figures."""
    from hipsml.train import train_cnn

    def show(record: dict) -> None:
        print(f"  {name} epoch {record['epoch'] + 1}: loss {record['train_loss']:.4f} val accuracy "
              f"{record.get('val_accuracy', float('nan')):.4f} {record['images_per_second']:.0f} images/s "
              f"({record['seconds']:.1f} s)", flush=True)  # fmt: skip

    t0 = time.perf_counter()
    result = train_cnn(ds, {**options, **ARMS[name]}, workdir=workdir, on_epoch=show)
    wall = time.perf_counter() - t0
    test = result.metrics["test"]
    return {"arm": name, "accuracy": test["accuracy"], "count": test["count"], "wall": wall,
            "rate": training_rate(result.history), "per_class": per_class_text(result.label_names, test["per_class"]),
            "epochs": len(result.history)}  # fmt: skip


def warm_up(ds: Any, options: dict[str, Any]) -> None:
    """Compute what every arm shares once, before the clocks: the training statistics (cached per dataset)."""
    from hipsml.train import CNNConfig, parse_normalisation

    parse_normalisation(CNNConfig.from_mapping(options).normalise, dataset=ds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0, help="the sky's seed")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of every arm (no early stopping)")
    parser.add_argument("--arms", default="sky,pixel", help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--config", default=None, help="JSON mapping of CNN options common to the arms")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "hipsml-bench"))
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose among {', '.join(ARMS)}")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ds = build_dataset(cache, args.sources, args.seed)
    counts = {name: int(ds.split(name).size) for name in ds.split_names}
    print(f"dataset: {len(ds)} cutouts {tuple(ds.images.shape[1:])}, classes {ds.label_names}, splits {counts}")
    options = {**(json.loads(args.config) if args.config else {}), "epochs": args.epochs, "patience": None}
    warm_up(ds, options)
    runs = Path(tempfile.mkdtemp(prefix="cnn-rotations-", dir=cache))
    try:
        figures = [train_arm(ds, name, options, runs / name) for name in arms]
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    print(machine())
    print(f"{args.epochs} epochs per arm, options {json.dumps(options)}")
    for f in figures:
        print(f"{f['arm']:>5}: test accuracy {f['accuracy']:.4f} on {f['count']} cutouts ({f['per_class']}); "
              f"training {f['wall']:.1f} s, {f['rate']:,.0f} images/s after the first epoch")  # fmt: skip


if __name__ == "__main__":
    main()
