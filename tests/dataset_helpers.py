"""Shared helpers of the dataset tests: a small labelled sky and recipes for it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

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
