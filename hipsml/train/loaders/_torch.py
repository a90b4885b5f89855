"""PyTorch adapter: :func:`torch_dataset`, a ``torch.utils.data.IterableDataset`` over a dataset split.

It reads exactly as :func:`hipsml.train.zarr_batches` does (whole chunks in a seeded order, rows
shuffled within windows of chunks, reader threads, a prefetch thread) and hands out dicts of
tensors. Under a ``DataLoader`` with worker processes the epoch's chunks are dealt out among the
workers (:func:`shard_blocks`, pure), so each chunk is read by one worker only and every row of
the split arrives exactly once per epoch.

PyTorch is optional (``pip install "hipsml[torch]"``): it is imported when :func:`torch_dataset`
is first called, never on ``import hipsml``. The dataset class is made then too, and is reachable
as ``hipsml.train.loaders._torch.TorchDataset`` so that worker processes started with ``spawn``
can unpickle it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from hipsml.errors import InvalidInputError, MissingDependencyError
from hipsml.train.loaders._zarr import (
    Batch,
    EpochPlan,
    ZarrBatches,
    check_positive_int,
    epoch_rng,
    in_background,
    plan_epoch,
    zarr_batches,
)

__all__ = ["NO_LABEL", "SharedWindows", "shard_blocks", "torch_dataset"]

#: the label of every row when the dataset has no label column (or ``labels=False``)
NO_LABEL = -1

#: the dataset class, made on first use (it subclasses torch's IterableDataset)
_CLASS: type | None = None


def shard_blocks(
    blocks: Sequence[np.ndarray], *, worker: int, workers: int, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> list[np.ndarray]:
    """The blocks that worker ``worker`` of ``workers`` reads; the others' are emptied.

    The non-empty blocks are dealt round-robin, in a seeded order for (seed, epoch) (in block
    order without ``shuffle``), so the workers' block counts differ by at most one and each
    block goes to exactly one worker. A pure function; ``workers=1`` returns every block.

    Examples
    --------
    >>> blocks = [np.arange(0, 3), np.arange(3, 5), np.arange(5, 9)]
    >>> [[b.tolist() for b in shard_blocks(blocks, worker=w, workers=2, shuffle=False)] for w in (0, 1)]
    [[[0, 1, 2], [], [5, 6, 7, 8]], [[], [3, 4], []]]
    """
    workers = check_positive_int(workers, "workers")
    if not 0 <= worker < workers:
        raise InvalidInputError(f"worker must be within 0..{workers - 1}, got {worker}")
    blocks = [np.asarray(b, dtype=np.int64) for b in blocks]
    if workers == 1:
        return blocks
    keep = np.array([k for k, b in enumerate(blocks) if b.size], dtype=np.int64)
    if shuffle:
        keep = keep[epoch_rng(seed, epoch, 3).permutation(keep.size)]
    mine = set(keep[worker::workers].tolist())
    return [b if k in mine else b[:0] for k, b in enumerate(blocks)]


def _import_torch() -> Any:
    try:
        import torch
        import torch.utils.data
    except ImportError:
        raise MissingDependencyError('torch_dataset needs PyTorch: pip install "hipsml[torch]"') from None
    return torch


def _torch_dataset_class() -> type:
    """The ``TorchDataset`` class (a ``torch.utils.data.IterableDataset``), made once."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    torch = _import_torch()

    class TorchDataset(torch.utils.data.IterableDataset):  # type: ignore[name-defined]  # torch is imported lazily: a variable, not a type, to mypy
        """Batches of a dataset split as dicts of tensors (see :func:`torch_dataset`).

        The epoch lives in a one-element shared-memory tensor, so ``set_epoch`` in the main
        process reaches worker processes that outlive an epoch (``persistent_workers=True``).

        Attributes
        ----------
        loader : ZarrBatches
            The underlying loader of the current epoch (its ``rows``, ``batch_size``, ``seed``,
            ``epoch``, ``normalisation``).
        """

        def __init__(self, loader: ZarrBatches) -> None:
            super().__init__()
            self._base = loader
            self._epoch = torch.tensor([loader.epoch], dtype=torch.int64).share_memory_()

        @property
        def epoch(self) -> int:
            return int(self._epoch[0])

        @property
        def loader(self) -> ZarrBatches:
            return self._base.for_epoch(self.epoch)

        def set_epoch(self, epoch: int) -> None:
            """Read epoch ``epoch`` next: a new order, a pure function of (seed, epoch)."""
            self._epoch[0] = check_positive_int(epoch, "epoch", minimum=0)

        def worker_plan(self, worker: int = 0, workers: int = 1, *, loader: ZarrBatches | None = None) -> EpochPlan:
            """The reading plan of worker ``worker`` of ``workers`` for the current epoch."""
            lo = self.loader if loader is None else loader
            blocks = shard_blocks(lo.chunk_blocks(), worker=worker, workers=workers, seed=lo.seed, epoch=lo.epoch,
                                  shuffle=lo.shuffle)  # fmt: skip
            return plan_epoch(blocks, shuffle=lo.shuffle, seed=lo.seed, epoch=lo.epoch, window=lo.window_chunks)

        def num_batches(self, num_workers: int = 0) -> int:
            """Batches this epoch yields under a ``DataLoader`` with ``num_workers`` workers.

            Each worker ends with its own smaller batch (unless ``drop_last``), so with workers
            there may be up to ``num_workers - 1`` more batches than ``ceil(rows / batch_size)``.
            """
            workers = max(1, check_positive_int(num_workers, "num_workers", minimum=0))
            loader = self.loader
            size, n = loader.batch_size, 0
            for w in range(workers):
                rows = len(self.worker_plan(w, workers, loader=loader))
                n += rows // size if loader.drop_last else -(-rows // size)
            return n

        def __iter__(self) -> Iterator[dict[str, Any]]:
            info = torch.utils.data.get_worker_info()
            worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
            loader = self.loader
            plan = self.worker_plan(worker, workers, loader=loader)
            # in a worker, tensors go to the main process through shared memory: read the windows
            # straight into it, so a batch (a view of its window) travels without a copy
            windows = None if info is None else SharedWindows(torch)
            empty = None if windows is None else windows.empty
            batches = in_background(lambda: loader._stream(plan, empty=empty), prefetch=loader.prefetch)
            try:
                for batch in batches:
                    yield _to_torch(torch, batch, windows)
            finally:
                batches.close()  # type: ignore[attr-defined]  # a generator, typed as Iterator

        def __repr__(self) -> str:
            lo = self.loader
            return (f"<hipsml TorchDataset of {lo.rows.size} rows of {lo.dataset!r}, batches of {lo.batch_size}, "
                    f"seed {lo.seed}, epoch {lo.epoch}>")  # fmt: skip

    TorchDataset.__module__ = __name__
    TorchDataset.__qualname__ = "TorchDataset"
    _CLASS = TorchDataset
    return TorchDataset


