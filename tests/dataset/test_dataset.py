"""The dataset builder end to end: recipes -> versioned Zarr on Dask, resumable, reproducible."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
import zarr
from astropy.table import Table
from dataset_helpers import recipe_data, slow_units_env, write_recipe

import hipsml
from hipsml.cli import main
from hipsml.dataset import open_dataset


def _build(tmp_path: Path, sky: Path, name: str = "ds", **overrides) -> hipsml.Dataset:
    recipe = write_recipe(tmp_path / f"{name}.yaml", recipe_data(sky, tmp_path / name, **overrides))
    return hipsml.extract_dataset(recipe)


def _arrays(ds: hipsml.Dataset) -> dict[str, np.ndarray]:
    g = zarr.open_group(ds.location, mode="r")
    return {k: np.asarray(g[k][:]) for k in g.array_keys()}


def test_dataset_holds_the_cutouts_of_every_target_with_its_columns(tmp_path, sky):
    ds = _build(tmp_path, sky)
    cat = Table.read(sky / "catalogue.ecsv")
    assert len(ds) == len(cat) == 120
    assert ds.images.shape == (120, 2, 32, 32) and ds.images.dtype == np.float32
    assert ds.channels == ["r", "radio"]
    ids = ds.column("id")
    assert sorted(ids.tolist()) == sorted(cat["id"].tolist())
    by_id = {int(i): k for k, i in enumerate(cat["id"])}
    rows = np.array([by_id[int(i)] for i in ids])
    assert np.array_equal(ds.column("source_row"), rows)
    assert np.array_equal(ds.column("ra"), np.asarray(cat["ra"])[rows])
    assert np.array_equal(ds.column("flux_r"), np.asarray(cat["flux_r"])[rows])
    # labels: codes into sorted class names
    names = ds.label_names
    assert names == sorted(set(cat["class"]))
    assert [names[c] for c in ds.column("label")] == [str(cat["class"][r]) for r in rows]
    # the images are the cutouts of those targets, in that order (one call of the engine, by survey)
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    ref = hipsml.cutouts(surveys, (ds.column("ra"), ds.column("dec")), size=32, pixel_scale=4.0)
    assert np.array_equal(ds.images[:], ref.images, equal_nan=True)
    # rows follow NESTED order: a pure function of the positions
    cells = hp.ang2pix(1 << 16, ds.column("ra"), ds.column("dec"), nest=True, lonlat=True)
    assert np.all(np.diff(cells) >= 0)
    # every target of the synthetic sky lies inside it
    assert np.all(ds.column("coverage") == 1.0)
    assert ds.report.full == 120 and ds.report.empty == 0 and ds.report.created


def test_wcs_fits_export_and_plain_zarr_xarray_reads(tmp_path, sky):
    from astropy.io import fits
    from astropy.wcs import WCS

    ds = _build(tmp_path, sky)
    i = 17
    w = ds.wcs(i)
    centre = w.pixel_to_world(15.5, 15.5)  # the image centre (0-based pixels)
    assert abs(centre.ra.deg - ds.column("ra")[i]) < 1e-9 and abs(centre.dec.deg - ds.column("dec")[i]) < 1e-9
    assert np.allclose(np.abs(w.wcs.cd), [[4.0 / 3600, 0], [0, 4.0 / 3600]])
    with pytest.raises(hipsml.errors.InvalidInputError):
        ds.wcs(len(ds))
    (path,) = ds.to_fits([i], tmp_path / "fits")
    with fits.open(path) as hdul:
        data = hdul[0].data
        header = hdul[0].header
    assert np.array_equal(data, ds.images[i], equal_nan=True)
    x, y = WCS(header).celestial.world_to_pixel(centre)
    assert abs(x - 15.5) < 1e-6 and abs(y - 15.5) < 1e-6
    # readable without hipsml
    g = zarr.open_group(ds.location, mode="r")
    assert np.array_equal(g["images"][5:9], ds.images[5:9], equal_nan=True)
    assert g.attrs["hipsml"]["geometry"]["size"] == 32
    assert g["split"].attrs["names"] == ["train", "val", "test"]
    xds = ds.to_xarray()
    assert xds["images"].dims == ("cutout", "channel", "y", "x")
    assert list(xds["channel"].values) == ["r", "radio"]
    assert np.array_equal(xds["images"][3].values, ds.images[3], equal_nan=True)
    assert set(ds.table.colnames) >= {
        "id",
        "ra",
        "dec",
        "label",
        "split",
        "healpix",
        "coverage",
        "source_row",
        "flux_r",
    }
    train = ds.split("train")
    assert np.all(ds.column("split")[train] == 0) and train.size > 0


def test_unchanged_recipe_writes_nothing(tmp_path, sky):
    ds = _build(tmp_path, sky)
    root = ds.path
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    again = _build(tmp_path, sky)
    assert again.report.created is False and again.version == ds.version == 1 and again.hash == ds.hash
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.name != ".lock"} == {
        p: t for p, t in before.items() if p.name != ".lock"
    }


def test_same_hash_and_arrays_with_threads_processes_and_one_worker_over_http(tmp_path, sky, hips_server, monkeypatch):
    monkeypatch.setenv("HIPSML_CACHE_DIR", str(tmp_path / "cache"))
    server = hips_server(sky)
    data = recipe_data(server.url, tmp_path / "a", targets_file=str(sky / "catalogue.ecsv"))
    threads = hipsml.extract_dataset(write_recipe(tmp_path / "a.yaml", data))
    one = hipsml.extract_dataset(
        write_recipe(tmp_path / "b.yaml", {**data, "output": {**data["output"], "path": str(tmp_path / "b")}}),
        workers=1,
    )
    procs = hipsml.extract_dataset(
        write_recipe(tmp_path / "c.yaml", {**data, "output": {**data["output"], "path": str(tmp_path / "c")}}),
        scheduler="processes",
    )
    assert threads.hash == one.hash == procs.hash
    a, b, c = _arrays(threads), _arrays(one), _arrays(procs)
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True) and np.array_equal(a[k], c[k], equal_nan=True), k
    assert threads.report.units > 4  # several tasks ran
    # the builds that start with empty in-memory caches decode tiles; the one-worker build runs in
    # this process after the threaded one and reuses its decoded tiles. (No exact count is asserted:
    # two threads may race to decode one tile, and a busy machine once gave one decode fewer than the
    # distinct tiles the server served across all three builds.)
    tiles = {path for path in server.counts() if "/Norder" in f"/{path}" and "Allsky" not in path}
    assert len(tiles) > 0
    assert threads.report.tile_decodes > 0 and procs.report.tile_decodes > 0
    assert one.report.tile_decodes == 0
    assert server.count("r/properties") >= 1


def _grid_recipe(sky: Path, out: Path, **overrides) -> dict:
    data = recipe_data(sky, out, **overrides)
    data["targets"] = {"grid": {"order": 13, "center": [150.0, 2.0], "radius": 0.2}}
    return data


def test_sigkill_then_resume_gives_the_uninterrupted_result(tmp_path, sky):
    data = _grid_recipe(sky, tmp_path / "killed", compute={"workers": 1, "targets_per_unit": 16})
    recipe = write_recipe(tmp_path / "killed.yaml", data)
    env = slow_units_env(tmp_path / "slow", 2.0)  # each finished unit then waits 2 s: the kill lands mid-build
    proc = subprocess.Popen([sys.executable, "-m", "hipsml.cli", "-q", "extract", str(recipe)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    markers: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        markers = list((tmp_path / "killed").glob(".staging-*/units/*.npz"))
        if len(markers) >= 5:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    assert not (tmp_path / "killed" / "v1").exists()  # nothing half-published
    resumed = hipsml.extract_dataset(recipe, resume=True)
    assert 0 < resumed.report.resumed < len(resumed)
    clean = hipsml.extract_dataset(write_recipe(tmp_path / "clean.yaml", _grid_recipe(sky, tmp_path / "clean")))
    assert resumed.hash == clean.hash
    a, b = _arrays(resumed), _arrays(clean)
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    grid_cells = hp.query_disc(1 << 13, hp.ang2vec(150.0, 2.0, lonlat=True), np.radians(0.2), nest=True)
    assert sorted(a["id"].tolist()) == sorted(grid_cells.tolist())
    assert not list((tmp_path / "killed").glob(".staging-*"))


def test_added_targets_reuse_chunks_and_keep_splits(tmp_path, sky):
    cat = Table.read(sky / "catalogue.ecsv")
    first = tmp_path / "first.ecsv"
    cat[:70].write(first)
    data = recipe_data(sky, tmp_path / "grow", targets_file=str(first))
    recipe = write_recipe(tmp_path / "grow.yaml", data)
    v1 = hipsml.extract_dataset(recipe)
    cat.write(first, overwrite=True)  # the same file, with rows appended
    v2 = hipsml.extract_dataset(recipe)
    assert (v1.version, v2.version, len(v1), len(v2)) == (1, 2, 70, 120)
    assert v2.attrs["parent"]["version"] == 1 and v2.report.reused > 0
    chunk = v1.images.chunks[0]
    full = 70 // chunk
    assert v2.report.reused == full * chunk
    old = v1.location / "images" / "c"
    new = v2.location / "images" / "c"
    linked = [os.path.samefile(old / str(i) / "0" / "0" / "0", new / str(i) / "0" / "0" / "0") for i in range(full)]
    assert all(linked) and full >= 2
    # old targets keep their rows, images and splits
    assert np.array_equal(v2.column("id")[:70], v1.column("id"))
    assert np.array_equal(v2.column("split")[:70], v1.column("split"))
    assert np.array_equal(v2.images[:70], v1.images[:], equal_nan=True)
    # and the grown version holds exactly what a fresh build of all targets holds, by id
    fresh = _build(tmp_path, sky, name="fresh")
    order_v2, order_fresh = np.argsort(v2.column("id")), np.argsort(fresh.column("id"))
    assert np.array_equal(v2.images[:][order_v2], fresh.images[:][order_fresh], equal_nan=True)
    assert np.array_equal(v2.column("split")[order_v2], fresh.column("split")[order_fresh])
    out = main(["datasets", str(tmp_path / "grow")])
    assert out == 0


def test_cli_extract_datasets_preview(tmp_path, sky, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", recipe_data(sky, tmp_path / "cli"))
    assert main(["-q", "extract", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "published v1" in out and "120 cutouts" in out and "120 fully covered" in out
    assert main(["datasets", str(tmp_path / "cli")]) == 0
    listing = capsys.readouterr().out
    ds = open_dataset(tmp_path / "cli")
    assert "v1" in listing and ds.hash[:16] in listing and "120" in listing
    assert main(["preview", f"{tmp_path / 'cli'}@v1", "--out", str(tmp_path / "grid.png"), "--per-group", "2"]) == 0
    from PIL import Image

    img = Image.open(tmp_path / "grid.png")
    groups = {(s, c) for s, c in zip(ds.column("split"), ds.column("label"), strict=True)}
    # one 64-pixel row (32-pixel cutouts drawn at 2x) per (split, label) group present
    assert img.size[1] == 30 + len(groups) * (64 + 10)
    assert main(["-q", "extract", str(recipe)]) == 0
    assert "nothing written" in capsys.readouterr().out


def test_splits_follow_the_documented_function(tmp_path, sky):
    import hashlib

    ds = _build(tmp_path, sky)
    mask = (1 << 64) - 1

    def splitmix(x: int) -> int:
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    salt = int.from_bytes(hashlib.blake2b(b"t", digest_size=8).digest(), "little")
    cum = [0.6, 0.8, 1.0]
    expected = []
    for ra, dec in zip(ds.column("ra"), ds.column("dec"), strict=True):
        cell = int(hp.ang2pix(1 << 9, ra, dec, nest=True, lonlat=True))
        u = (splitmix(cell ^ salt) >> 11) * 2.0**-53
        expected.append(next(i for i, c in enumerate(cum) if u < c))
    assert ds.column("split").tolist() == expected
    # healpix scheme: targets in one cell of the split order share their split
    cells = hp.ang2pix(1 << 9, ds.column("ra"), ds.column("dec"), nest=True, lonlat=True)
    for c in np.unique(cells):
        assert np.unique(ds.column("split")[cells == c]).size == 1


def test_split_fractions_and_independence_from_other_keys():
    from hipsml.dataset import assign_splits

    keys = np.arange(300_000, dtype=np.uint64) * np.uint64(7919)
    codes = assign_splits(keys, salt="x", fractions={"a": 0.7, "b": 0.2, "c": 0.1})
    assert np.allclose(np.bincount(codes) / keys.size, [0.7, 0.2, 0.1], atol=0.003)
    assert np.array_equal(assign_splits(keys[:1000], salt="x", fractions={"a": 0.7, "b": 0.2, "c": 0.1}), codes[:1000])
    other = assign_splits(keys, salt="y", fractions={"a": 0.7, "b": 0.2, "c": 0.1})
    assert 0.4 < float((other == codes).mean()) < 0.7  # another salt reshuffles (0.54 expected)


def test_id_scheme_float16_and_grid_targets(tmp_path, sky):
    ds32 = _build(tmp_path, sky, name="f32", splits={"scheme": "id"})
    ds16 = _build(tmp_path, sky, name="f16", splits={"scheme": "id"}, output={"dtype": "float16"})
    assert ds16.images.dtype == np.float16
    assert np.array_equal(ds16.images[:], ds32.images[:].astype(np.float16), equal_nan=True)
    assert np.array_equal(ds16.column("split"), ds32.column("split"))
    for compressor in ("zstd", "none"):
        other = _build(tmp_path, sky, name=compressor, splits={"scheme": "id"}, output={"compressor": compressor})
        assert np.array_equal(other.images[:], ds32.images[:], equal_nan=True)
        assert other.hash != ds32.hash  # the storage is part of what defines a version
    grid = hipsml.extract_dataset(write_recipe(tmp_path / "g.yaml", _grid_recipe(sky, tmp_path / "g")))
    cells = hp.query_disc(1 << 13, hp.ang2vec(150.0, 2.0, lonlat=True), np.radians(0.2), nest=True)
    assert len(grid) == cells.size and "label" not in grid.group
    # the last chunk is partial: its rows read back through zarr as the engine cuts them
    assert len(grid) % grid.images.chunks[0] != 0
    tail = slice(len(grid) - 7, len(grid))
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    ref = hipsml.cutouts(surveys, (grid.column("ra")[tail], grid.column("dec")[tail]), size=32, pixel_scale=4.0)
    assert np.array_equal(grid.images[tail], ref.images, equal_nan=True)
    ra, dec = hp.pix2ang(1 << 13, grid.column("id"), nest=True, lonlat=True)
    assert np.allclose(ra, grid.column("ra")) and np.allclose(dec, grid.column("dec"))


def test_uncovered_targets_are_kept_empty_or_dropped(tmp_path, sky):
    cat = Table.read(sky / "catalogue.ecsv")[:40]
    far = Table.read(sky / "catalogue.ecsv")[:5]
    far["id"] = far["id"] + 10_000
    far["ra"] = 10.0 + np.arange(5)
    far["dec"] = -30.0
    from astropy.table import vstack

    path = tmp_path / "t.ecsv"
    vstack([cat, far]).write(path)
    kept = _build(tmp_path, sky, name="kept", targets_file=str(path))
    assert len(kept) == 45 and kept.report.empty == 5
    assert np.all(kept.column("coverage")[np.isin(kept.column("id"), far["id"])] == 0)
    dropped = _build(tmp_path, sky, name="dropped", targets_file=str(path), targets={"drop_uncovered": True})
    assert (
        len(dropped) == 40 and dropped.report.dropped == 5 and "5 uncovered targets dropped" in dropped.report.summary()
    )


def test_vizier_targets_read_offline_from_the_saved_votable(tmp_path, sky):
    from hipsml.dataset._recipe import VizierQuery
    from hipsml.dataset._targets import query_file_name

    query = {"catalog": "J/X/demo", "columns": ["id", "ra", "dec", "class"], "row_limit": 1000}
    out = tmp_path / "viz"
    saved = out / "queries" / query_file_name(VizierQuery(**query))
    saved.parent.mkdir(parents=True)
    Table.read(sky / "catalogue.ecsv")["id", "ra", "dec", "class"][:30].write(saved, format="votable")
    data = recipe_data(sky, out)
    data["targets"] = {"vizier": query, "columns": {"id": "id", "ra": "ra", "dec": "dec", "label": "class"}}
    ds = hipsml.extract_dataset(write_recipe(tmp_path / "viz.yaml", data))
    assert len(ds) == 30 and ds.attrs["targets"]["source"] == saved.name
    assert ds.label_names is not None


@pytest.mark.remote_data
def test_vizier_query_runs_online_and_is_saved(tmp_path, sky):
    data = recipe_data(sky, tmp_path / "online")
    data["targets"] = {"vizier": {"catalog": "VIII/92/first14", "row_limit": 50},
                       "columns": {"ra": "RAJ2000", "dec": "DEJ2000"}}  # fmt: skip
    ds = hipsml.extract_dataset(write_recipe(tmp_path / "online.yaml", data))
    assert len(ds) == 50 and list((tmp_path / "online" / "queries").glob("vizier-*.xml"))


def test_rotation_column_and_a_tcp_scheduler(tmp_path, sky):
    from distributed import LocalCluster

    cat = Table.read(sky / "catalogue.ecsv")["id", "ra", "dec", "class"][:24]
    cat["angle"] = np.linspace(0.0, 330.0, len(cat))
    cat.write(tmp_path / "rot.ecsv")
    data = recipe_data(sky, tmp_path / "rot", targets_file=str(tmp_path / "rot.ecsv"), cutout={"rotation": "angle"})
    data["targets"]["carry"] = []
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        ds = hipsml.extract_dataset(write_recipe(tmp_path / "rot.yaml", data), scheduler=cluster.scheduler_address)
    by_id = {int(i): k for k, i in enumerate(cat["id"])}
    angles = np.array([cat["angle"][by_id[int(i)]] for i in ds.column("id")])
    assert np.array_equal(ds.column("rotation"), angles)
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    ref = hipsml.cutouts(surveys, (ds.column("ra"), ds.column("dec")), size=32, pixel_scale=4.0, rotation=angles)
    assert np.array_equal(ds.images[:], ref.images, equal_nan=True)
    i = int(np.argmax(angles == 90.0)) if np.any(angles == 90.0) else 3
    cd = ds.wcs(i).wcs.cd
    t = np.radians(angles[i])
    assert np.allclose(cd, 4.0 / 3600 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]]))


def test_a_survey_failing_mid_build_says_how_to_resume(tmp_path, sky, hips_server, monkeypatch, capsys):
    import shutil

    from hips_server import Fault

    monkeypatch.setenv("HIPSML_CACHE_DIR", str(tmp_path / "cache"))
    server = hips_server(sky)
    data = recipe_data(server.url, tmp_path / "flaky", targets_file=str(sky / "catalogue.ecsv"))
    for survey in data["surveys"]:
        survey["options"] = {"retries": 1, "backoff": 0.01}
    recipe = write_recipe(tmp_path / "flaky.yaml", data)
    server.inject("radio/Norder*/Dir*/*", then=Fault.status(500))  # every radio tile fails for good
    assert main(["-q", "extract", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "500" in err
    # every radio tile fails, so no work unit finished: the message says so, and how to go on
    assert err.endswith(f"had finished; the same extraction run again starts them: hipsml extract {recipe} --resume")
    assert "none of the " in err and "finished work units" not in err
    assert not (tmp_path / "flaky" / "v1").exists() and list((tmp_path / "flaky").glob(".staging-*"))
    server.clear_faults()  # the server recovers
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    ds = hipsml.extract_dataset(recipe, resume=True)
    assert len(ds) == 120 and ds.report.full == 120
