"""Bad recipes and bad targets: one line naming the file, field or row; exit 2; nothing published."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.table import Table
from dataset_helpers import recipe_data, write_recipe

from hipsml.cli import main
from hipsml.dataset import load_recipe, parse_recipe
from hipsml.errors import RecipeError


def _fails(capsys, recipe: Path, *needles: str) -> str:
    assert main(["-q", "extract", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _nothing_published(out: Path) -> None:
    assert not (out / "versions.json").exists()
    assert not list(out.glob("v*")) if out.exists() else True


@pytest.mark.parametrize(
    "change, needles",
    [
        ({"cutout": {"sizee": 32}}, ["r.yaml: cutout.sizee: unknown key; did you mean 'size'?"]),
        ({"splitz": {}}, ["splitz: unknown key; did you mean 'splits'?"]),
        (
            {"cutout": {"interpolation": "bilinaer"}},
            ["cutout.interpolation: 'bilinaer' is not one of", "did you mean 'bilinear'?"],
        ),
        (
            {"splits": {"fractions": {"train": 0.8, "test": 0.1}}},
            ["splits.fractions: fractions must sum to 1, they sum to 0.9"],
        ),
        ({"cutout": {"size": 0}}, ["cutout.size:"]),
        ({"cutout": {"pixel_scale": 1.0, "fov": 60.0}}, ["give pixel_scale or fov, not both"]),
        ({"compute": {"scheduler": "proceses"}}, ["compute.scheduler:", "did you mean 'processes'?"]),
        ({"name": "has space"}, ["name: name must be letters"]),
        ({"surveys": []}, ["surveys:"]),
    ],
)
def test_recipe_field_errors(tmp_path, sky, capsys, change, needles):
    data = recipe_data(sky, tmp_path / "out")
    for key, value in change.items():
        data[key] = (
            {**data[key], **value} if isinstance(value, dict) and value and isinstance(data.get(key), dict) else value
        )
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), *needles)
    _nothing_published(tmp_path / "out")


def test_missing_and_extra_sections(tmp_path, sky, capsys):
    data = recipe_data(sky, tmp_path / "out")
    del data["targets"]
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "targets: required, missing")
    data = recipe_data(sky, tmp_path / "out")
    data["targets"]["grid"] = {"order": 5, "center": [150, 2], "radius": 1}
    _fails(
        capsys, write_recipe(tmp_path / "r.yaml", data), "give exactly one of file, vizier, tap, grid (got file, grid)"
    )


def test_not_yaml_not_a_mapping_no_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsurveys: [unclosed\n")
    _fails(capsys, bad, "bad.yaml: line", "not valid YAML")
    bad.write_text("- just\n- a list\n")
    _fails(capsys, bad, "bad.yaml: a recipe is a mapping")
    _fails(capsys, tmp_path / "nope.yaml", "nope.yaml: no such recipe file")


def test_recipe_never_runs_code(tmp_path):
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "ran"
    evil.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(evil)
    assert not marker.exists()


def test_column_errors_name_the_column_and_suggest(tmp_path, sky, capsys):
    data = recipe_data(sky, tmp_path / "out")
    data["targets"]["columns"]["ra"] = "rra"
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data),
           "targets.columns.ra: column 'rra' not in", "did you mean 'ra'?")  # fmt: skip
    data = recipe_data(sky, tmp_path / "out")
    data["targets"]["carry"] = ["flux_rr"]
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "targets.carry: column 'flux_rr'", "did you mean 'flux_r'?")
    _nothing_published(tmp_path / "out")


def _csv(path: Path, rows: list[tuple]) -> Path:
    path.write_text("name,ra,dec\n" + "".join(f"{n},{r},{d}\n" for n, r, d in rows))
    return path


def test_bad_rows_are_named(tmp_path, sky, capsys):
    def run(rows: list[tuple], *needles: str) -> None:
        table = _csv(tmp_path / "t.csv", rows)
        data = recipe_data(sky, tmp_path / "out", targets_file=str(table))
        data["targets"]["columns"] = {"id": "name", "ra": "ra", "dec": "dec"}
        data["targets"]["carry"] = []
        _fails(capsys, write_recipe(tmp_path / "r.yaml", data), *needles)
        _nothing_published(tmp_path / "out")

    good = [("a", 150.0, 2.0), ("b", 150.01, 2.01)]
    run(good + [("c", 150.0, float("nan"))], "t.csv: data row 3 (id 'c') has an invalid position")
    run(good + [("c", 150.0, 95.0)], "data row 3", "dec=95.0")
    run(good + [("a", 150.02, 2.0)], "duplicate id 'a' in data rows 1 and 3")
    (tmp_path / "empty.csv").write_text("")
    data = recipe_data(sky, tmp_path / "out", targets_file=str(tmp_path / "empty.csv"))
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "empty.csv is empty")
    (tmp_path / "t.txt").write_text("ra,dec\n1,2\n")
    data = recipe_data(sky, tmp_path / "out", targets_file=str(tmp_path / "t.txt"))
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "unknown table extension '.txt'")
    (tmp_path / "garbage.fits").write_bytes(b"\x00" * 100)
    data = recipe_data(sky, tmp_path / "out", targets_file=str(tmp_path / "garbage.fits"))
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "garbage.fits: not a readable fits table")


def test_unreachable_survey_and_output_that_is_not_a_dataset(tmp_path, sky, capsys):
    data = recipe_data(sky, tmp_path / "out")
    data["surveys"][1]["location"] = str(tmp_path / "no-such-survey")
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "no-such-survey")
    _nothing_published(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # a build that failed early leaves no folder behind
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    data = recipe_data(sky, busy)
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "exists and is not a hipsml dataset")
    assert sorted(p.name for p in busy.iterdir()) == ["thesis.tex"]


def test_parquet_fits_votable_targets_give_the_same_version(tmp_path, sky):
    import hipsml

    cat = Table.read(sky / "catalogue.ecsv")["id", "ra", "dec", "class", "flux_r"][:25]
    hashes = set()
    for ext, fmt in ((".parquet", "parquet"), (".fits", "fits"), (".xml", "votable"), (".csv", "ascii.csv")):
        path = tmp_path / f"t{ext}"
        cat.write(path, format=fmt)
        data = recipe_data(sky, tmp_path / f"out{ext[1:]}", targets_file=str(path))
        data["targets"]["file"] = path.name  # relative to the recipe's folder
        ds = hipsml.extract_dataset(write_recipe(tmp_path / f"r{ext[1:]}.yaml", data))
        assert len(ds) == 25
        assert np.array_equal(np.sort(ds.column("id")), np.sort(np.asarray(cat["id"])))
        hashes.add(ds.attrs["targets"]["hash"])
    assert len(hashes) == 1  # the content, not the file format, labels the targets


def test_galactic_frame_targets_are_converted(tmp_path, sky):
    from astropy.coordinates import SkyCoord

    import hipsml

    cat = Table.read(sky / "catalogue.ecsv")["id", "ra", "dec"][:10]
    gal = SkyCoord(ra=cat["ra"], dec=cat["dec"], unit="deg").galactic
    t = Table({"id": cat["id"], "glon": gal.l.deg, "glat": gal.b.deg})
    t.write(tmp_path / "gal.ecsv")
    data = recipe_data(sky, tmp_path / "out", targets_file=str(tmp_path / "gal.ecsv"))
    data["targets"] = {"file": str(tmp_path / "gal.ecsv"), "frame": "galactic",
                       "columns": {"id": "id", "ra": "glon", "dec": "glat"}}  # fmt: skip
    ds = hipsml.extract_dataset(write_recipe(tmp_path / "g.yaml", data))
    order = np.argsort(ds.column("id"))
    assert np.allclose(ds.column("ra")[order], np.asarray(cat["ra"]), atol=1e-9)
    assert np.allclose(ds.column("dec")[order], np.asarray(cat["dec"]), atol=1e-9)


def test_cli_flags_override_compute(tmp_path, sky, capsys):
    data = recipe_data(sky, tmp_path / "out")
    recipe = write_recipe(tmp_path / "r.yaml", data)
    assert main(["-q", "extract", str(recipe), "--scheduler", "bogus"]) == 2
    assert "scheduler" in capsys.readouterr().err
    assert main(["-q", "extract", str(recipe), "--workers", "1", "--output", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "v1").is_dir() and not (tmp_path / "out").exists()


def test_parse_recipe_roundtrip_keeps_defaults():
    data = {"name": "x", "surveys": [{"location": "a"}], "targets": {"file": "t.csv"}, "output": {"path": "o"}}
    recipe = parse_recipe(data, source="inline")
    assert recipe.cutout.size == 64 and recipe.splits.fractions == {"train": 0.8, "val": 0.1, "test": 0.1}
    again = parse_recipe(yaml.safe_load(yaml.safe_dump(recipe.model_dump(mode="json", exclude={"base_dir"}))))
    assert again.canonical() == recipe.canonical()


def test_masked_coordinates_are_named_and_angle_units_converted(tmp_path, sky, capsys):
    import astropy.units as u
    from astropy.table import MaskedColumn

    import hipsml

    cat = Table.read(sky / "catalogue.ecsv")["id", "ra", "dec"][:6]
    t = Table({"id": cat["id"], "ra": MaskedColumn(cat["ra"], mask=[False, False, True, False, False, False]),
               "dec": cat["dec"]})  # fmt: skip
    t.write(tmp_path / "masked.ecsv")
    data = recipe_data(sky, tmp_path / "out", targets_file=str(tmp_path / "masked.ecsv"))
    data["targets"]["columns"] = {"id": "id", "ra": "ra", "dec": "dec"}
    data["targets"]["carry"] = []
    _fails(capsys, write_recipe(tmp_path / "r.yaml", data), "data row 3", "invalid position")
    hours = Table({"id": cat["id"], "ra": (np.asarray(cat["ra"]) / 15.0) * u.hourangle, "dec": cat["dec"] * u.deg})
    hours.write(tmp_path / "hours.ecsv")
    data = recipe_data(sky, tmp_path / "h", targets_file=str(tmp_path / "hours.ecsv"))
    data["targets"]["columns"] = {"id": "id", "ra": "ra", "dec": "dec"}
    data["targets"]["carry"] = []
    ds = hipsml.extract_dataset(write_recipe(tmp_path / "h.yaml", data))
    order = np.argsort(ds.column("id"))
    assert np.allclose(ds.column("ra")[order], np.asarray(cat["ra"]), rtol=0, atol=1e-9)
