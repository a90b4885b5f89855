"""Coverage per channel on a patchy survey without Moc.fits: channel_coverage, min_coverage, drop_uncovered."""

from __future__ import annotations

import shutil
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
import zarr
from astropy.table import Table
from dataset_helpers import recipe_data, small_sky, write_recipe

import hipsml
from hipsml.errors import RecipeError

ORDER = 8  # the order the recipe reads (4"/pixel with 128-pixel tiles of an order-8 sky)


@pytest.fixture(scope="module")
def patchy(tmp_path_factory) -> tuple[Path, set[int]]:
    """The small sky with its radio band made patchy: no Moc.fits, and the two order-8 tiles holding the
    most targets deleted (so some cutouts are empty in radio, some cut in half by a tile edge)."""
    sky = small_sky(tmp_path_factory.mktemp("cov-sky"))
    root = tmp_path_factory.mktemp("patchy") / "sky"
    shutil.copytree(sky, root)
    (root / "radio" / "Moc.fits").unlink()
    cat = Table.read(root / "catalogue.ecsv")
    cells = hp.ang2pix(1 << ORDER, cat["ra"], cat["dec"], nest=True, lonlat=True)
    values, counts = np.unique(cells, return_counts=True)
    gone = {int(v) for v in values[np.argsort(-counts)[:2]]}
    for npix in gone:
        (root / "radio" / f"Norder{ORDER}" / f"Dir{npix // 10000 * 10000}" / f"Npix{npix}.fits").unlink()
    return root, gone


def _build(tmp_path: Path, sky: Path, name: str, **overrides) -> hipsml.Dataset:
    return hipsml.extract_dataset(
        write_recipe(tmp_path / f"{name}.yaml", recipe_data(sky, tmp_path / name, **overrides))
    )


def test_channel_coverage_is_the_exact_fraction_of_each_channel_holding_data(tmp_path, patchy):
    sky, _ = patchy
    ds = _build(tmp_path, sky, "all")
    images = np.asarray(ds.images[:])
    cc = ds.column("channel_coverage")
    assert cc.shape == (len(ds), 2) and cc.dtype == np.float32
    assert ds.group["channel_coverage"].metadata.dimension_names == (
        "cutout",
        "channel",
    )
    expected = np.isfinite(images).reshape(len(ds), 2, -1).mean(axis=2)
    np.testing.assert_array_equal(cc, expected.astype(np.float32))
    assert np.all(cc[:, 0] == 1.0)  # r is whole
    radio = cc[:, 1]
    assert (radio == 0).sum() > 0 and ((radio > 0) & (radio < 1)).sum() > 0 and (radio == 1).sum() > 0
    np.testing.assert_allclose(ds.column("coverage"), cc.mean(axis=1), rtol=1e-6)
    assert "channel_coverage" not in ds.table.colnames  # 2-D: read it with ds.column


def test_min_coverage_drops_targets_below_it_and_counts_them(tmp_path, patchy):
    sky, _ = patchy
    ref = _build(tmp_path, sky, "ref")
    radio = ref.column("channel_coverage")[:, 1]
    below = ref.column("id")[radio < 0.5]
    assert 0 < below.size < len(ref)
    ds = _build(tmp_path, sky, "cut", targets={"min_coverage": {"radio": 0.5}})
    assert set(ds.column("id")) == set(ref.column("id")) - set(below)
    assert ds.column("channel_coverage")[:, 1].min() >= 0.5
    # the kept rows are the reference's rows, in the same order, with the same pixels
    keep = ~np.isin(ref.column("id"), below)
    np.testing.assert_array_equal(ds.column("id"), ref.column("id")[keep])
    np.testing.assert_array_equal(np.asarray(ds.images[:]), np.asarray(ref.images[:])[keep])
    dropped = ds.attrs["targets"]["dropped"]
    assert dropped["min_coverage"] == below.size and dropped["min_coverage_by_channel"] == {"radio": below.size}
    assert ds.attrs["targets"]["min_coverage"] == {"r": 0.0, "radio": 0.5}
    assert ds.report.dropped == below.size
    assert f"{below.size} targets below min_coverage (channels below it: radio {below.size})" in ds.report.summary()
    assert "coverage pass: 120 candidates cut" in ds.report.summary() and "coverage pass" not in ref.report.summary()
    assert ds.hash != ref.hash  # min_coverage is part of the version's identity
    # one number applies to every channel: r is whole, so the same targets go
    same = _build(tmp_path, sky, "one", targets={"min_coverage": 0.5})
    np.testing.assert_array_equal(same.column("id"), ds.column("id"))
    assert not list((tmp_path / "cut").glob(".coverage-*"))  # the coverage pass's file goes with publishing


def test_min_coverage_naming_no_channel_is_a_one_line_error(tmp_path, patchy):
    sky, _ = patchy
    with pytest.raises(
        RecipeError,
        match=r"targets\.min_coverage: no channel or survey named 'radoi'.*did you mean 'radio'",
    ):
        _build(tmp_path, sky, "typo", targets={"min_coverage": {"radoi": 0.5}})


