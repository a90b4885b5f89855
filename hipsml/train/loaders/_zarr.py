"""Batches for training loops: shuffled whole-chunk reading of a dataset, with prefetch.

The loaders share one machine, in three pure or small pieces:

- :func:`plan_epoch` (pure): blocks of rows (a Zarr chunk, or a work unit of the sky
  source) in a seeded random order, grouped into windows of ``window`` blocks whose rows
  are shuffled together; the epoch's row order follows. Deterministic for (seed, epoch).
- :func:`stream_batches`: reads the blocks of each window in ``threads`` worker threads
  (each block once), scatters them into the window's shuffled order and yields batches;
  the next window is read while the current one is handed out.
- :func:`in_background`: runs such a stream in a prefetch thread behind a bounded queue;
  an exception there is raised in the consumer, and the thread stops (and is joined) when
  the consumer stops early.

:func:`zarr_batches` composes them over a :class:`hipsml.Dataset`; the sky source
(:func:`hipsml.train.sky_batches`) over work units cut afresh from the tiles.
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hipsml.errors import DatasetError, InvalidInputError
from hipsml.train.loaders._normalise import Normalisation, parse_normalisation, prepare_batch

__all__ = [
    "Batch",
    "EpochPlan",
    "ZarrBatches",
    "device_prefetch",
    "in_background",
    "plan_epoch",
    "stream_batches",
    "zarr_batches",
]

logger = logging.getLogger(__name__)

#: name prefix of the loaders' threads (prefetch and readers)
THREAD_PREFIX = "hipsml-loader"


class Batch(NamedTuple):
    """One batch: ``images, labels, rows = batch``.

    Attributes
    ----------
    images : numpy.ndarray
        ``(B, C, S, S)`` float32, or ``(B, C + 1, S, S)`` with the coverage mask channel.
    labels : numpy.ndarray or None
        ``(B,)`` int64 label codes (names in ``dataset.label_names``), or None.
    rows : numpy.ndarray
        ``(B,)`` int64: the dataset rows (or target indices) of the cutouts.
    """

    images: np.ndarray
    labels: np.ndarray | None
    rows: np.ndarray


# ---------------------------------------------------------------------------------------
# checks


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_nan_to(value: Any) -> float | None:
    """``"zero"`` -> 0.0, a finite number, or None (keep NaN)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.lower() in ("zero", "0"):
            return 0.0
        raise InvalidInputError(f"nan_to must be 'zero', a number or None, got {value!r}")
    if isinstance(value, bool):
        raise InvalidInputError(f"nan_to must be 'zero', a number or None, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"nan_to must be 'zero', a number or None, got {value!r}") from None
    if not math.isfinite(out):
        raise InvalidInputError(f"nan_to must be finite, got {value!r}")
    return out


# ---------------------------------------------------------------------------------------
# the plan (pure)


@dataclass(frozen=True, eq=False)
class EpochPlan:
    """The reading order of one epoch.

    Attributes
    ----------
    blocks : tuple of numpy.ndarray
        Item positions held by each block (a chunk's rows, a work unit's targets), in block order.
    windows : tuple of numpy.ndarray
        Each window: the indices (into ``blocks``) of its blocks, in reading order.
    orders : tuple of numpy.ndarray
        Each window's item positions in delivery order (its blocks' items, shuffled together).
    """

    blocks: tuple[np.ndarray, ...]
    windows: tuple[np.ndarray, ...]
    orders: tuple[np.ndarray, ...]

    @property
    def order(self) -> np.ndarray:
        """Every item position of the epoch in delivery order."""
        return np.concatenate(self.orders) if self.orders else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(sum(o.size for o in self.orders))


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The random generator of one (seed, epoch) and one use (``stream``)."""
    return np.random.default_rng([int(seed), int(epoch), int(stream)])


def plan_epoch(
    blocks: Sequence[np.ndarray], *, shuffle: bool = True, seed: int = 0, epoch: int = 0, window: int = 8
) -> EpochPlan:
    """Plan one epoch: blocks in a seeded order, grouped by ``window``, items shuffled per window.

    A pure function: the same (blocks, seed, epoch) give the same plan. Without ``shuffle``
    blocks and items keep their order.

    Parameters
    ----------
    blocks : sequence of int arrays
        The item positions of each block (every item in exactly one block).
    shuffle : bool
    seed, epoch : int
    window : int
        Blocks whose items are shuffled together (and read before any of them is delivered).

    Examples
    --------
    >>> plan = plan_epoch([np.arange(0, 3), np.arange(3, 6)], seed=1, window=1)
    >>> sorted(plan.order.tolist()), [sorted(o.tolist()) in ([0, 1, 2], [3, 4, 5]) for o in plan.orders]
    ([0, 1, 2, 3, 4, 5], [True, True])
    """
    window = check_positive_int(window, "window")
    blocks = tuple(np.asarray(b, dtype=np.int64) for b in blocks)
    keep = np.array([k for k, b in enumerate(blocks) if b.size], dtype=np.int64)
    if shuffle:
        keep = keep[epoch_rng(seed, epoch, 1).permutation(keep.size)]
    windows = tuple(keep[i : i + window] for i in range(0, keep.size, window))
    rng = epoch_rng(seed, epoch, 2)
    orders = []
    for w in windows:
        items = np.concatenate([blocks[k] for k in w])
        orders.append(items[rng.permutation(items.size)] if shuffle else items)
    return EpochPlan(blocks, windows, tuple(orders))


# ---------------------------------------------------------------------------------------
# streaming


def stream_batches(
    plan: EpochPlan,
    load_block: Callable[[int], np.ndarray],
    *,
    batch_size: int,
    rows: np.ndarray,
    labels: np.ndarray | None,
    drop_last: bool = False,
    threads: int = 2,
    empty: Callable[[tuple[int, ...]], np.ndarray] | None = None,
) -> Iterator[Batch]:
    """Yield the batches of ``plan``: read each window's blocks in threads, shuffle, cut.

    ``load_block(k)`` returns block ``k``'s prepared images ``(len(blocks[k]), C, S, S)``,
    its items in block order. Each block is loaded once; the next window's blocks are read
    while the current window is being delivered. A batch may join the end of one window
    and the start of the next. Closing the iterator cancels pending reads and waits for
    running ones. ``empty(shape)`` allocates each window's float32 images (default
    ``numpy.empty``; the PyTorch adapter allocates them in shared memory): a batch is a view of
    its window's array, or a new array when it joins two windows.
    """
    threads = check_positive_int(threads, "threads")
    if empty is None:
        empty = _empty_float32
    pool = ThreadPoolExecutor(threads, thread_name_prefix=f"{THREAD_PREFIX}-read")
    pending: deque[tuple[int, dict[str, Any], list[Future[None]]]] = deque()

    def scatter(k: int, dest: np.ndarray, slot: dict[str, Any], lock: threading.Lock) -> None:
        block = load_block(k)
        if block.shape[0] != dest.size:
            raise RuntimeError(f"block {k} gave {block.shape[0]} images for {dest.size} items")
        with lock:
            if "images" not in slot:  # the first block fixes the shape (mask channel included)
                slot["images"] = empty((slot["n"], *block.shape[1:]))
        slot["images"][dest] = block

    def submit(w: int) -> None:
        window = plan.windows[w]
        sizes = [plan.blocks[k].size for k in window]
        order = plan.orders[w]
        # where each item of the concatenated blocks lands in the window's delivery order
        cat = np.concatenate([plan.blocks[k] for k in window])
        position = _positions(cat, order)
        slot: dict[str, Any] = {"n": int(order.size)}
        lock = threading.Lock()
        futures = []
        start = 0
        for k, n in zip(window, sizes, strict=True):
            futures.append(pool.submit(scatter, int(k), position[start : start + n], slot, lock))
            start += n
        pending.append((w, slot, futures))

    carry: list[tuple[np.ndarray, np.ndarray]] = []  # (images, item positions) not yet delivered
    carried = 0

    def make(images: np.ndarray, items: np.ndarray) -> Batch:
        return Batch(images, None if labels is None else labels[items], rows[items])

    try:
        nwin = len(plan.windows)
        for w in range(min(2, nwin)):
            submit(w)
        next_window = min(2, nwin)
        while pending:
            w, slot, futures = pending.popleft()
            for f in futures:
                f.result()
            if next_window < nwin:
                submit(next_window)
                next_window += 1
            images, items = slot["images"], plan.orders[w]
            start = 0
            if carried:
                take = min(batch_size - carried, items.size)
                carry.append((images[:take], items[:take]))
                carried += take
                start = take
                if carried == batch_size:
                    yield make(np.concatenate([c[0] for c in carry]), np.concatenate([c[1] for c in carry]))
                    carry, carried = [], 0
            while items.size - start >= batch_size:
                yield make(images[start : start + batch_size], items[start : start + batch_size])
                start += batch_size
            if start < items.size:
                carry.append((images[start:], items[start:]))
                carried += items.size - start
        if carried and not drop_last:
            yield make(np.concatenate([c[0] for c in carry]), np.concatenate([c[1] for c in carry]))
    finally:
        for _, _, futures in pending:
            for f in futures:
                f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _empty_float32(shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=np.float32)


def _positions(cat: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each element of ``cat``, its index in ``order`` (a permutation of ``cat``)."""
    pos_in_order = np.empty(order.size, dtype=np.int64)
    sort_order = np.argsort(order, kind="stable")
    sort_cat = np.argsort(cat, kind="stable")
    pos_in_order[sort_cat] = sort_order
    return pos_in_order