class SharedWindows:
    """Window arrays allocated in shared memory (in a ``DataLoader`` worker), and batches as tensors.

    ``empty(shape)`` is the loader's allocator of window images; ``tensor(images)`` gives a batch,
    a view of one of those windows, as a view of the window's shared tensor, so sending it to
    the main process copies nothing (the main process maps each window once). A batch that is
    not such a view (one joining two windows) is copied into a new shared tensor.
    """

    def __init__(self, torch: Any, keep: int = 4) -> None:
        self.torch = torch
        self.recent: deque[Any] = deque(maxlen=keep)  # windows still being cut into batches
        self.lock = threading.Lock()

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        window = _shared_empty(self.torch, shape)
        with self.lock:
            self.recent.append(window)
        return window.numpy()

    def tensor(self, images: np.ndarray) -> Any:
        ptr, size = images.__array_interface__["data"][0], images.size
        if images.dtype == np.float32 and images.flags.c_contiguous:
            with self.lock:
                windows = list(self.recent)
            for window in windows:  # live windows never overlap: the one holding ptr is the batch's
                start = (ptr - window.data_ptr()) // 4
                if 0 <= start and start + size <= window.numel():
                    return window.view(-1)[start : start + size].view(images.shape)
        out = _shared_empty(self.torch, images.shape)
        out.numpy()[...] = images
        return out


def _shared_empty(torch: Any, shape: tuple[int, ...]) -> Any:
    """A float32 tensor in a new shared-memory storage (as torch's ``default_collate`` makes in a worker)."""
    proto = torch.empty(0, dtype=torch.float32)
    storage = proto._typed_storage()._new_shared(int(np.prod(shape)), device=proto.device)
    return proto.new(storage).resize_(shape)


