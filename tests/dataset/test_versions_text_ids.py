"""Incremental versions with text ids (CSV, FITS, VOTable; unicode, lengths that differ between
versions), and the one line that says why a version is a full build without a parent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from dataset_helpers import recipe_data, slow_units_env, with_default_sigint, write_recipe

import hipsml
from hipsml.cli import main


def _text_catalogue(sky: Path, *, unicode: bool = True) -> Table:
    """The small sky's first 60 sources with text ids: short ASCII ones first, then longer ones
    (unicode where the format holds it: FITS tables are ASCII)."""
    cat = Table.read(sky / "catalogue.ecsv")["id", "ra", "dec", "class", "flux_r"][:60]
    cat.meta.clear()
    tail = "Ωμέγα" if unicode else "J123456.7+123456"
    cat["id"] = [f"T{i:05d}" for i in range(40)] + [f"NGC {1000 + i} {tail}-{'x' * i}" for i in range(20)]
    return cat


@pytest.mark.parametrize("ext,fmt", [(".csv", "ascii.csv"), (".fits", "fits"), (".xml", "votable")])
def test_added_targets_with_text_ids_make_an_incremental_version(tmp_path, sky, ext, fmt):
    cat = _text_catalogue(sky, unicode=fmt != "fits")
    path = tmp_path / f"targets{ext}"
    cat[:40].write(path, format=fmt)
    recipe = write_recipe(tmp_path / "r.yaml", recipe_data(sky, tmp_path / "ds", targets_file=str(path)))
    v1 = hipsml.extract_dataset(recipe)
    cat.write(path, format=fmt, overwrite=True)  # 20 targets added, with longer unicode ids
    v2 = hipsml.extract_dataset(recipe)
    assert (v1.version, v2.version, len(v1), len(v2)) == (1, 2, 40, 60)
    assert v2.attrs["parent"]["version"] == 1 and v2.report.reused > 0 and not v2.report.notes
    assert v2.column("id")[:40].tolist() == v1.column("id").tolist()
    assert sorted(v2.column("id")[40:].tolist()) == sorted(cat["id"][40:].tolist())
    assert np.array_equal(v2.images[:40], v1.images[:], equal_nan=True)
    # the new rows hold the cutouts of their own targets
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    ref = hipsml.cutouts(surveys, (v2.column("ra")[40:], v2.column("dec")[40:]), size=32, pixel_scale=4.0)
    assert np.array_equal(v2.images[40:], ref.images, equal_nan=True)


def test_a_moved_target_says_why_the_version_has_no_parent(tmp_path, sky, capsys):
    cat = _text_catalogue(sky)
    path = tmp_path / "targets.csv"
    cat[:40].write(path)
    recipe = write_recipe(tmp_path / "r.yaml", recipe_data(sky, tmp_path / "ds", targets_file=str(path)))
    assert main(["-q", "extract", str(recipe)]) == 0
    capsys.readouterr()
    cat["ra"][5] += 1e-4  # T00005 moves
    cat.write(path, overwrite=True)
    assert main(["-q", "extract", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "note: target 'T00005' of v1 changed position (1 moved): full build, no parent" in out
    v2 = hipsml.open_dataset(tmp_path / "ds")
    assert v2.version == 2 and v2.attrs["parent"] is None


def test_a_removed_target_and_a_changed_split_salt_are_named(tmp_path, sky):
    cat = _text_catalogue(sky)
    path = tmp_path / "targets.csv"
    cat[:40].write(path)
    data = recipe_data(sky, tmp_path / "ds", targets_file=str(path))
    recipe = write_recipe(tmp_path / "r.yaml", data)
    hipsml.extract_dataset(recipe)
    cat[1:60].write(path, overwrite=True)  # T00000 removed, 20 added
    v2 = hipsml.extract_dataset(recipe)
    assert v2.attrs["parent"] is None
    assert v2.report.notes == ["target 'T00000' of v1 is no longer in the targets (1 gone): full build, no parent"]
    data["splits"] = {**data["splits"], "salt": "other"}
    v3 = hipsml.extract_dataset(write_recipe(tmp_path / "r.yaml", data))
    assert v3.report.notes == ["splits.salt changed since v2 ('t' -> 'other'): full build, no parent"]


def test_ctrl_c_says_how_to_continue_and_a_plain_rerun_continues(tmp_path, sky, capsys):
    import signal
    import subprocess
    import sys
    import time

    import healpy as hp

    data = recipe_data(sky, tmp_path / "ds", compute={"workers": 1, "targets_per_unit": 16})
    data["targets"] = {"grid": {"order": 13, "center": [150.0, 2.0], "radius": 0.2}}
    recipe = write_recipe(tmp_path / "my grid.yaml", data)
    env = slow_units_env(tmp_path / "slow", 2.0)  # each finished unit then waits 2 s: Ctrl-C lands mid-build
    proc = subprocess.Popen([sys.executable, "-m", "hipsml.cli", "-q", "extract", str(recipe)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=with_default_sigint)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((tmp_path / "ds").glob(".staging-*/units/*.npz"))) >= 3:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.005)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, "the build finished before it could be interrupted"
    assert err.strip().splitlines()[-1] == f"hipsml: interrupted; continue with: hipsml extract '{recipe}' --resume"
    assert not (tmp_path / "ds" / "v1").exists()
    # --fresh (on a copy) starts over; the same command without --resume continues the finished units
    import shutil

    shutil.copytree(tmp_path / "ds", tmp_path / "copy")
    assert main(["-q", "extract", str(recipe), "--fresh", "--output", str(tmp_path / "copy")]) == 0
    summary = capsys.readouterr().out
    assert "published v1" in summary and "interrupted build" not in summary
    ds = hipsml.extract_dataset(recipe)
    assert 0 < ds.report.resumed < len(ds) and ds.version == 1
    assert f"{ds.report.resumed:,} from an interrupted build" in ds.report.summary()
    cells = hp.query_disc(1 << 13, hp.ang2vec(150.0, 2.0, lonlat=True), np.radians(0.2), nest=True)
    assert sorted(ds.column("id").tolist()) == sorted(cells.tolist())
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    ref = hipsml.cutouts(surveys, (ds.column("ra"), ds.column("dec")), size=32, pixel_scale=4.0)
    assert np.array_equal(ds.images[:], ref.images, equal_nan=True)


def test_fresh_discards_an_interrupted_build(tmp_path, sky, capsys):
    from hipsml.dataset._build import _open_staging

    staging = tmp_path / ".staging-0123"
    (staging / "units").mkdir(parents=True)
    (staging / "staging.json").write_text('{"hash": "abc", "reused_rows": 0, "bounds": [[0, 6]]}')
    assert _open_staging(staging, "abc", resume=True)["bounds"] == [[0, 6]]
    assert _open_staging(staging, "abc", resume=False) is None and not staging.exists()
    # and the command line: --fresh and --resume exclude each other
    recipe = write_recipe(tmp_path / "r.yaml", recipe_data(sky, tmp_path / "ds"))
    with pytest.raises(SystemExit):
        main(["extract", str(recipe), "--fresh", "--resume"])
    assert "not allowed with argument" in capsys.readouterr().err
