"""Limits of a recipe: work units for every worker, memory estimated and refused before allocating,
grids refused before their cells are enumerated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from dataset_helpers import recipe_data, small_sky, write_recipe

import hipsml
from hipsml.dataset._build import unit_size


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> Path:
    return small_sky(tmp_path_factory.mktemp("limits-sky"))


def _arrays(ds: hipsml.Dataset) -> dict[str, np.ndarray]:
    g = zarr.open_group(ds.location, mode="r")
    return {k: np.asarray(g[k][:]) for k in g.array_keys()}


def test_unit_size_gives_two_units_per_worker_in_whole_chunks():
    assert unit_size(3000, chunk=10, targets_per_unit=4096, slots=2) == 750
    assert unit_size(3000, chunk=64, targets_per_unit=4096, slots=2) == 704  # 750 down to whole chunks
    assert unit_size(100_000, chunk=10, targets_per_unit=4096, slots=2) == 4090  # the recipe's cap
    assert unit_size(30, chunk=10, targets_per_unit=4096, slots=4) == 10  # never less than a chunk
    assert unit_size(3000, chunk=10, targets_per_unit=5, slots=1) == 10


def test_a_small_job_uses_every_worker_and_is_the_same_for_any_worker_count(tmp_path, sky):
    data = recipe_data(sky, tmp_path / "one", compute={"workers": 1, "targets_per_unit": 4096})
    one = hipsml.extract_dataset(write_recipe(tmp_path / "one.yaml", data))
    data["output"] = {**data["output"], "path": str(tmp_path / "four")}
    four = hipsml.extract_dataset(write_recipe(tmp_path / "four.yaml", data), workers=4)
    chunk = one.images.chunks[0]
    assert chunk == 6  # 0.05 MB chunks of 2 x 32 x 32 float32 cutouts
    # 120 targets: at least 2 units per worker, each of whole chunks
    assert one.report.units >= 2 and four.report.units >= 8 and four.report.units > one.report.units
    assert one.hash == four.hash
    a, b = _arrays(one), _arrays(four)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
