"""Dataset integrity: every hostile copy of a good dataset is a one-line DatasetError (CLI: exit 2).

Each test copies a freshly built small dataset into ``tmp_path`` and damages the copy itself:
deletes, truncates, overwrites or symlinks a chunk, rewrites ``versions.json``, edits ``zarr.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import recipe_data, small_sky, write_recipe

import hipsml
from hipsml.cli import main
from hipsml.dataset import open_dataset, verify_dataset
from hipsml.errors import DatasetError, DatasetNotFoundError, HipsmlError, InvalidInputError

CHUNK3 = "images/c/3/0/0/0"
COMPRESSOR = "lz4"  # the recipe default


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A good dataset (120 cutouts of 2 x 32 x 32 in chunks of 6 rows: 20 images chunks)."""
    base = tmp_path_factory.mktemp("integrity")
    sky = small_sky(base)
    recipe = write_recipe(base / "r.yaml", recipe_data(sky, base / "good"))
    ds = hipsml.extract_dataset(recipe)
    assert ds.images.chunks[0] == 6 and len(ds) == 120
    return ds.path


@pytest.fixture
def copy(built, tmp_path) -> Path:
    """A private copy of the good dataset, to damage."""
    return Path(shutil.copytree(built, tmp_path / "copy"))


def _index(root: Path) -> dict:
    return json.loads((root / "versions.json").read_text())


def _write_index(root: Path, data: dict) -> None:
    (root / "versions.json").write_text(json.dumps(data))