def _to_torch(torch: Any, batch: Batch, windows: SharedWindows | None) -> dict[str, Any]:
    """A :class:`Batch` as ``{"images", "labels", "rows"}`` tensors; ``windows``: in a worker."""
    n = batch.rows.size
    images = torch.from_numpy(batch.images) if windows is None else windows.tensor(batch.images)
    if batch.labels is None:
        labels = torch.full((n,), NO_LABEL, dtype=torch.int64)
    else:
        labels = torch.from_numpy(np.array(batch.labels, dtype=np.int64))
    return {"images": images, "labels": labels, "rows": torch.from_numpy(np.array(batch.rows, dtype=np.int64))}


def __getattr__(name: str) -> Any:
    if name == "TorchDataset":  # made on first use: torch is imported then
        return _torch_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def torch_dataset(
    dataset: Any,
    split: str | Sequence[int] | np.ndarray | None = "train",
    *,
    batch_size: int = 256,
    normalise: Any = None,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    window_chunks: int = 8,
    nan_to: float | str | None = "zero",
    mask_channel: bool = False,
    labels: bool | str = True,
    drop_last: bool = False,
    threads: int = 2,
    prefetch: int = 2,
) -> Any:
    """A ``torch.utils.data.IterableDataset`` of shuffled batches of a dataset split (``hipsml[torch]``).

    It reads as :func:`hipsml.train.zarr_batches` does and yields whole batches, so wrap it in
    ``DataLoader(tds, batch_size=None, num_workers=k)``. With ``k`` worker processes the epoch's
    chunks are dealt out among the workers (each chunk is read by one worker) and every row of
    the split arrives exactly once per epoch; each worker ends with its own smaller batch unless
    ``drop_last``. With ``num_workers=0`` the batches are exactly ``zarr_batches``' for the
    same arguments.

    Parameters
    ----------
    dataset : Dataset or path
        A :class:`hipsml.Dataset` (or a path for :func:`hipsml.open_dataset`).
    split : str, None or array of int
        A split name, None for every row, or row indices.
    batch_size : int
        Rows per batch.
    normalise : None, str, mapping or Normalisation
        As for :func:`hipsml.train.zarr_batches`; None gives the stored pixels unchanged
        (blank pixels become 0 unless ``nan_to=None``).
    seed, epoch : int
        The order is a pure function of both (and of the number of workers);
        ``set_epoch(e)`` moves to epoch ``e``.
    shuffle, window_chunks, nan_to, mask_channel, labels, drop_last, threads, prefetch
        As for :func:`hipsml.train.zarr_batches` (``threads`` and ``prefetch`` are per worker).

    Returns
    -------
    TorchDataset
        A ``torch.utils.data.IterableDataset`` yielding ``{"images": float32 (B, C[+1], H, W),
        "labels": int64 (B,), "rows": int64 (B,)}``: ``rows`` are the dataset's row numbers;
        ``labels`` are the label codes (names in ``dataset.label_names``), all ``-1`` when the
        dataset has no label column or ``labels=False``. ``set_epoch(e)`` picks the epoch,
        also for workers kept alive between epochs (``persistent_workers=True``, which saves
        starting the workers every epoch).

    Raises
    ------
    MissingDependencyError
        PyTorch is not installed.
    InvalidInputError
        As :func:`hipsml.train.zarr_batches`.

    Examples
    --------
    >>> from torch.utils.data import DataLoader  # doctest: +SKIP
    >>> tds = torch_dataset(ds, "train", batch_size=256, normalise="standardise", seed=0)  # doctest: +SKIP
    >>> loader = DataLoader(tds, batch_size=None, num_workers=2, persistent_workers=True)  # doctest: +SKIP
    >>> for epoch in range(10):  # doctest: +SKIP
    ...     tds.set_epoch(epoch)
    ...     for batch in loader:
    ...         loss = step(batch["images"], batch["labels"])
    """
    cls = _torch_dataset_class()
    loader = zarr_batches(
        dataset, split, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch, window_chunks=window_chunks,
        normalise=normalise, nan_to=nan_to, mask_channel=mask_channel, labels=labels, prefetch=prefetch,
        drop_last=drop_last, threads=threads,
    )  # fmt: skip
    return cls(loader)
