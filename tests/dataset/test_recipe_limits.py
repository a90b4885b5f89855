"""Limits of a recipe: work units for every worker, memory estimated and refused before allocating,
grids refused before their cells are enumerated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from dataset_helpers import recipe_data, write_recipe

import hipsml
from hipsml.dataset._build import unit_size


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


def _fails(capsys, recipe: Path, *needles: str) -> str:
    from hipsml.cli import main

    assert main(["-q", "extract", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_huge_grids_are_refused_before_their_cells_are_listed(tmp_path, sky, capsys):
    # listing 1.3e13 cells would take 96 TiB: the refusal must come from the count alone
    data = recipe_data(sky, tmp_path / "whole")
    data["targets"] = {"grid": {"order": 20, "center": [0.0, 0.0], "radius": 180}}
    _fails(capsys, write_recipe(tmp_path / "w.yaml", data),
           "targets.grid: order 20 over a 180° disc holds about 13,194,139,533,312 cells (96.0 TiB of cell indices alone)",
           "more than the 50,000,000 a grid may hold")  # fmt: skip
    data["targets"] = {"grid": {"order": 13, "center": [0.0, 0.0], "radius": 90}}
    _fails(capsys, write_recipe(tmp_path / "h.yaml", data), "holds about 402,653,184 cells")
    assert not (tmp_path / "whole").exists()


def test_a_build_over_the_memory_budget_is_refused_with_both_figures(tmp_path, sky, capsys, monkeypatch):
    data = recipe_data(sky, tmp_path / "big", cutout={"size": 2048, "pixel_scale": 0.5})
    recipe = write_recipe(tmp_path / "big.yaml", data)
    monkeypatch.setenv("HIPSML_MEMORY_BUDGET", "100MiB")
    err = _fails(
        capsys,
        recipe,
        "recipe 'test-set' (120 cutouts of 2 x 2048 x 2048 pixels, 2 worker threads) needs about",
        "more than the memory budget of 100.0 MiB; make cutout.size, output.chunk_mb or compute.workers smaller",
    )
    assert "HIPSML_MEMORY_BUDGET" in err
    assert not (tmp_path / "big").exists()  # refused before any array was made


def test_the_estimate_follows_the_chunk_not_the_targets_per_unit(sky):
    from hipsml.dataset._limits import TABLE_BYTES_PER_TARGET, estimate_build_memory
    from hipsml.extract import CutoutSpec

    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    spec = CutoutSpec.for_surveys(surveys, size=2048, pixel_scale=0.5)

    def est(n: int, chunk_rows: int = 1, unit: int = 300) -> float:
        return estimate_build_memory(n, spec=spec, surveys=surveys, chunk_rows=chunk_rows, unit_targets=unit, slots=2)

    # one more row per chunk: 2 slots x 3 copies x (2 channels x 2048 x 2048 float32)
    assert est(300, chunk_rows=2) - est(300) == 2 * 3 * 2 * 2048 * 2048 * 4
    # 300 cutouts of 2048 x 2048 x 2 (9.4 GiB all together) need well under 2 GiB: a unit holds one chunk
    assert est(300) < 2 * 2**30
    # more targets add their table rows (and survey caches, capped), never their cutouts
    assert est(300_000) - est(30_000) == 270_000 * (TABLE_BYTES_PER_TARGET + 16)
    # units of more targets add decoded tiles, at most spec.memory_limit per slot (one slab: r and radio share it)
    assert 0 < est(300, unit=30_000) - est(300) <= 2 * spec.memory_limit


def test_a_unit_holds_one_chunk_of_cutouts_at_a_time(tmp_path, sky):
    import tracemalloc

    from hipsml.dataset._build import _UnitJob, run_unit
    from hipsml.dataset._store import zarr_compressors
    from hipsml.extract import CutoutSpec, SurveyRef, plan_work_units

    refs = tuple(SurveyRef(str(sky / b)) for b in ("r", "radio"))
    surveys = [hipsml.open_survey(sky / b) for b in ("r", "radio")]
    spec = CutoutSpec.for_surveys(surveys, size=256, pixel_scale=1.0, memory_limit=4 * 2**20)  # 64 tiles: 8 MiB
    cat = zarr.open_group(
        hipsml.extract_dataset(write_recipe(tmp_path / "r.yaml", recipe_data(sky, tmp_path / "ds"))).location
    )
    ra, dec = np.asarray(cat["ra"][:]), np.asarray(cat["dec"][:])
    (unit,) = plan_work_units(ra, dec, spec, surveys, target_per_unit=120, align=2, presorted=True)
    g = zarr.open_group(tmp_path / "g", mode="w", zarr_format=3)
    g.create_array("images", shape=(120, 2, 256, 256), chunks=(2, 2, 256, 256), dtype="float32", fill_value=np.nan,
                   compressors=zarr_compressors("lz4", 4))  # fmt: skip
    job = _UnitJob(refs, spec, unit, str(tmp_path / "g" / "images"), str(tmp_path / "m.npz"), "float32", 2, "lz4")
    run_unit(job)  # warm up: open the surveys, compile
    (tmp_path / "m.npz").unlink()
    tracemalloc.start()
    run_unit(job)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    block = 120 * 2 * 256 * 256 * 4  # 60 MiB: what a unit held when it cut all its cutouts at once
    assert peak < block / 3, peak  # 8 MiB of tiles and a few 1 MiB chunks
    ref = hipsml.cutouts(surveys, (ra, dec), size=256, pixel_scale=1.0)
    assert np.array_equal(zarr.open_group(tmp_path / "g")["images"][:], ref.images, equal_nan=True)
