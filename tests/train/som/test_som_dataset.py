"""SOMs on hipsml datasets: training on a split, mappings stored beside the version, outliers, resume.

The dataset is extracted from a seeded synthetic sky in tmp_path (16x16 cutouts, two bands);
the SOMs are tiny (3x3, numrot 4) so that the module runs in a few seconds on two CPU cores.
Expected values come from numpy on the raw Zarr arrays, never from the code under test.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax
import numpy as np
import pytest
import zarr
from dataset_helpers import recipe_data, small_sky, write_recipe
from PIL import Image

import hipsml
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train import (
    load_som,
    plot_outliers,
    read_som_mapping,
    som_mapping_names,
    som_outliers,
    train_som,
    write_som_mapping,
)
from hipsml.train.som._data import normalise_images

SOM_OPTIONS = {"width": 3, "height": 3, "numrot": 4, "neuron_dim": 16, "init": "random", "seed": 7}


@pytest.fixture(autouse=True)
def strict_dtype_promotion():
    with jax.numpy_dtype_promotion("strict"):
        yield


def extract_small_dataset(base: Path, name: str = "ds") -> hipsml.Dataset:
    """120 cutouts of 16x16 pixels in two bands (r, radio), splits train/val/test."""
    sky = small_sky(base)
    data = recipe_data(
        sky,
        base / name,
        cutout={"size": 16, "pixel_scale": 8.0},
        compute={"scheduler": "threads", "workers": 1, "targets_per_unit": 64},
    )
    return hipsml.extract_dataset(write_recipe(base / f"{name}.yaml", data), progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> hipsml.Dataset:
    return extract_small_dataset(tmp_path_factory.mktemp("som-dataset"))


def minmax_reference(images: np.ndarray) -> np.ndarray:
    """Each cutout's channel scaled to [0, 1] with nanmin/nanmax, NaN -> 0 (PINK users' preprocessing)."""
    low = np.nanmin(images, axis=(2, 3), keepdims=True)
    high = np.nanmax(images, axis=(2, 3), keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num((images - low) / (high - low), nan=0.0).astype(np.float32)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        os.fspath(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_normalise_scales_each_cutout_channel_and_zeroes_nan():
    rng = np.random.default_rng(0)
    images = rng.normal(5.0, 3.0, (4, 2, 6, 6)).astype(np.float32)
    images[1, 0, 2, 3] = np.nan
    images[2, 1] = 4.0  # a constant channel
    out = normalise_images(images, "minmax")
    expected = minmax_reference(images)
    expected[2, 1] = 0.0
    assert np.allclose(out, expected, atol=1e-6)
    assert out[1, 0, 2, 3] == 0.0 and out[0, 0].min() == 0.0 and out[0, 0].max() == 1.0
    assert np.array_equal(normalise_images(images, "none"), images, equal_nan=True)


def test_train_on_a_dataset_split_reads_its_rows_normalised_and_records_them(dataset, tmp_path):
    som = train_som(dataset, split="train", epochs=2, progress=False, **SOM_OPTIONS)
    rows = dataset.split("train")
    assert som.config.normalise == "minmax"
    assert np.array_equal(som.training_rows, rows)
    assert som.training == {
        "dataset": str(dataset.path.resolve()),
        "version": 1,
        "hash": dataset.hash,
        "split": "train",
        "count": rows.size,
        "channels": ["r", "radio"],
    }
    # the same SOM as training on the rows read with plain zarr and normalised with numpy
    raw = np.asarray(zarr.open_group(dataset.location, mode="r")["images"][:])[rows]
    same = train_som(minmax_reference(raw), epochs=2, progress=False, normalise="none", **SOM_OPTIONS)
    assert np.allclose(som.weights, same.weights, atol=1e-6)
    # save / load keep where the SOM came from
    again = load_som(som.save(tmp_path / "som"))
    assert again.training == som.training and np.array_equal(again.training_rows, rows)
    assert again.config.normalise == "minmax"
    # mapping an array normalises it the same way as the dataset was
    assert np.array_equal(again.map(raw).bmu, som.map(dataset, split="train").bmu)


def test_bad_split_and_arrays_with_splits_are_one_line_errors(dataset):
    with pytest.raises(InvalidInputError, match="no split 'trian'.*train, val, test"):
        train_som(dataset, split="trian", progress=False, **SOM_OPTIONS)
    with pytest.raises(InvalidInputError, match="needs a Dataset"):
        train_som(np.zeros((4, 1, 8, 8), np.float32), split="val", progress=False, **SOM_OPTIONS)


def test_mapping_is_written_beside_the_version_which_stays_byte_for_byte_unchanged(dataset, tmp_path):
    som = train_som(dataset, epochs=1, progress=False, **SOM_OPTIONS)
    before = tree_digest(dataset.location)
    folder = write_som_mapping(som, dataset, name="tiny", som_path=tmp_path / "som")
    assert tree_digest(dataset.location) == before
    assert folder == dataset.path / "derived" / "v1" / "som" / "tiny"
    assert [p.name for p in folder.parent.iterdir()] == ["tiny"]  # no staging left behind
    assert folder.stat().st_mode & 0o777 == (folder.parent.stat().st_mode & 0o777)  # not mkdtemp's 0700
    assert dataset.version == hipsml.open_dataset(dataset.path).version == 1  # still the only version
    expected = som.map(dataset)
    # readable with plain zarr
    group = zarr.open_group(folder, mode="r")
    assert np.array_equal(group["rows"][:], np.arange(len(dataset)))
    assert np.array_equal(group["bmu"][:], expected.bmu)
    assert np.array_equal(group["distance"][:], expected.distance)
    assert np.array_equal(group["angle"][:], expected.angle)
    assert np.array_equal(group["flipped"][:], expected.flipped)
    assert group["bmu"].metadata.dimension_names == ("cutout",)
    attrs = group.attrs["hipsml"]
    assert attrs["dataset"]["hash"] == dataset.hash and attrs["dataset"]["version"] == 1
    assert attrs["som"]["weights_sha256"] == hashlib.sha256(som.weights.astype("<f4").tobytes()).hexdigest()
    assert attrs["som"]["config"]["width"] == 3 and attrs["count"] == len(dataset)
    # read back through hipsml
    mapping = read_som_mapping(dataset, "tiny")
    assert np.array_equal(mapping.bmu, expected.bmu) and np.array_equal(mapping.rows, np.arange(len(dataset)))
    assert som_mapping_names(dataset) == ["tiny"]
    # the same SOM again: nothing rewritten; another SOM: refused unless overwrite
    stamp = (folder / "bmu" / "zarr.json").stat().st_mtime_ns
    assert write_som_mapping(som, dataset, name="tiny") == folder
    assert (folder / "bmu" / "zarr.json").stat().st_mtime_ns == stamp
    other = train_som(dataset, epochs=1, progress=False, **{**SOM_OPTIONS, "seed": 8})
    with pytest.raises(OutputError, match="holds another mapping"):
        write_som_mapping(other, dataset, name="tiny")
    write_som_mapping(other, dataset, name="tiny", split="val", overwrite=True)
    replaced = read_som_mapping(dataset, "tiny")
    assert np.array_equal(replaced.rows, dataset.split("val"))
    assert np.array_equal(replaced.bmu, other.map(dataset, split="val").bmu)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny"]
    assert tree_digest(dataset.location) == before
    with pytest.raises(hipsml.errors.DatasetNotFoundError, match="mappings there: tiny"):
        read_som_mapping(dataset, "absent")
    with pytest.raises(InvalidInputError, match="mapping name"):
        write_som_mapping(som, dataset, name="../escape")


def test_an_inverted_cutout_is_the_first_outlier_and_is_drawn(dataset, tmp_path):
    images = minmax_reference(np.asarray(dataset.images[:]))
    som = train_som(images, epochs=3, progress=False, **SOM_OPTIONS)
    odd = 1.0 - images[17:18]  # a dark source on a bright sky: like nothing the SOM learned
    data = np.concatenate([images, odd])
    mapping = som.map(data)
    ranked = som_outliers(mapping, top=5)
    assert ranked[0] == len(images)
    assert np.all(np.diff(mapping.distance[ranked]) <= 0)
    assert len(som_outliers(mapping, top=1000)) == len(data)
    png = plot_outliers(data, mapping, tmp_path / "outliers.png", top=7, columns=3)
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.width > 3 * 2 * 16 and picture.height > 3 * 16
    # a dataset mapping ranks dataset rows
    ds_mapping = som.map(dataset, split="test")
    rows = som_outliers(ds_mapping, top=3)
    order = np.argsort(-ds_mapping.distance, kind="stable")[:3]
    assert np.array_equal(rows, dataset.split("test")[order])
    assert plot_outliers(dataset, ds_mapping, tmp_path / "ds.png", top=3).is_file()
    with pytest.raises(InvalidInputError, match="top must be a positive integer"):
        som_outliers(mapping, top=0)


def test_resume_after_an_interruption_equals_an_uninterrupted_run(dataset, tmp_path):
    options = {**SOM_OPTIONS, "epochs": 3, "schedule": "linear", "sigma_end": 0.5}
    whole = train_som(dataset, progress=False, **options)

    def interrupt(record):
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_som(dataset, progress=False, workdir=tmp_path / "som", on_epoch=interrupt, **options)
    partial = load_som(tmp_path / "som")
    assert len(partial.history) == 2
    resumed = train_som(dataset, progress=False, workdir=tmp_path / "som", resume=True)  # the saved options
    assert [r.epoch for r in resumed.history] == [0, 1, 2]
    assert np.array_equal(resumed.weights, whole.weights)
    assert load_som(tmp_path / "som").history == resumed.history
    with pytest.raises(InvalidInputError, match="different SOM options .*numrot=4 -> 8"):
        train_som(dataset, progress=False, workdir=tmp_path / "som", resume=True, numrot=8)
    with pytest.raises(InvalidInputError, match="split 'train'.*split 'val'"):
        train_som(dataset, split="val", progress=False, workdir=tmp_path / "som", resume=True)


def test_load_som_trusts_the_archive_when_som_json_is_older(dataset, tmp_path):
    som = train_som(dataset, epochs=2, progress=False, workdir=tmp_path / "som", **SOM_OPTIONS)
    stale = (tmp_path / "som" / "som.json").read_text()
    som.save(tmp_path / "som")
    # simulate a crash after weights.npz of a later save but before its som.json
    first = train_som(dataset, epochs=1, progress=False, **SOM_OPTIONS)
    first.save(tmp_path / "som")
    (tmp_path / "som" / "som.json").write_text(stale)
    loaded = load_som(tmp_path / "som")
    assert len(loaded.history) == 1 and np.array_equal(loaded.weights, first.weights)


def test_rows_are_read_by_whole_chunks_in_storage_order(dataset):
    from hipsml.train.som._data import iter_row_blocks

    raw = np.asarray(zarr.open_group(dataset.location, mode="r")["images"][:])
    rows = dataset.split("val")
    chunk = dataset.images.chunks[0]
    parts = list(iter_row_blocks(dataset, rows, max_rows=1))  # one chunk per block
    assert np.array_equal(np.concatenate([p for p, _ in parts]), rows)
    assert all(len(np.unique(p // chunk)) == 1 for p, _ in parts)
    assert np.array_equal(np.concatenate([b for _, b in parts]), raw[rows], equal_nan=True)
    with pytest.raises(InvalidInputError, match="sorted"):
        list(iter_row_blocks(dataset, rows[::-1]))


def test_mapping_a_dataset_chunk_by_chunk_equals_mapping_its_array(dataset, monkeypatch):
    import functools

    from hipsml.train.som import _data as _som_data

    som = train_som(dataset, epochs=1, progress=False, **SOM_OPTIONS)
    raw = np.asarray(zarr.open_group(dataset.location, mode="r")["images"][:])
    rows = dataset.split("test")
    whole = som.map(minmax_reference(raw[rows]))
    monkeypatch.setattr(_som_data, "normalised_blocks", functools.partial(_som_data.normalised_blocks, max_rows=1))
    chunked = som.map(dataset, split="test")
    assert np.array_equal(chunked.rows, rows)
    assert np.array_equal(chunked.bmu, whole.bmu) and np.array_equal(chunked.angle, whole.angle)
    assert np.allclose(chunked.distance, whole.distance, rtol=1e-5)
