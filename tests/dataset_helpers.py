"""Shared helpers of the dataset tests: a small labelled sky and recipes for it; a generated labelled dataset."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml
import zarr

_SKY_CACHE: dict[str, Path] = {}


def small_sky(base: Path) -> Path:
    """A seeded two-band synthetic sky (120 labelled sources) under ``base/sky``, made once per session."""
    from hipsml.sky import make_sky

    key = "sky"
    if key not in _SKY_CACHE:
        root = base / "sky"
        make_sky(root, n_sources=120, seed=3, order=8, tile_width=128, radius=0.2, bands=("r", "radio"))
        _SKY_CACHE[key] = root
    return _SKY_CACHE[key]


def recipe_data(sky: Path | str, out: Path | str, **overrides: Any) -> dict[str, Any]:
    """A recipe for ``sky`` (a folder or an http URL) writing to ``out``; sections can be overridden."""
    sky = str(sky).rstrip("/")
    data: dict[str, Any] = {
        "name": "test-set",
        "surveys": [{"location": f"{sky}/r", "name": "r"}, {"location": f"{sky}/radio", "name": "radio"}],
        "targets": {
            "file": overrides.pop("targets_file", None) or f"{sky}/catalogue.ecsv",
            "columns": {"id": "id", "ra": "ra", "dec": "dec", "label": "class"},
            "carry": ["flux_r"],
        },
        "cutout": {"size": 32, "pixel_scale": 4.0},
        "splits": {"scheme": "healpix", "order": 9, "salt": "t", "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}},
        "output": {"path": str(out), "chunk_mb": 0.05},
        "compute": {"workers": 2, "targets_per_unit": 16},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def write_recipe(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def copy_sky(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def generated_dataset(
    root: Path, *, n: int = 32, size: int = 8, classes=("dot", "blob"), labels=None, channels=("g", "r"), seed: int = 0
):
    """A published one-version Zarr dataset written directly (no sky, no extraction): fast for training tests.

    Each cutout is a dot (odd label) or a blob (even label) under noise in every channel; every
    4th cutout is in split ``test``, the rest in ``train``.
    """
    import numpy as np
    import zarr

    import hipsml

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(classes) if labels is None else np.asarray(labels)
    r2 = np.sum((np.mgrid[0:size, 0:size] - (size - 1) / 2) ** 2, axis=0)
    shapes = np.stack([np.exp(-r2 / 2), np.exp(-r2 / 8)])
    images = rng.normal(0, 0.1, (n, len(channels), size, size)).astype(np.float32)
    images += shapes[labels % 2][:, None].astype(np.float32)
    group = zarr.open_group(root / "v1", mode="w", zarr_format=3)
    group.create_array("images", data=images, chunks=(n, len(channels), size, size))
    group.create_array("label", data=labels.astype(np.int64), chunks=(n,)).attrs["names"] = list(classes)
    split = (np.arange(n) % 4 == 3).astype(np.int8)
    group.create_array("split", data=split, chunks=(n,)).attrs["names"] = ["train", "test"]
    group.create_array("id", data=np.arange(n, dtype=np.int64), chunks=(n,))
    group.attrs["hipsml"] = {"complete": True, "version": 1, "hash": f"gen-{root.name}-{size}-{seed}", "count": n,
                             "channels": list(channels), "name": root.name}  # fmt: skip
    return hipsml.open_dataset(root)


def make_dataset(
    root: Path,
    *,
    n: int = 240,
    size: int = 16,
    channels: int = 2,
    classes=("point", "blob", "ring"),
    noise: float = 0.3,
    seed: int = 0,
    fractions=(0.6, 0.2, 0.2),
) -> Any:
    """A published one-version dataset of generated shapes (labels, train/val/test splits, NaN corners)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    labels = rng.integers(0, len(classes), n)
    images = rng.normal(0.0, noise, (n, channels, size, size)).astype(np.float32)
    for i, k in enumerate(labels):
        dy, dx = rng.uniform(-1, 1, 2)
        y, x = yy - dy, xx - dx
        r = np.hypot(y, x)
        shape = {
            "point": np.exp(-(r**2) / 2),
            "blob": np.exp(-(r**2) / 18),
            "ring": np.exp(-((r - size / 3) ** 2) / 2),
            "cross": np.exp(-(np.minimum(abs(y), abs(x)) ** 2) / 2) * (r < size / 2.5),
        }[classes[k]]
        for c in range(channels):
            images[i, c] += rng.uniform(1, 2) * shape * (c + 1)
    images[::7, :, :2, :2] = np.nan
    split = rng.choice(3, n, p=list(fractions)).astype(np.int8)
    group = zarr.open_group(root / "v1", mode="w", zarr_format=3)
    group.create_array("images", data=images, chunks=(32, channels, size, size))
    group.create_array("label", data=labels.astype(np.int64), chunks=(n,)).attrs["names"] = list(classes)
    group.create_array("split", data=split, chunks=(n,)).attrs["names"] = ["train", "val", "test"]
    group.create_array("id", data=np.arange(n, dtype=np.int64), chunks=(n,))
    group.attrs["hipsml"] = {
        "complete": True,
        "version": 1,
        "hash": f"generated-{root.name}-{seed}",
        "count": n,
        "channels": [f"c{c}" for c in range(channels)],
        "name": root.name,
    }
    import hipsml

    return hipsml.open_dataset(root)


def slow_units_env(folder: Path, seconds: float) -> dict[str, str]:
    """The environment of a child ``hipsml`` process in which every finished work unit then waits ``seconds``.

    A ``sitecustomize`` module on the child's path wraps the builder's ``run_unit``: the unit's
    done-marker is written, then the child sleeps. A test that interrupts or kills the child after
    N markers therefore always finds the build unfinished, however fast the machine (no race).
    """
    import os
    import sys
    import textwrap

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import time

            import hipsml.dataset._build as _build

            _real_run_unit = _build.run_unit


            def _run_unit_then_wait(job):
                result = _real_run_unit(job)
                time.sleep({seconds!r})
                return result


            _build.run_unit = _run_unit_then_wait
            """
        )
    )
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}


def with_default_sigint() -> None:
    """``preexec_fn`` of a child that a test interrupts with SIGINT: Ctrl-C's default handling.

    A process started in the background by a non-interactive shell (as CI may start the suite)
    has SIGINT ignored, and its children inherit that: Python then installs no KeyboardInterrupt
    handler and the child never sees the test's Ctrl-C.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
