"""An incremental version never inherits a damaged parent: reuse stops at the first chunk that
differs from the parent's manifest, and the rows from there on are cut again."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.table import Table
from dataset_helpers import recipe_data, write_recipe

import hipsml
from hipsml.dataset import verify_dataset
from hipsml.errors import DatasetError


def test_a_damaged_parent_chunk_is_cut_again_not_linked(tmp_path, sky, caplog):
    catalogue = Table.read(sky / "catalogue.ecsv")
    catalogue[:70].write(tmp_path / "first.ecsv")
    catalogue.write(tmp_path / "all.ecsv")
    out = tmp_path / "ds"
    v1 = hipsml.extract_dataset(
        write_recipe(tmp_path / "r.yaml", recipe_data(sky, out, targets_file=str(tmp_path / "first.ecsv")))
    )
    chunk = int(v1.images.chunks[0])
    assert len(v1) // chunk >= 3  # several whole chunks to reuse
    first, second = (
        out / "v1" / "images" / "c" / "0" / "0" / "0" / "0",
        out / "v1" / "images" / "c" / "1" / "0" / "0" / "0",
    )
    damaged = bytearray(second.read_bytes())
    damaged[-1] ^= 0xFF  # one flipped bit of chunk 1: same size, other content
    second.write_bytes(bytes(damaged))
    with pytest.raises(DatasetError, match="images/c/1/0/0/0"):
        verify_dataset(out, version=1)

    caplog.set_level(logging.WARNING, logger="hipsml.dataset._build")
    v2 = hipsml.extract_dataset(
        write_recipe(tmp_path / "r.yaml", recipe_data(sky, out, targets_file=str(tmp_path / "all.ecsv")))
    )
    assert v2.version == 2 and v2.report.reused == chunk  # chunk 0 only: reuse stopped at chunk 1
    assert "chunk images/c/1/0/0/0 is missing or differs from its manifest" in caplog.text
    assert verify_dataset(out, version=2).files > 0
    # every row of v2 equals the cutouts cut straight from the sky
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    ref = hipsml.cutouts(surveys, (v2.column("ra"), v2.column("dec")), size=32, pixel_scale=4.0)
    np.testing.assert_array_equal(np.asarray(v2.images[:]), ref.images)
    assert first.is_file()
