"""A damaged images chunk met while a SOM reads its training data is a DatasetError naming it, not a codec traceback."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_helpers import generated_dataset

from hipsml.errors import DatasetError
from hipsml.train import train_som


def test_a_truncated_chunk_is_named_when_the_som_reads_it(tmp_path):
    ds = generated_dataset(tmp_path / "ds", n=16, size=8)
    chunk = tmp_path / "ds" / "v1" / "images" / "c" / "0" / "0" / "0" / "0"
    assert chunk.is_file()
    chunk.write_bytes(chunk.read_bytes()[:40])  # truncated: blosc cannot decode it
    with pytest.raises(DatasetError, match=r"images.*chunk") as info:
        train_som(ds, {"width": 2, "height": 2, "numrot": 4, "neuron_dim": 8, "epochs": 1}, progress=False)
    assert "v1" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_outlier_pictures_read_through_the_checked_reader(tmp_path):
    ds = generated_dataset(tmp_path / "ds", n=16, size=8)
    rows = np.array([5, 1, 5, 12])
    # the same cutouts, in the order asked, as the raw zarr array holds them
    np.testing.assert_array_equal(ds.read_images(rows), np.asarray(ds.images[:])[rows])


def test_the_memory_budget_is_checked_before_the_split_is_read(tmp_path, monkeypatch):
    from hipsml.errors import ResourceLimitError

    ds = generated_dataset(tmp_path / "ds", n=16, size=8)
    chunk = tmp_path / "ds" / "v1" / "images" / "c" / "0" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:40])  # reading the split would fail: it must not be read at all
    monkeypatch.setenv("HIPSML_MEMORY_BUDGET", "4KiB")
    with pytest.raises(ResourceLimitError, match="trained on 12 images"):  # the 12 rows of split "train"
        train_som(ds, {"width": 2, "height": 2, "numrot": 4, "neuron_dim": 8, "epochs": 1}, progress=False)
