"""torch_dataset: the PyTorch adapter over zarr_batches' reads, under a real DataLoader with worker processes."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from dataset_helpers import recipe_data, small_sky

import hipsml
from hipsml.errors import HipsmlError, InvalidInputError
from hipsml.train import torch_dataset, zarr_batches
from hipsml.train.loaders import shard_blocks

try:
    import torch
    from torch.utils.data import DataLoader, IterableDataset
except ImportError:  # the tests that need it skip, saying why
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason='PyTorch is not installed (pip install "hipsml[torch]")')


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> hipsml.Dataset:
    # 120 cutouts of 2 x 32 x 32 in chunks of 6 rows (20 chunks), labelled
    sky = small_sky(tmp_path_factory.mktemp("torch-sky"))
    return hipsml.extract_dataset(recipe_data(sky, tmp_path_factory.mktemp("torch-ds") / "ds"))


def _epoch(batches) -> dict[str, np.ndarray]:
    batches = list(batches)
    out = {k: np.concatenate([b[k].numpy() for b in batches]) for k in ("images", "labels", "rows")}
    out["sizes"] = np.array([b["rows"].shape[0] for b in batches])
    return out


def _loader(tds, workers: int) -> DataLoader:
    return DataLoader(tds, batch_size=None, num_workers=workers)


@needs_torch
def test_every_row_of_the_split_arrives_once_per_epoch_with_its_image_and_label(ds):
    train = ds.split("train")
    codes = ds.column("label")
    tds = torch_dataset(ds, "train", batch_size=8, window_chunks=2)  # normalise=None
    assert isinstance(tds, IterableDataset)
    for workers in (0, 2):
        got = _epoch(_loader(tds, workers))
        assert np.array_equal(np.sort(got["rows"]), train), workers  # each row exactly once
        assert got["images"].dtype == np.float32 and got["images"].shape == (train.size, 2, 32, 32)
        assert got["labels"].dtype == np.int64 and got["rows"].dtype == np.int64
        # normalise=None: the stored pixels, unchanged, of each batch's rows
        assert np.array_equal(got["images"], ds.images.oindex[got["rows"]], equal_nan=True)
        assert np.array_equal(got["labels"], codes[got["rows"]])
        assert got["sizes"].size == tds.num_batches(workers)
        if workers:  # a worker sends a batch as a view of its window of chunks (2 x 6 rows), read in shared memory
            small = torch_dataset(ds, "train", batch_size=2, window_chunks=2)
            shared = [b["images"] for b in _loader(small, workers)]
            assert all(t.untyped_storage().nbytes() <= 12 * 2 * 32 * 32 * 4 for t in shared)
            assert len({t.untyped_storage().data_ptr() for t in shared}) < len(shared)  # several batches per window
        # at most one smaller batch per worker
        assert (got["sizes"] == 8).sum() >= got["sizes"].size - max(workers, 1)


@needs_torch
def test_with_no_workers_the_batches_are_zarr_batches(ds):
    want = list(zarr_batches(ds, "val", batch_size=5, seed=4, epoch=2, normalise="minmax"))
    got = list(torch_dataset(ds, "val", batch_size=5, seed=4, epoch=2, normalise="minmax"))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g["rows"].numpy(), w.rows)
        assert np.array_equal(g["labels"].numpy(), w.labels)
        assert np.array_equal(g["images"].numpy(), w.images)
        assert 0 <= float(g["images"].min()) and float(g["images"].max()) <= 1  # minmax applied, NaN -> 0


@needs_torch
def test_set_epoch_gives_a_new_order_reproducible_for_a_seed(ds):
    def order(seed: int, epoch: int, workers: int) -> np.ndarray:
        tds = torch_dataset(ds, "train", batch_size=8, window_chunks=2, seed=seed)
        tds.set_epoch(epoch)
        assert tds.epoch == epoch
        return _epoch(_loader(tds, workers))["rows"]

    first = order(0, 1, 2)
    # workers kept between epochs see set_epoch too (the epoch is in shared memory)
    tds = torch_dataset(ds, "train", batch_size=8, window_chunks=2, seed=0)
    kept = DataLoader(tds, batch_size=None, num_workers=2, persistent_workers=True)
    for epoch in (2, 1):
        tds.set_epoch(epoch)
        rows = _epoch(kept)["rows"]
    assert np.array_equal(rows, first)
    with pytest.raises(InvalidInputError, match="epoch must be an integer >= 0"):
        tds.set_epoch(-1)
    assert np.array_equal(first, order(0, 1, 2))  # same seed and epoch: same order
    assert not np.array_equal(first, order(0, 2, 2))  # another epoch
    assert not np.array_equal(first, order(1, 1, 2))  # another seed
    assert np.array_equal(np.sort(first), np.sort(order(0, 2, 2)))


@needs_torch
def test_workers_read_disjoint_chunks(ds):
    tds = torch_dataset(ds, "train", batch_size=8, window_chunks=2, seed=3)
    chunk = ds.images.chunks[0]
    plans = [tds.worker_plan(w, 2) for w in range(2)]
    read = [{k for win in p.windows for k in win.tolist()} for p in plans]
    assert read[0] and read[1] and not read[0] & read[1]
    rows = [tds.loader.rows[p.order] for p in plans]
    assert {int(r) // chunk for r in rows[0]} == read[0] and {int(r) // chunk for r in rows[1]} == read[1]
    assert abs(len(read[0]) - len(read[1])) <= 1


def test_shard_blocks_deals_each_nonempty_block_to_one_worker():
    blocks = [np.arange(k * 3, k * 3 + 3) for k in range(7)] + [np.zeros(0, dtype=np.int64)]
    shards = [shard_blocks(blocks, worker=w, workers=3, seed=1, epoch=5) for w in range(3)]
    for k in range(7):
        owners = [w for w in range(3) if shards[w][k].size]
        assert len(owners) == 1 and np.array_equal(shards[owners[0]][k], blocks[k])
    assert sorted(sum(b.size > 0 for b in s) for s in shards) == [2, 2, 3]

    # another epoch deals the blocks anew (four epochs cannot all repeat epoch 5's deal by chance: 1/105^4)
    def owned(epoch: int) -> list[list[bool]]:
        return [[b.size > 0 for b in shard_blocks(blocks, worker=w, workers=3, seed=1, epoch=epoch)] for w in range(3)]

    assert any(owned(e) != owned(5) for e in range(4))
    with pytest.raises(InvalidInputError, match="worker must be within 0..2"):
        shard_blocks(blocks, worker=3, workers=3)


@needs_torch
def test_no_label_column_gives_minus_one_and_the_dataset_survives_pickling(ds):
    tds = torch_dataset(ds, None, batch_size=50, labels=False, seed=2, epoch=1)
    again = pickle.loads(pickle.dumps(tds))  # what a spawn-started worker receives
    a, b = _epoch(tds), _epoch(again)
    assert np.array_equal(a["rows"], b["rows"]) and np.array_equal(a["images"], b["images"])
    assert np.array_equal(np.sort(a["rows"]), np.arange(len(ds)))
    assert (a["labels"] == -1).all() and a["labels"].dtype == np.int64


@needs_torch
def test_bad_arguments_are_one_line_hipsml_errors(ds):
    with pytest.raises(InvalidInputError, match="batch_size must be an integer >= 1"):
        torch_dataset(ds, batch_size=0)
    with pytest.raises(HipsmlError, match="no split 'nope'"):
        torch_dataset(ds, "nope")


def test_torch_is_imported_only_by_torch_dataset_and_its_absence_is_one_line():
    # a fresh interpreter where torch cannot be imported (as where it is not installed): hipsml.train
    # imports without it, and torch_dataset says what to install
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import hipsml.train\n"
        "from hipsml.errors import MissingDependencyError\n"
        "try:\n    hipsml.train.torch_dataset('no-such-dataset')\n"
        "except MissingDependencyError as exc:\n    print('error:', exc, isinstance(exc, ImportError))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == 'error: torch_dataset needs PyTorch: pip install "hipsml[torch]" True\n'


@needs_torch
@pytest.mark.slow
def test_spawned_workers_unpickle_the_dataset_and_follow_set_epoch(ds):
    # spawn (macOS's default, and forkserver's kin): the worker gets the dataset by pickling
    tds = torch_dataset(ds, "val", batch_size=8, seed=5)
    want = {}
    for epoch in (0, 1):
        tds.set_epoch(epoch)
        want[epoch] = _epoch(_loader(tds, 0))["rows"]
    assert not np.array_equal(want[0], want[1])
    spawned = DataLoader(tds, batch_size=None, num_workers=1, persistent_workers=True, multiprocessing_context="spawn")
    for epoch in (0, 1):
        tds.set_epoch(epoch)
        assert np.array_equal(_epoch(spawned)["rows"], want[epoch])