def in_background(make_stream: Callable[[], Iterator[Batch]], *, prefetch: int = 2) -> Iterator[Batch]:
    """Iterate ``make_stream()`` in a prefetch thread, ``prefetch`` batches ahead.

    An exception in the thread is raised here, in the consumer. When the consumer stops
    early (``break``, an exception, ``close()`` or the iterator being dropped), the thread
    is told to stop, closes its stream and is joined before this generator returns.
    ``prefetch=0`` runs the stream in the consumer's thread.
    """
    prefetch = check_positive_int(prefetch, "prefetch", minimum=0)
    if prefetch == 0:
        yield from make_stream()
        return
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            stream = make_stream()
            try:
                for batch in stream:
                    if not put(("batch", batch)):
                        return
            finally:
                stream.close()  # type: ignore[attr-defined]
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))

    thread = threading.Thread(target=run, name=f"{THREAD_PREFIX}-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "batch":
                yield value
            elif kind == "done":
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


def device_prefetch(batches: Any, *, size: int = 2, put: Callable[[np.ndarray], Any] | None = None) -> Iterator[Batch]:
    """Yield ``batches`` with images and labels already on the accelerator, ``size`` batches ahead.

    ``put`` defaults to ``jax.device_put`` (JAX is imported only here), which copies
    asynchronously: while the training step runs on one batch, the next ``size`` are on
    their way to the device. ``rows`` stay numpy. Closing this iterator closes ``batches``
    (so the loader's threads stop).

    Examples
    --------
    >>> for images, labels, rows in device_prefetch(zarr_batches(ds, "train")):  # doctest: +SKIP
    ...     state = train_step(state, images, labels)
    """
    size = check_positive_int(size, "size")
    if put is None:
        try:
            import jax
        except ImportError:
            raise InvalidInputError("device_prefetch needs JAX (pip install jax), or a put= function") from None
        put = jax.device_put
    ahead: deque[Batch] = deque()
    it = iter(batches)
    try:
        for batch in it:
            labels = None if batch.labels is None else put(batch.labels)
            ahead.append(Batch(put(batch.images), labels, batch.rows))
            if len(ahead) > size:
                yield ahead.popleft()
        while ahead:
            yield ahead.popleft()
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------------------------------
# the Zarr loader


def _open(dataset: Any) -> Any:
    """Kept for old imports: :func:`hipsml.dataset.as_dataset` is the one home of this normaliser."""
    from hipsml.dataset import as_dataset

    return as_dataset(dataset)


def split_rows(dataset: Any, split: Any) -> np.ndarray:
    """Sorted dataset rows of ``split``: a split name, None (every row), or row indices."""
    n = len(dataset)
    if split is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(split, str):
        return dataset.split(split).astype(np.int64)
    rows = np.asarray(split)
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise InvalidInputError("split must be a split name, None or a 1-D array of row indices")
    rows = np.unique(rows.astype(np.int64))
    if rows.size and (rows[0] < 0 or rows[-1] >= n):
        raise InvalidInputError(f"split rows must be within 0..{n - 1}")
    return rows


def label_codes(dataset: Any, labels: bool | str | None) -> np.ndarray | None:
    """The label column as int64 codes (``labels=True``: ``label`` when present), or None."""
    if labels is False or labels is None:
        return None
    name = "label" if labels is True else labels
    if not isinstance(name, str):
        raise InvalidInputError(f"labels must be True, False or a column name, got {labels!r}")
    if labels is True and "label" not in dataset.group:
        return None
    values = dataset.column(name)
    if values.dtype.kind not in "iub":
        raise InvalidInputError(f"column {name!r} holds {values.dtype} values, not integer labels; pass labels=False")
    return values.astype(np.int64)


def chunk_reader(images: Any) -> Callable[[int, int, int], np.ndarray]:
    """``read(k, lo, hi)``: rows ``lo..hi`` (chunk ``k``) of a Zarr array chunked along its first axis.

    For the layout hipsml writes (Zarr v3 on a local disk, bytes + blosc codecs, no
    sharding) the chunk file is read and decompressed directly into a fresh array, about
    twice as fast as going through zarr's asynchronous machinery; anything else (another
    store, codec or layout) is read with ``images[lo:hi]``.
    """
    direct = _direct_blosc_reader(images)
    if direct is not None:
        return direct
    return lambda k, lo, hi: np.asarray(images[lo:hi])


def _direct_blosc_reader(images: Any) -> Callable[[int, int, int], np.ndarray] | None:
    try:
        import numcodecs.blosc
        from zarr.codecs import BloscCodec, BytesCodec
        from zarr.storage import LocalStore

        meta = images.metadata
        store = images.store_path.store
        codecs = tuple(getattr(meta, "codecs", ()))
        shape = tuple(images.shape)
        dtype = np.dtype(images.dtype)
        chunk_shape = tuple(meta.chunk_grid.chunk_shape)
        ok = (
            isinstance(store, LocalStore)
            and getattr(meta, "zarr_format", None) == 3
            and len(codecs) == 2
            and isinstance(codecs[0], BytesCodec)
            and isinstance(codecs[1], BloscCodec)
            and dtype.kind == "f"
            and dtype.isnative
            and (codecs[0].endian is None or codecs[0].endian.value == sys.byteorder)
            and chunk_shape[1:] == shape[1:]
        )
        if not ok:
            return None
        root = Path(store.root) / images.store_path.path
        fill = meta.fill_value
        rest = (0,) * (len(shape) - 1)
    except Exception:  # an unfamiliar zarr: the general route
        return None

    def read(k: int, lo: int, hi: int) -> np.ndarray:
        path = root / meta.encode_chunk_key((k, *rest))
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # never written: the fill value, as zarr reads it
            return np.full((hi - lo, *shape[1:]), fill, dtype=dtype)
        out = np.empty(chunk_shape, dtype=dtype)
        numcodecs.blosc.decompress(raw, out)
        return out[: hi - lo]

    return read


@dataclass(frozen=True, eq=False)
class ZarrBatches:
    """One epoch of batches from a dataset split (see :func:`zarr_batches`); iterate it.

    ``for_epoch(k)`` gives the same loader for epoch ``k``; ``len()`` is the number of batches;
    ``plan()`` the epoch's reading order; ``normalisation`` the normalisation applied (with its
    statistics, to reuse on other splits).
    """

    dataset: Any
    rows: np.ndarray
    labels: np.ndarray | None
    batch_size: int
    shuffle: bool
    seed: int
    epoch: int
    window_chunks: int
    normalisation: Normalisation | None
    nan_to: float | None
    mask_channel: bool
    prefetch: int
    drop_last: bool
    threads: int

    def __len__(self) -> int:
        n = self.rows.size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def for_epoch(self, epoch: int) -> ZarrBatches:
        """This loader for another epoch (a new order, the same rows)."""
        return replace(self, epoch=check_positive_int(epoch, "epoch", minimum=0))

    def chunk_blocks(self) -> list[np.ndarray]:
        """Item positions (into ``rows``) held by each chunk of the images array."""
        chunk = int(self.dataset.images.chunks[0])
        nchunks = -(-len(self.dataset) // chunk)
        bounds = np.searchsorted(self.rows, np.arange(nchunks + 1) * chunk)
        return [np.arange(bounds[c], bounds[c + 1], dtype=np.int64) for c in range(nchunks)]

    def plan(self) -> EpochPlan:
        """The epoch's plan: blocks are chunks, items are positions into ``rows``."""
        return plan_epoch(self.chunk_blocks(), shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                          window=self.window_chunks)  # fmt: skip

    def _stream(self, plan: EpochPlan | None = None, *, empty: Callable[[tuple[int, ...]], np.ndarray] | None = None
                ) -> Iterator[Batch]:  # fmt: skip
        """The batches of ``plan`` (default: this epoch's whole plan); ``empty`` as for :func:`stream_batches`."""
        plan = self.plan() if plan is None else plan
        images = self.dataset.images
        chunk = int(images.chunks[0])
        rows = self.rows

        read = chunk_reader(images)

        def load_block(k: int) -> np.ndarray:
            lo = k * chunk
            hi = min(lo + chunk, images.shape[0])
            try:
                data = read(k, lo, hi)
            except Exception as exc:  # a corrupt or unreadable chunk: name the array, the chunk and the version
                where = f"{getattr(self.dataset, 'path', 'the dataset')} v{getattr(self.dataset, 'version', '?')}"
                raise DatasetError(
                    f"{where}: array 'images' chunk {k} (rows {lo}..{hi - 1}) cannot be read "
                    f"({type(exc).__name__}: {exc}); restore the version from a good copy"
                ) from exc
            local = rows[plan.blocks[k]] - lo
            if local.size != data.shape[0]:
                data = data[local]
            return prepare_batch(data, self.normalisation, nan_to=self.nan_to, mask_channel=self.mask_channel)

        return stream_batches(plan, load_block, batch_size=self.batch_size, rows=rows, labels=self.labels,
                              drop_last=self.drop_last, threads=self.threads, empty=empty)  # fmt: skip

    def __iter__(self) -> Iterator[Batch]:
        return in_background(self._stream, prefetch=self.prefetch)


def zarr_batches(
    dataset: Any,
    split: str | Sequence[int] | np.ndarray | None = "train",
    *,
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    window_chunks: int = 8,
    normalise: Any = None,
    nan_to: float | str | None = "zero",
    mask_channel: bool = False,
    labels: bool | str = True,
    prefetch: int = 2,
    drop_last: bool = False,
    threads: int = 2,
) -> ZarrBatches:
    """Batches of one epoch over a dataset split, read whole chunk by whole chunk.

    Chunks holding rows of the split are read in a seeded random order, ``window_chunks``
    at a time; the rows of a window are shuffled together and cut into batches (a batch
    may join two consecutive windows). Each chunk is decoded once per epoch, in ``threads``
    reader threads, and the batches are prepared ``prefetch`` ahead in a background thread.
    Every row of the split comes exactly once per epoch, in an order fixed by
    ``(seed, epoch)``. Iterating the result runs the epoch (again, identically, if iterated
    twice); ``.for_epoch(k)`` gives another epoch.

    Parameters
    ----------
    dataset : Dataset or path
        A :class:`hipsml.Dataset` (or a path for :func:`hipsml.open_dataset`).
    split : str, None or array of int
        A split name (``dataset.split_names``), None for every row, or row indices.
    batch_size : int
        Cutouts per batch (the last one is smaller unless ``drop_last``).
    shuffle : bool
        Shuffle chunk order and rows within windows; without it rows come in dataset order.
    seed, epoch : int
        The order is a pure function of both.
    window_chunks : int
        Chunks whose rows are shuffled together: more mixes better, costs memory
        (``window_chunks`` x chunk size, two windows in flight).
    normalise : None, str, mapping or Normalisation
        ``minmax``, ``asinh``, ``percentile``, ``standardise`` (training-split statistics,
        whatever split is read), or ``{"name": ..., options}``; see
        :func:`hipsml.train.parse_normalisation`.
    nan_to : "zero", float or None
        What blank pixels become after normalising (None keeps NaN).
    mask_channel : bool
        Append the coverage mask (1 where every channel holds data) as an extra channel.
    labels : bool or str
        True: the ``label`` column as int64 codes when the dataset has one (else None);
        a column name; False: None.
    prefetch : int
        Batches prepared ahead in the background thread (0: no background thread).
    drop_last : bool
        Drop the last, incomplete batch.
    threads : int
        Reader threads decoding and normalising chunks.

    Returns
    -------
    ZarrBatches
        Iterable of :class:`Batch` ``(images float32 (B, C[+1], S, S), labels int64 (B,) or None,
        rows int64 (B,))``; float16 datasets come out float32.

    Raises
    ------
    InvalidInputError
        Unknown split, bad batch size or window, unknown normalisation (with "did you mean").

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
    >>> seen = []
    >>> for images, labels, rows in zarr_batches(ds, "train", batch_size=32, epoch=0, normalise="minmax"):
    ...     seen.extend(rows.tolist())  # your training step goes here
    >>> sorted(seen) == ds.split("train").tolist(), images.shape[1:], float(images.max()) <= 1.0
    (True, (4, 64, 64), True)
    """
    from hipsml.dataset import as_dataset

    ds = as_dataset(dataset)
    batch_size = check_positive_int(batch_size, "batch_size")
    window_chunks = check_positive_int(window_chunks, "window_chunks")
    seed = check_positive_int(seed, "seed", minimum=0)
    epoch = check_positive_int(epoch, "epoch", minimum=0)
    prefetch = check_positive_int(prefetch, "prefetch", minimum=0)
    threads = check_positive_int(threads, "threads")
    rows = split_rows(ds, split)
    return ZarrBatches(
        dataset=ds, rows=rows, labels=None if (codes := label_codes(ds, labels)) is None else codes[rows],
        batch_size=batch_size, shuffle=bool(shuffle), seed=seed, epoch=epoch, window_chunks=window_chunks,
        normalisation=parse_normalisation(normalise, dataset=ds), nan_to=check_nan_to(nan_to),
        mask_channel=bool(mask_channel), prefetch=prefetch, drop_last=bool(drop_last), threads=threads,
    )  # fmt: skip