def _radio_only(sky: Path | str) -> list[dict]:
    return [{"location": f"{str(sky).rstrip('/')}/radio", "name": "radio"}]


def test_drop_uncovered_without_moc_uses_the_local_tiles_present(tmp_path, patchy):
    sky, gone = patchy
    cat = Table.read(sky / "catalogue.ecsv")
    cells = hp.ang2pix(1 << ORDER, cat["ra"], cat["dec"], nest=True, lonlat=True)
    outside = set(cat["id"][np.isin(cells, list(gone))])
    ds = _build(
        tmp_path,
        sky,
        "local",
        surveys=_radio_only(sky),
        targets={"drop_uncovered": True},
    )
    assert set(ds.column("id")) == set(cat["id"]) - outside
    assert ds.report.uncovered == len(outside) and ds.attrs["targets"]["dropped"]["uncovered"] == len(outside)
    assert f"{len(outside)} uncovered targets dropped" in ds.report.summary()


def test_drop_uncovered_over_http_without_moc_cuts_the_candidates_and_drops_the_empty(
    tmp_path, patchy, hips_server, monkeypatch
):
    sky, _ = patchy
    monkeypatch.setenv("HIPSML_CACHE_DIR", str(tmp_path / "cache"))
    server = hips_server(sky)
    kept = _build(
        tmp_path,
        server.url,
        "kept",
        surveys=_radio_only(server.url),
        targets_file=str(sky / "catalogue.ecsv"),
    )
    empty = kept.column("id")[kept.column("coverage") == 0]
    assert empty.size > 0
    ds = _build(
        tmp_path,
        server.url,
        "http",
        surveys=_radio_only(server.url),
        targets_file=str(sky / "catalogue.ecsv"),
        targets={"drop_uncovered": True},
    )
    assert set(ds.column("id")) == set(kept.column("id")) - set(empty)
    assert ds.report.no_data == empty.size and ds.attrs["targets"]["dropped"]["no_data"] == empty.size
    assert f"{empty.size} targets whose cutout holds no data in any channel" in ds.report.summary()
    assert zarr.open_group(ds.location, mode="r")["coverage"][:].min() > 0


def test_min_coverage_with_added_targets_extends_the_parent_version(tmp_path, patchy):
    sky, _ = patchy
    ref = _build(tmp_path, sky, "ref")
    passing = set(ref.column("id")[ref.column("channel_coverage")[:, 1] >= 0.5])
    cat = Table.read(sky / "catalogue.ecsv")
    first = tmp_path / "first.ecsv"
    cat[:60].write(first)
    data = recipe_data(
        sky,
        tmp_path / "grow",
        targets_file=str(first),
        targets={"min_coverage": {"radio": 0.5}},
    )
    v1 = hipsml.extract_dataset(write_recipe(tmp_path / "grow1.yaml", data))
    data["targets"]["file"] = str(sky / "catalogue.ecsv")
    v2 = hipsml.extract_dataset(write_recipe(tmp_path / "grow2.yaml", data))
    assert set(v1.column("id")) == passing & set(cat["id"][:60])
    assert set(v2.column("id")) == passing and v2.version == 2 and v2.attrs["parent"]["version"] == 1
    # the parent's rows come first, its whole chunks reused, their coverage carried over
    n1 = len(v1)
    np.testing.assert_array_equal(v2.column("id")[:n1], v1.column("id"))
    assert v2.report.reused > 0
    np.testing.assert_array_equal(v2.column("channel_coverage")[:n1], v1.column("channel_coverage"))
    assert v2.column("channel_coverage")[:, 1].min() >= 0.5


def test_resume_reuses_the_coverage_pass_of_the_same_recipe(tmp_path, patchy):
    """The coverage pass is kept (keyed by the version's hash) and read back by a resumed build, not a fresh one."""
    sky, _ = patchy
    path = write_recipe(
        tmp_path / "r.yaml",
        recipe_data(sky, tmp_path / "res", targets={"min_coverage": 0.5}),
    )
    first = hipsml.extract_dataset(path)
    assert first.report.below_min_coverage > 0
    # plant a coverage pass of this hash that says every channel is whole: a resumed build (the default)
    # trusts it, a fresh one (resume=False) does not
    root = tmp_path / "res2"
    root.mkdir()
    other = write_recipe(tmp_path / "r2.yaml", recipe_data(sky, root, targets={"min_coverage": 0.5}))
    saved = root / f".coverage-{first.hash[:16]}.npz"
    np.savez(
        saved,
        hash=np.asarray(first.hash),
        channel_coverage=np.ones((120, 2), np.float32),
    )
    fresh = hipsml.extract_dataset(other, resume=False)
    assert fresh.report.below_min_coverage == first.report.below_min_coverage and not saved.exists()
    shutil.rmtree(root)
    root.mkdir()
    np.savez(
        saved,
        hash=np.asarray(first.hash),
        channel_coverage=np.ones((120, 2), np.float32),
    )
    resumed = hipsml.extract_dataset(other, resume=True)
    assert resumed.hash == first.hash and len(resumed) == 120 and resumed.report.below_min_coverage == 0
    assert not saved.exists()
