"""``hipsml_attrs``: the one reader of a Zarr group's ``hipsml`` attribute block."""

from __future__ import annotations

import zarr

from hipsml.dataset import hipsml_attrs


def test_hipsml_attrs_reads_a_copy_of_the_block_and_is_empty_without_one(tmp_path):
    group = zarr.open_group(tmp_path / "g", mode="w", zarr_format=3)
    assert hipsml_attrs(group) == {}
    group.attrs["hipsml"] = {"kind": "som-mapping", "dataset": {"hash": "abc"}, "count": 3}
    attrs = hipsml_attrs(zarr.open_group(tmp_path / "g", mode="r"))
    assert attrs == {"kind": "som-mapping", "dataset": {"hash": "abc"}, "count": 3}
    attrs["count"] = 4  # a copy: the group is not changed
    assert hipsml_attrs(zarr.open_group(tmp_path / "g", mode="r"))["count"] == 3
