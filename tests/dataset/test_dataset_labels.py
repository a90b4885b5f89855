"""Labels you can read: ``table["label"]`` is the class names, ``to_xarray`` carries id/ra/dec/label
as coordinates, and ``to_fits`` headers name the target, its label, its row and the dataset version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from dataset_helpers import recipe_data, small_sky, write_recipe

import hipsml
from hipsml.errors import IndexOutOfRangeError


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> hipsml.Dataset:
    base = tmp_path_factory.mktemp("labels")
    sky = small_sky(base)
    recipe = write_recipe(base / "ds.yaml", recipe_data(sky, base / "ds"))
    hipsml.extract_dataset(recipe)
    return hipsml.open_dataset(base / "ds")


@pytest.fixture(scope="module")
def catalogue(ds: hipsml.Dataset) -> Table:
    return Table.read(Path(ds.recipe["targets"]["file"]))


def test_table_label_is_the_class_name_and_label_code_the_code(ds: hipsml.Dataset, catalogue: Table) -> None:
    table = ds.table
    rows = table["source_row"]
    assert table["label"].tolist() == [str(catalogue["class"][r]) for r in rows]  # the names, from the catalogue
    assert table["label_code"].tolist() == ds.column("label").tolist()  # the stored codes
    assert [ds.label_names[c] for c in table["label_code"]] == table["label"].tolist()
    assert table.colnames.index("label_code") == table.colnames.index("label") + 1
    assert len(set(table["label"])) == len(ds.label_names) > 1


def test_to_xarray_carries_id_ra_dec_and_label_names_as_coordinates(ds: hipsml.Dataset) -> None:
    xds = ds.to_xarray()
    table = ds.table
    for name in ("id", "ra", "dec", "label"):
        assert name in xds.coords and xds[name].dims == ("cutout",), name
        assert xds[name].values.tolist() == table[name].tolist(), name
    assert "label_code" in xds.data_vars and xds["label_code"].values.tolist() == table["label_code"].tolist()
    assert xds["images"].dims == ("cutout", "channel", "y", "x") and xds["images"].chunks is not None  # still lazy
    # a cutout's coordinates come along when it is selected
    cut = xds["images"].isel(cutout=9)
    assert (cut["id"].item(), cut["label"].item()) == (table["id"][9], table["label"][9])
    name = ds.label_names[0]
    picked = xds.where(xds.label == name, drop=True)
    assert picked.sizes["cutout"] == int(np.sum(table["label"] == name))


def test_to_fits_headers_carry_target_label_row_and_dataset(ds: hipsml.Dataset, tmp_path: Path) -> None:
    table = ds.table
    n = len(ds)
    paths = ds.to_fits([3, -1], tmp_path)
    for path, row in zip(paths, (3, n - 1), strict=True):
        header = fits.getheader(path)
        assert header["OBJECT"] == str(table["id"][row])
        assert header["LABEL"] == table["label"][row] and header["LABELCOD"] == table["label_code"][row]
        assert header["DSROW"] == row
        assert (header["DSNAME"], header["DSVER"], header["DSHASH"]) == ("test-set", ds.version, ds.hash)
        assert header["CTYPE1"].startswith("RA---")  # the cutout's own cards are still there
    with pytest.raises(IndexOutOfRangeError, match=f"cutout index {n} is out of range for {n} cutouts"):
        ds.fits_cards(n)


def test_integer_labels_are_their_own_names(tmp_path: Path, ds: hipsml.Dataset) -> None:
    sky = Path(ds.recipe["targets"]["file"]).parent
    data = recipe_data(sky, tmp_path / "int")
    data["targets"]["columns"]["label"] = "id"  # integer labels: no class names
    hipsml.extract_dataset(write_recipe(tmp_path / "int.yaml", data))
    ints = hipsml.open_dataset(tmp_path / "int")
    assert ints.label_names is None
    table = ints.table
    assert table["label"].tolist() == table["label_code"].tolist() == table["id"].tolist()
    assert ints.to_xarray()["label"].values.tolist() == table["id"].tolist()
    (path,) = ints.to_fits([5], tmp_path / "fits")
    header = fits.getheader(path)
    assert header["LABEL"] == str(table["id"][5]) and header["LABELCOD"] == table["id"][5]