def _cli_error(argv: list[str], capsys) -> str:
    """Run the CLI; assert exit 2 with one line on stderr, and return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hipsml: error: ") and "Traceback" not in err
    return err


# ----------------------------------------------------------------------------- the manifest


def test_publish_writes_a_manifest_of_every_file_recorded_in_the_index(copy, capsys):
    manifest = copy / "v1.manifest.json"
    raw = manifest.read_bytes()
    entry = _index(copy)["versions"][0]
    assert entry["manifest"] == hashlib.sha256(raw).hexdigest()
    files = json.loads(raw)["files"]
    on_disk = {p.relative_to(copy / "v1").as_posix() for p in (copy / "v1").rglob("*") if p.is_file()}
    assert set(files) == on_disk and CHUNK3 in files and "zarr.json" in files and "images/zarr.json" in files
    for rel in (CHUNK3, "zarr.json", "label/zarr.json"):
        data = (copy / "v1" / rel).read_bytes()
        assert files[rel] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    report = verify_dataset(copy)
    assert (report.files, report.bytes) == (len(on_disk), sum((copy / "v1" / r).stat().st_size for r in on_disk))
    assert open_dataset(copy).verify().files == len(on_disk)
    assert main(["verify", f"{copy}@v1"]) == 0
    assert f"v1 verified: {len(on_disk)} files" in capsys.readouterr().out
    # the version folder stays a plain Zarr group: nothing in it that zarr does not know
    assert not (copy / "v1" / "manifest.json").exists()


def test_an_incremental_version_has_a_right_manifest_over_hard_linked_chunks(tmp_path):
    from astropy.table import Table

    sky = small_sky(tmp_path)
    cat = Table.read(sky / "catalogue.ecsv")
    first = tmp_path / "first.ecsv"
    cat[:70].write(first)
    recipe = write_recipe(tmp_path / "grow.yaml", recipe_data(sky, tmp_path / "grow", targets_file=str(first)))
    v1 = hipsml.extract_dataset(recipe)
    cat.write(first, overwrite=True)
    v2 = hipsml.extract_dataset(recipe)
    assert os.path.samefile(v1.location / "images/c/0/0/0/0", v2.location / "images/c/0/0/0/0")  # hard-linked
    assert verify_dataset(tmp_path / "grow", "v1").files > 0 and verify_dataset(tmp_path / "grow", 2).files > 0
    # damaging the shared chunk damages both versions, and verify says so for each
    with open(v2.location / "images/c/0/0/0/0", "r+b") as fh:
        fh.seek(40)
        byte = fh.read(1)
        fh.seek(40)
        fh.write(bytes([byte[0] ^ 0xFF]))
    for version in ("v1", "v2"):
        with pytest.raises(
            DatasetError, match=r"1 file differs from the manifest: images/c/0/0/0/0 \(sha256 differs\)"
        ):
            verify_dataset(tmp_path / "grow", version)


# ----------------------------------------------------------------------------- damaged chunks


def test_a_deleted_chunk_is_refused_at_open_and_named_by_verify(copy, capsys):
    (copy / "v1" / CHUNK3).unlink()
    with pytest.raises(DatasetError, match=rf"{copy} v1: 1 file differs from the manifest: {CHUNK3} \(missing\)"):
        open_dataset(copy)
    with pytest.raises(DatasetError, match=rf"{CHUNK3} \(missing\)"):
        verify_dataset(copy)
    assert CHUNK3 in _cli_error(["verify", str(copy)], capsys)
    assert CHUNK3 in _cli_error(["preview", str(copy), "--out", str(copy / "p.png")], capsys)


def test_a_truncated_chunk_is_refused_at_open(copy):
    path = copy / "v1" / CHUNK3
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size // 2])
    with pytest.raises(DatasetError, match=rf"{CHUNK3} \({size // 2} bytes, published {size}\)"):
        open_dataset(copy)


def test_a_chunk_replaced_by_a_symlink_is_refused_at_open(copy):
    path = copy / "v1" / CHUNK3
    path.unlink()
    path.symlink_to(copy / "v1" / "images/c/4/0/0/0")
    with pytest.raises(DatasetError, match=rf"{CHUNK3} \(a symlink, not a regular file\)"):
        open_dataset(copy)
    with pytest.raises(DatasetError, match=rf"{CHUNK3} \(a symlink"):
        verify_dataset(copy)


def test_a_chunk_overwritten_with_other_valid_values_is_caught(copy, capsys):
    from hipsml.dataset._store import _chunk_codec

    ds = open_dataset(copy)
    path = copy / "v1" / CHUNK3
    good = path.read_bytes()
    other = np.asarray(ds.images[18:24]) * np.float32(2.0)  # valid values, encoded as hipsml encodes them
    path.write_bytes(_chunk_codec(COMPRESSOR, 4).encode(np.ascontiguousarray(other)))
    assert np.array_equal(ds.images[18:24], other, equal_nan=True)  # zarr reads them as good values
    with pytest.raises(DatasetError, match=rf"{CHUNK3} \((sha256 differs|\d+ bytes, published {len(good)})\)"):
        open_dataset(copy, verify=True)
    # the same size and other bytes: the cheap check at open cannot see it, verify does
    path.write_bytes(bytes(b ^ 0x01 for b in good[:20]) + good[20:])
    assert open_dataset(copy).version == 1
    with pytest.raises(DatasetError, match=rf"1 file differs from the manifest: {CHUNK3} \(sha256 differs\)"):
        verify_dataset(copy)
    with pytest.raises(DatasetError, match=rf"{CHUNK3} \(sha256 differs\)"):
        open_dataset(copy, verify=True)
    assert f"{CHUNK3} (sha256 differs)" in _cli_error(["verify", str(copy)], capsys)


def test_verify_names_a_file_that_is_not_in_the_manifest_and_counts_the_rest(copy):
    (copy / "v1" / "label" / "c" / "9").write_bytes(b"x")
    for k in range(6):
        (copy / "v1" / f"images/c/{k}/0/0/0").unlink()
    with pytest.raises(DatasetError) as info:
        verify_dataset(copy)
    msg = str(info.value)
    assert "7 files differ from the manifest" in msg and "and 2 more" in msg and "\n" not in msg
    assert "images/c/0/0/0/0 (missing)" in msg


def test_reads_of_a_chunk_damaged_after_open_name_the_array_chunk_and_version(copy, tmp_path):
    from hipsml.train import zarr_batches

    ds = open_dataset(copy)
    (copy / "v1" / CHUNK3).write_bytes(b"not a blosc chunk")
    where = rf"{copy} v1: array 'images' chunk 3 \(rows 18\.\.23\) cannot be read"
    with pytest.raises(DatasetError, match=where):
        ds.read_images([0, 20, 5])
    with pytest.raises(DatasetError, match=where):
        ds.to_fits([20], tmp_path / "fits")
    with pytest.raises(DatasetError, match=where):
        list(zarr_batches(ds, None, batch_size=8, shuffle=False))
    with pytest.raises(DatasetError, match=where):
        hipsml.dataset.preview_dataset(ds, tmp_path / "p.png", per_group=64)
    # rows of good chunks still read, in the order asked
    good = ds.read_images([7, 0, 7])
    assert np.array_equal(good, np.asarray(ds.images[[7, 0, 7]]), equal_nan=True)


# ----------------------------------------------------------------------------- the manifest itself


def test_a_tampered_or_missing_manifest_is_refused(copy):
    manifest = copy / "v1.manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][CHUNK3]["size"] += 1
    manifest.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"v1\.manifest\.json does not match the sha256 versions\.json records"):
        open_dataset(copy)
    manifest.unlink()
    with pytest.raises(DatasetError, match=r"v1\.manifest\.json is missing \(versions\.json records one\)"):
        open_dataset(copy)


def test_a_manifest_the_index_does_not_record_is_refused(copy):
    index = _index(copy)
    index["versions"][0]["manifest"] = None
    _write_index(copy, index)
    with pytest.raises(DatasetError, match="exists but versions.json records no manifest"):
        open_dataset(copy)


def test_a_version_without_a_manifest_opens_checks_its_chunks_and_cannot_be_verified(copy, capsys):
    (copy / "v1.manifest.json").unlink()
    index = _index(copy)
    del index["versions"][0]["manifest"]
    _write_index(copy, index)
    assert len(open_dataset(copy)) == 120  # an old dataset still opens
    with pytest.raises(DatasetError, match="published without a manifest"):
        verify_dataset(copy)
    assert "published without a manifest" in _cli_error(["verify", str(copy)], capsys)
    (copy / "v1" / CHUNK3).unlink()
    with pytest.raises(DatasetError, match=rf"1 images chunk file\(s\) damaged: {CHUNK3} \(missing\)"):
        open_dataset(copy)


# ----------------------------------------------------------------------------- versions.json


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.update(versions="v1"), r"index\.versions: Input should be a valid list"),
        (lambda d: d["versions"].append(7), r"versions\[1\]: Input should be a valid dictionary"),
        (lambda d: d["versions"][0].update(version="abc"), r"versions\[0\]\.version: Input should be a valid integer"),
        (lambda d: d["versions"][0].pop("hash"), r"versions\[0\]\.hash: Field required"),
        (lambda d: d["versions"][0].update(path="../outside"), r"versions\[0\]\.path: String should match pattern"),
        (lambda d: d["versions"][0].update(path="/tmp"), r"versions\[0\]\.path: String should match pattern"),
        (lambda d: d["versions"].append(dict(d["versions"][0])), r"versions\[1\]: version 1 is listed twice"),
        (lambda d: d.update(format="other"), r"index\.format: Input should be 'hipsml-dataset'"),
    ],
    ids=["versions-a-string", "entry-a-number", "version-abc", "no-hash", "path-outside", "path-absolute",
         "duplicate", "format"],
)  # fmt: skip
def test_a_malformed_versions_json_is_one_line_naming_the_entry(copy, capsys, damage, message):
    index = _index(copy)
    damage(index)
    _write_index(copy, index)
    pattern = rf"{copy / 'versions.json'}: {message}"
    with pytest.raises(DatasetError, match=pattern):
        open_dataset(copy)
    for argv in (["datasets", str(copy)], ["preview", str(copy), "--out", str(copy / "p.png")], ["verify", str(copy)]):
        assert "versions.json" in _cli_error(argv, capsys)


def test_an_entry_pointing_at_a_missing_or_symlinked_folder_is_refused(copy, capsys, tmp_path):
    index = _index(copy)
    index["versions"].append({**index["versions"][0], "version": 2, "path": "v2"})
    _write_index(copy, index)
    with pytest.raises(DatasetError, match=rf"versions\.json: v2 is listed but its folder {copy / 'v2'} is missing"):
        open_dataset(copy)  # latest: not silently v1
    with pytest.raises(DatasetError, match="v2 is listed but its folder"):
        open_dataset(copy, version="v2")
    assert open_dataset(copy, version=1).version == 1  # the good version still opens
    # hipsml datasets lists it as missing, not as a normal version, and exits 2
    assert main(["datasets", str(copy)]) == 2
    captured = capsys.readouterr()
    assert "v2       MISSING: its folder" in captured.out and "v1 " in captured.out
    assert captured.err.count("\n") == 1 and "lists versions that are not there: v2" in captured.err
    # a version folder that is a symlink to elsewhere is not inside the dataset
    shutil.copytree(copy / "v1", tmp_path / "elsewhere")
    (copy / "v2").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="is a symlink; versions live inside the dataset folder"):
        open_dataset(copy, version=2)


# ----------------------------------------------------------------------------- self-contradicting metadata


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _drop_manifest(root: Path) -> None:
    """Make the copy a dataset published before manifests (so the metadata checks, not the hashes, speak)."""
    (root / "v1.manifest.json").unlink()
    index = _index(root)
    index["versions"][0].pop("manifest")
    _write_index(root, index)


def test_an_edited_zarr_json_is_caught_by_the_manifest_at_open(copy):
    _edit_json(copy / "v1/images/zarr.json", lambda d: d.update(shape=[10**12, 2, 32, 32]))
    with pytest.raises(DatasetError, match=r"images/zarr\.json \((sha256 differs|\d+ bytes, published \d+)\)"):
        open_dataset(copy)


def test_shapes_that_contradict_the_index_are_refused(copy, capsys):
    _drop_manifest(copy)
    _edit_json(copy / "v1/images/zarr.json", lambda d: d.update(shape=[10**12, 2, 32, 32]))
    with pytest.raises(
        DatasetError, match=r"array 'images' has shape \(1000000000000, 2, 32, 32\) but the version holds 120"
    ):
        open_dataset(copy)
    assert "has shape (1000000000000" in _cli_error(["preview", str(copy), "--out", str(copy / "p.png")], capsys)
    _edit_json(copy / "v1/images/zarr.json", lambda d: d.update(shape=[120, 3, 32, 32]))
    with pytest.raises(DatasetError, match=r"array 'images' has shape \(120, 3, 32, 32\), not \(120, 2, 32, 32\)"):
        open_dataset(copy)
    _edit_json(copy / "v1/images/zarr.json", lambda d: d.update(shape=[120, 2, 32, 32]))
    index = _index(copy)
    index["versions"][0]["count"] = 300
    _write_index(copy, index)
    with pytest.raises(DatasetError, match=r"zarr\.json records 120 cutouts but versions\.json 300"):
        open_dataset(copy)


def test_label_codes_beyond_the_names_are_refused(copy, capsys):
    _drop_manifest(copy)
    ds = open_dataset(copy)
    names = ds.label_names
    codes = ds.column("label")
    assert names is not None and codes.max() == len(names) - 1
    short = names[:-1]
    _edit_json(copy / "v1/label/zarr.json", lambda d: d["attributes"].update(names=short))
    with pytest.raises(DatasetError, match=re.escape(f"array 'label' names {short!r} but the version records")):
        open_dataset(copy)
    _edit_json(copy / "v1/zarr.json", lambda d: d["attributes"]["hipsml"]["labels"].update(names=short))
    first = int(np.flatnonzero(codes == len(names) - 1)[0])
    pattern = rf"array 'label' row {first} holds code {len(names) - 1}, beyond its {len(short)} names"
    with pytest.raises(DatasetError, match=pattern):
        open_dataset(copy)
    assert "beyond its" in _cli_error(["preview", str(copy), "--out", str(copy / "p.png")], capsys)


def test_split_codes_beyond_the_names_are_refused(copy):
    _drop_manifest(copy)
    _edit_json(copy / "v1/split/zarr.json", lambda d: d["attributes"].update(names=["train"]))
    _edit_json(copy / "v1/zarr.json", lambda d: d["attributes"]["hipsml"]["splits"].update(names=["train"]))
    with pytest.raises(DatasetError, match=r"array 'split' row \d+ holds code [12], beyond its 1 names"):
        open_dataset(copy)


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("bad", [None, 123, 1.5, b"bytes", ["a"]])
def test_open_dataset_refuses_a_non_path(bad):
    with pytest.raises(InvalidInputError, match=r"dataset must be a (text )?path, got"):
        open_dataset(bad)
    with pytest.raises(HipsmlError):
        verify_dataset(bad)


def test_open_dataset_refuses_a_bad_version_argument(copy):
    for bad in (1.5, True, [1]):
        with pytest.raises(InvalidInputError, match="version must be 'latest', N or 'vN', got"):
            open_dataset(copy, version=bad)
    with pytest.raises(InvalidInputError, match="verify must be True or False"):
        open_dataset(copy, verify="yes")
    with pytest.raises(DatasetNotFoundError, match="has no version v9"):
        open_dataset(copy, version="v9")
