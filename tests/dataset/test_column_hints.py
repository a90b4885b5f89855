"""A targets column that is not in the table: the error lists the table's columns and suggests one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from dataset_helpers import recipe_data

from hipsml.dataset import parse_recipe
from hipsml.dataset._targets import load_targets
from hipsml.errors import TargetsError


def _targets(tmp_path: Path, names: list[str]) -> Path:
    table = Table({name: np.arange(3, dtype=float) + 10.0 for name in names})
    path = tmp_path / "targets.fits"
    table.write(path)
    return path


def _error(tmp_path: Path, targets: Path, **columns: str) -> str:
    data = recipe_data(tmp_path / "sky", tmp_path / "out", targets_file=str(targets))
    data["targets"]["columns"] = {"ra": "RAJ2000", "dec": "DEJ2000", **columns}
    data["targets"]["carry"] = []
    with pytest.raises(TargetsError) as info:
        load_targets(parse_recipe(data, source="r.yaml", base_dir=tmp_path), dataset_root=tmp_path / "out")
    return str(info.value)


def test_a_missing_column_lists_the_columns_and_suggests_the_prefix_match(tmp_path: Path) -> None:
    targets = _targets(tmp_path, ["ID", "RAJ2000", "DEJ2000", "class"])
    message = _error(tmp_path, targets, ra="RA")
    assert message == (f"targets.columns.ra: column 'RA' not in {targets} (its columns: ID, RAJ2000, DEJ2000, class)"
                       "; did you mean 'RAJ2000'?")  # fmt: skip
    # the README's example: a misspelling
    assert _error(tmp_path, targets, ra="RAJ2000x").endswith("/targets.fits (its columns: ID, RAJ2000, DEJ2000, class)"
                                                             "; did you mean 'RAJ2000'?")  # fmt: skip
    # another case of an existing name
    assert _error(tmp_path, targets, id="id").endswith("; did you mean 'ID'?")
    # nothing close: the list alone
    assert _error(tmp_path, targets, label="morphology").endswith("(its columns: ID, RAJ2000, DEJ2000, class)")


def test_many_columns_are_abbreviated(tmp_path: Path) -> None:
    names = ["RAJ2000", "DEJ2000", *(f"flux_{i:02d}" for i in range(40))]
    message = _error(tmp_path, _targets(tmp_path, names), label="klass")
    assert "(its columns: RAJ2000, DEJ2000, flux_00, " in message
    assert "flux_17, ... (42 in all)" in message and "flux_18" not in message
