"""Recipe inputs that used to slip through: empty VOTable label cells, Parquet without pandas,
another recipe's dataset folder, over-long output names, and the demo's pasted hint."""

from __future__ import annotations

import ast
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from dataset_helpers import recipe_data, write_recipe

import hipsml
from hipsml.cli import main


def _fails(capsys, recipe: Path, *needles: str, extra: tuple[str, ...] = ()) -> str:
    assert main(["-q", "extract", str(recipe), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_an_empty_votable_label_cell_is_an_error_naming_the_row(tmp_path, sky, capsys):
    cat = Table.read(sky / "catalogue.ecsv")["id", "ra", "dec", "class", "flux_r"][:20]
    cat["class"] = cat["class"].astype(str)
    cat["class"][7] = ""
    cat.write(tmp_path / "t.xml", format="votable")
    recipe = write_recipe(tmp_path / "r.yaml", recipe_data(sky, tmp_path / "out", targets_file=str(tmp_path / "t.xml")))
    _fails(capsys, recipe, "targets.columns.label: column 'class' of", "t.xml is empty in data row 8")
    assert not (tmp_path / "out").exists()


def test_parquet_targets_are_read_without_pandas(tmp_path, sky, monkeypatch):
    cat = Table.read(sky / "catalogue.ecsv")["id", "ra", "dec", "class", "flux_r"][:25]
    cat.write(tmp_path / "t.parquet", format="parquet")
    cat.write(tmp_path / "t.csv", format="ascii.csv")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails, as where it is not installed
    with pytest.raises(ImportError):
        import pandas  # noqa: F401
    pq = hipsml.extract_dataset(
        write_recipe(tmp_path / "p.yaml", recipe_data(sky, tmp_path / "p", targets_file=str(tmp_path / "t.parquet")))
    )
    csv = hipsml.extract_dataset(
        write_recipe(tmp_path / "c.yaml", recipe_data(sky, tmp_path / "c", targets_file=str(tmp_path / "t.csv")))
    )
    assert len(pq) == 25 and pq.attrs["targets"]["hash"] == csv.attrs["targets"]["hash"]
    assert pq.label_names == csv.label_names and np.array_equal(pq.column("flux_r"), csv.column("flux_r"))


def test_a_dataset_folder_refuses_another_recipe(tmp_path, sky, capsys):
    data = recipe_data(sky, tmp_path / "ds")
    hipsml.extract_dataset(write_recipe(tmp_path / "a.yaml", data))
    other = {**data, "name": "other-set"}
    _fails(
        capsys,
        write_recipe(tmp_path / "b.yaml", other),
        f"output.path {tmp_path / 'ds'} holds v1 of recipe 'test-set', not of 'other-set'",
        extra=("--resume",),
    )
    fewer = {**data, "surveys": data["surveys"][:1]}
    _fails(capsys, write_recipe(tmp_path / "c.yaml", fewer), "with surveys '2 entries', this recipe has '1 entries'")
    bigger = {**data, "cutout": {**data["cutout"], "size": 48}}
    _fails(
        capsys,
        write_recipe(tmp_path / "d.yaml", bigger),
        "with cutout.size 32, this recipe has 48; give this recipe another output.path",
    )
    assert sorted(p.name for p in (tmp_path / "ds").iterdir() if not p.name.startswith(".")) == [
        "v1",
        "v1.manifest.json",
        "versions.json",
    ]


def test_an_output_name_longer_than_the_file_system_allows_is_one_line(tmp_path, sky, capsys):
    long = tmp_path / ("d" * 300)
    recipe = write_recipe(tmp_path / "r.yaml", recipe_data(sky, long))
    _fails(capsys, recipe, "cannot write", "is longer than 255 bytes")


def test_the_demo_hint_pastes_into_a_shell_whatever_the_folder(tmp_path):
    from hipsml.demo._run import next_commands

    folder = tmp_path / 'it\'s "odd" $(x) `y`' / "datasets" / "demo"
    python_line, list_line = next_commands(folder).splitlines()
    argv = shlex.split(python_line)
    assert argv[:2] == ["python", "-c"] and len(argv) == 3
    call = next(
        n
        for n in ast.walk(ast.parse(argv[2]))
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "open_dataset"
    )
    assert call.args[0].value == str(folder)
    assert shlex.split(list_line) == ["hipsml", "datasets", str(folder)]
