"""Open a HiPS survey and read its tiles as float32 arrays.

:func:`open_survey` reads the ``properties`` file (and ``Moc.fits`` when there is one)
from a local directory, a ``file://`` URL or an ``http(s)://`` URL, and returns a
:class:`HipsSurvey`. :meth:`HipsSurvey.read_tile` returns a tile as a read-only
float32 ``(C, W, W)`` array oriented like the FITS tile (see
:func:`hipsml.hips.tile_pixel_indices`), or ``None`` when the tile does not exist.

Orders that hold tiles
----------------------
Many ``properties`` files omit ``hips_order_min`` (the standard then means 0) although
no tile exists below order 3, and a partial mirror may lack the deepest orders its
``properties`` claim. :attr:`HipsSurvey.order_min`, :attr:`HipsSurvey.order` and
:attr:`HipsSurvey.orders` therefore describe the orders that **hold tiles**:

* a local survey lists its ``Norder{k}`` folders (those holding a ``Dir*`` folder) and
  keeps the declared orders that have one (logged at WARNING when the properties claim
  orders that are absent, at INFO when ``hips_order_min`` was merely missing);
* a remote survey whose properties lack ``hips_order_min`` is probed, shallowest order
  first, with one tile per order (a tile inside the coverage MOC, else tile 0); with a
  MOC, the deepest declared order is probed too and, if its tile is absent, shallower
  ones. Without a conclusive probe the declared range is kept and ``orders`` is None.

Reading any declared order stays allowed: a tile of an order that holds none reads as None.

Remote coverage MOC
-------------------
``Moc.fits`` is read beside ``properties``. When a remote survey has none, its
``moc_access_url`` is followed only when it points at the survey's own origin (scheme,
host and port), or when ``open_survey(..., moc_any_host=True)`` opts in: a mirror served
over HTTP must not call the original archive (which, offline, costs retries on every open).
"""

from __future__ import annotations

import logging
import numbers
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from hipsml._suggest import did_you_mean
from hipsml.errors import FetchError, HipsmlError, InvalidInputError, InvalidLocationError, SurveyNotFoundError
from hipsml.hips._decode import decode_tile, split_allsky
from hipsml.hips._fetch import HTTP_OPTIONS, LocalTileStore, TileStore, check_http_options, open_store
from hipsml.hips._formats import FORMAT_EXTENSIONS, FORMAT_PREFERENCE, canonical_format
from hipsml.hips._healpix import tile_path
from hipsml.hips._moc import Moc, lonlat_bounds
from hipsml.hips._properties import HipsProperties, parse_properties

__all__ = ["HipsSurvey", "open_survey"]

logger = logging.getLogger(__name__)

_ABSENT_COST = 64  # bytes charged to the memory cache for remembering an absent tile
_LIST_MAX_DIRS = 16  # survey info lists the deepest order with at most this many Dir folders (160,000 tiles)
_SKY_DEG2 = 4 * np.pi * (180 / np.pi) ** 2
_HTTP_WORKERS = 16


def _as_int(value: Any, what: str) -> int:
    """``value`` as a Python int (ints, numpy integers, integral floats), else InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise InvalidInputError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    f = float(value)
    if not f.is_integer():
        raise InvalidInputError(f"{what} must be an integer, got {value!r}")
    return int(f)


def _as_int_array(values: Any, what: str) -> np.ndarray:
    """A flat int64 array of tile indices, else InvalidInputError (ragged, text, fractions)."""
    try:
        items = list(values)
    except TypeError:
        raise InvalidInputError(f"{what} must be a sequence of integers, got {values!r}") from None
    try:
        arr = np.asarray(items)
    except ValueError:
        raise InvalidInputError(f"{what} must be a flat sequence of integers, got {values!r}") from None
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype == object:
        raise InvalidInputError(f"{what} must be a flat sequence of integers, got {values!r}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise InvalidInputError(f"{what} must be integers, got {values!r}")


class _TileCache:
    """Thread-safe LRU of decoded tiles, bounded by the bytes of the arrays it holds."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, _as_int(max_bytes, "memory_cache_bytes"))
        self.nbytes = 0
        self._items: OrderedDict[tuple[Any, ...], np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _cost(value: np.ndarray | None) -> int:
        return _ABSENT_COST if value is None else int(value.nbytes)

    def get(self, key: tuple[Any, ...]) -> tuple[bool, np.ndarray | None]:
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            return True, self._items[key]

    def put(self, key: tuple[Any, ...], value: np.ndarray | None) -> None:
        cost = self._cost(value)
        if cost > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self.nbytes -= self._cost(self._items.pop(key))
            self._items[key] = value
            self.nbytes += cost
            while self.nbytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self.nbytes -= self._cost(dropped)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def _short_name(props: dict[str, str], location: str) -> str:
    title = props.get("obs_title", "").strip()
    if title:
        return title
    for key in ("creator_did", "publisher_did", "publisher_id"):
        did = props.get(key, "").strip()
        if did:
            return did.rstrip("/").replace("ivo://", "").split("/", 1)[-1] or did
    label = props.get("label", "").strip()
    if label:
        return label
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    return tail or location


class HipsSurvey:
    """A HiPS image survey opened for reading (create it with :func:`open_survey`).

    Attributes
    ----------
    location : str
        Directory or URL of the survey root.
    name : str
        Short label: ``obs_title``; else ``creator_did`` (or ``publisher_did``) without its
        ``ivo://`` authority, e.g. ``P/2MASS/J``; else ``label``; else the directory name.
    properties : dict of str to str
        The parsed ``properties`` file.
    order, order_min : int
        Deepest and shallowest orders that hold tiles: the declared ``hips_order`` and
        ``hips_order_min``, narrowed to the orders found (see "Orders that hold tiles"
        in the module documentation).
    orders : tuple of int or None
        The orders known to hold tiles (local: the ``Norder{k}`` folders found; remote:
        ``order_min..order`` once probed), or None when unknown.
    declared_orders : tuple of int
        ``(hips_order_min, hips_order)`` as the properties say (0 when the minimum is absent).
    tile_width, frame, formats, channels, bitpix, pixel_cut
        Typed fields from the properties (see :class:`~hipsml.hips.HipsProperties`).
    moc : Moc or None
        Coverage MOC; tiles outside it are not requested and read as None.
    stats : dict
        Counters: ``tile_reads`` (reads that decoded a tile), ``memory_hits``,
        ``absent`` (tiles found missing in the store), ``moc_skips`` (requests answered
        None from the MOC alone), ``cache_bytes`` and ``cache_tiles`` (memory cache use).

    A survey holds an HTTP session when remote: close it with :meth:`close`, or use the
    survey as a context manager.

    Examples
    --------
    >>> with open_survey("/data/hips/Planck-HFI143") as survey:  # doctest: +SKIP
    ...     tile = survey.read_tile(3, 300)
    >>> tile.shape, tile.dtype                                   # doctest: +SKIP
    ((1, 256, 256), dtype('float32'))
    """

    def __init__(
        self,
        store: TileStore,
        properties: dict[str, str],
        *,
        moc: Moc | None = None,
        memory_cache_bytes: int = 512 * 2**20,
        orders: tuple[int, ...] | None = None,
    ) -> None:
        self._store = store
        self.location: str = store.location
        source = store.url_for("properties")
        self.properties: dict[str, str] = dict(properties)
        self._typed = HipsProperties.from_dict(self.properties, source=source)
        self.name: str = _short_name(self.properties, self.location)
        self.declared_orders: tuple[int, int] = (self._typed.order_min, self._typed.order)
        self.order: int = self._typed.order
        self.order_min: int = self._typed.order_min
        self.orders: tuple[int, ...] | None = None
        self.tile_width: int = self._typed.tile_width
        self.frame: str = self._typed.frame
        self.formats: tuple[str, ...] = self._typed.formats
        self.channels: int = self._typed.channels
        self.bitpix: int | None = self._typed.bitpix
        self.pixel_cut: tuple[float, float] | None = self._typed.pixel_cut
        self.moc: Moc | None = moc
        self._cache = _TileCache(memory_cache_bytes)
        self._lock = threading.Lock()
        self._counts = {"tile_reads": 0, "memory_hits": 0, "absent": 0, "moc_skips": 0}
        if orders is not None:
            self._set_orders(orders, source)

    def _set_orders(self, found: Iterable[int], source: str) -> None:
        """Narrow ``order_min``/``order`` to the declared orders among ``found`` (orders holding tiles)."""
        low, high = self.declared_orders
        present = tuple(sorted({int(k) for k in found if low <= int(k) <= high}))
        if not present:
            logger.warning(
                "%s declares orders %d..%d but none of them holds tiles; every tile will read as None",
                source,
                low,
                high,
            )
            self.orders = ()
            return
        self.orders = present
        if (present[0], present[-1]) == (low, high):
            return
        if present[-1] < high or self._typed.order_min_declared:
            logger.warning(
                "%s declares orders %d..%d but only %s %s %s tiles; using %d..%d",
                source,
                low,
                high,
                "order" if len(present) == 1 else "orders",
                ", ".join(map(str, present)),
                "holds" if len(present) == 1 else "hold",
                present[0],
                present[-1],
            )
        else:
            logger.info("%s has no hips_order_min; the shallowest order holding tiles is %d", source, present[0])
        self.order_min, self.order = present[0], present[-1]

    def _probe_orders(self) -> None:
        """Find the orders holding tiles of a remote survey with a few tile requests (see the module doc)."""
        source = self._store.url_for("properties")
        low, high = self.declared_orders
        fmt = self._pick_format(None)
        need_min = not self._typed.order_min_declared
        if not need_min and self.moc is None:
            return
        try:
            shallowest = low
            if need_min:
                shallowest = next((k for k in range(low, high + 1) if self._probe_tile(k, fmt)), -1)
                if shallowest < 0:
                    logger.warning("%s: no probed tile exists at orders %d..%d; keeping them", source, low, high)
                    return
            deepest: int | None = high
            if self.moc is not None:
                deepest = next((k for k in range(high, shallowest - 1, -1) if self._probe_tile(k, fmt)), None)
            if deepest is None:
                logger.warning("%s: no probed tile exists at orders %d..%d; keeping them", source, shallowest, high)
                return
        except (FetchError, HipsmlError) as exc:
            logger.warning("%s: cannot probe which orders hold tiles (%s); keeping %d..%d", source, exc, low, high)
            return
        self._set_orders(range(shallowest, deepest + 1), source)

    def _probe_tile(self, order: int, fmt: str) -> bool:
        """Whether one tile that should exist at ``order`` (inside the MOC, else tile 0) does."""
        npix = 0 if self.moc is None else self.moc.first_tile(order)
        if npix is None:
            return False
        return self.read_tile(order, npix, fmt) is not None

    # -- pickling (e.g. to Dask workers): the copy starts with an empty memory cache -----

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = self._cache.max_bytes
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        max_bytes = state.pop("_cache")
        self.__dict__.update(state)
        self._cache = _TileCache(max_bytes)
        self._lock = threading.Lock()

    # -- bookkeeping ---------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this survey's reads (a snapshot)."""
        with self._lock:
            out = dict(self._counts)
        out["cache_bytes"] = self._cache.nbytes
        out["cache_tiles"] = len(self._cache)
        return out

    def clear_cache(self) -> None:
        """Drop every decoded tile held in memory."""
        self._cache.clear()

    def close(self) -> None:
        """Release the HTTP session of a remote survey (nothing to do for a local one).

        Later reads of tiles not in the memory cache raise :class:`~hipsml.errors.FetchError`.
        """
        self._store.close()

    def __enter__(self) -> HipsSurvey:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- validation ----------------------------------------------------------------------

    def _pick_format(self, format: str | None) -> str:
        if format is None:
            for preferred in FORMAT_PREFERENCE:
                if preferred in self.formats:
                    return preferred
            raise InvalidInputError(f"survey {self.name!r} lists no readable tile format")  # pragma: no cover
        fmt = canonical_format(format) if isinstance(format, str) else None
        if fmt is None or fmt not in self.formats:
            raise InvalidInputError(
                f"survey {self.name!r} has no {format!r} tiles; its formats are {', '.join(self.formats)}"
            )
        return fmt

    def _check_order(self, order: int) -> int:
        o = _as_int(order, "tile order")
        low, high = self.declared_orders
        if not low <= o <= high:
            raise InvalidInputError(f"tile order {order} is outside the orders {low}..{high} of survey {self.name!r}")
        return o

    @staticmethod
    def _check_npix(order: int, npix: np.ndarray) -> None:
        n = 12 * 4**order
        if npix.size and (npix.min() < 0 or npix.max() >= n):
            bad = npix[(npix < 0) | (npix >= n)][0]
            raise InvalidInputError(f"tile index {int(bad)} is outside 0..{n - 1} at order {order}")

    # -- reading -------------------------------------------------------------------------

    def _fetch(self, order: int, npix: int, fmt: str) -> np.ndarray | None:
        relpath = tile_path(order, npix, fmt)
        source = self._store.url_for(relpath)
        width, channels = self.tile_width, self.channels

        def decode(data: bytes) -> np.ndarray:
            return decode_tile(data, fmt, source=source, width=width, channels=channels)

        tile = self._store.fetch(relpath, decode)
        if tile is None:
            self._count("absent")
        else:
            tile.flags.writeable = False
            self._count("tile_reads")
        self._cache.put((order, npix, fmt), tile)
        return tile

    def read_tile(self, order: int, npix: int, format: str | None = None) -> np.ndarray | None:
        """Read one tile as a read-only float32 ``(C, W, W)`` array, or None when absent.

        Parameters
        ----------
        order : int
            Tile order, ``order_min <= order <= order``.
        npix : int
            HEALPix NESTED index of the tile at ``order``.
        format : {"fits", "png", "jpeg"}, optional
            Tile format; by default FITS when the survey has it, else PNG, else JPEG.

        Returns
        -------
        numpy.ndarray or None
            Oriented like the FITS tile (row 0 = first FITS row), blank pixels NaN.
            **None** when the tile does not exist: outside the coverage MOC (checked
            before any request), not on disk, or HTTP 404. Absence is normal in a HiPS
            and is remembered in the memory cache.

        Raises
        ------
        InvalidInputError
            ``order``, ``npix`` or ``format`` is out of range for this survey.
        TileDecodeError, FetchError
            The tile exists but is corrupt, or the server keeps failing.

        Examples
        --------
        >>> tile = survey.read_tile(3, 300)   # doctest: +SKIP
        """
        fmt = self._pick_format(format)
        o = self._check_order(order)
        p = _as_int(npix, "tile index npix")
        self._check_npix(o, np.array([p]))
        if self.moc is not None and not self.moc.contains_tile(o, p):
            self._count("moc_skips")
            return None
        hit, tile = self._cache.get((o, p, fmt))
        if hit:
            self._count("memory_hits")
            return tile
        return self._fetch(o, p, fmt)

    def read_tiles(self, order: int, npix_seq: Iterable[int], format: str | None = None) -> list[np.ndarray | None]:
        """Read many tiles of one order; same order as ``npix_seq``, None for absent tiles.

        Remote surveys fetch the missing tiles concurrently (16 threads); local ones
        read them in turn. Each distinct tile is read once even when repeated.

        Examples
        --------
        >>> tiles = survey.read_tiles(3, [299, 300, 301])   # doctest: +SKIP
        """
        fmt = self._pick_format(format)
        o = self._check_order(order)
        npix = _as_int_array(npix_seq, "npix_seq")
        self._check_npix(o, npix)
        out: list[np.ndarray | None] = [None] * npix.size
        if npix.size == 0:
            return out
        inside = np.ones(npix.size, dtype=bool) if self.moc is None else self.moc.contains_tiles(o, npix)
        if not inside.all():
            self._count("moc_skips", int((~inside).sum()))
        todo: dict[int, list[int]] = {}
        for i in np.flatnonzero(inside):
            p = int(npix[i])
            hit, tile = self._cache.get((o, p, fmt))
            if hit:
                self._count("memory_hits")
                out[i] = tile
            else:
                todo.setdefault(p, []).append(int(i))
        if not todo:
            return out
        keys = list(todo)
        if isinstance(self._store, LocalTileStore) or len(keys) == 1:
            results = [self._fetch(o, p, fmt) for p in keys]
        else:
            pool = ThreadPoolExecutor(max_workers=min(_HTTP_WORKERS, len(keys)), thread_name_prefix="hipsml-tile")
            try:
                results = list(pool.map(lambda p: self._fetch(o, p, fmt), keys))
            except BaseException:
                # one tile failed for good (or Ctrl-C): do not wait for the queued fetches
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
        for p, tile in zip(keys, results, strict=True):
            for row in todo[p]:
                out[row] = tile
        return out

    def read_allsky(self, order: int = 3, format: str | None = None) -> np.ndarray | None:
        """Read the ``Norder{order}/Allsky`` preview mosaic, split into its tiles.

        Parameters
        ----------
        order : int
            Order of the mosaic (HiPS writers make Allsky files for orders up to 3).
        format : {"fits", "png", "jpeg"}, optional
            By default the first Allsky file found, trying FITS, then PNG, then JPEG
            among the survey's formats.

        Returns
        -------
        numpy.ndarray or None
            Read-only float32 ``(12 * 4**order, C, w, w)``: entry ``i`` is tile ``i`` of
            ``order`` at low resolution (``w`` is usually 64), oriented like
            :meth:`read_tile`. None when the survey has no such Allsky file.

        Examples
        --------
        >>> allsky = survey.read_allsky(3)   # doctest: +SKIP
        >>> allsky.shape                     # doctest: +SKIP
        (768, 3, 64, 64)
        """
        o = _as_int(order, "Allsky order")
        if not 0 <= o <= self.declared_orders[1]:
            raise InvalidInputError(
                f"Allsky order {order} is outside 0..{self.declared_orders[1]} of survey {self.name!r}"
            )
        if format is not None:
            return self._read_allsky(o, self._pick_format(format))
        for fmt in FORMAT_PREFERENCE:
            if fmt in self.formats:
                tiles = self._read_allsky(o, fmt)
                if tiles is not None:
                    return tiles
        return None

    def _read_allsky(self, o: int, fmt: str) -> np.ndarray | None:
        key = ("allsky", o, fmt)
        hit, tiles = self._cache.get(key)
        if hit:
            self._count("memory_hits")
            return tiles
        relpath = f"Norder{o}/Allsky.{FORMAT_EXTENSIONS[fmt]}"
        source = self._store.url_for(relpath)
        channels = self.channels

        def decode(data: bytes) -> np.ndarray:
            mosaic = decode_tile(data, fmt, source=source, channels=channels)
            return split_allsky(mosaic, o, source=source)

        tiles = self._store.fetch(relpath, decode)
        if tiles is None:
            self._count("absent")
        else:
            tiles.flags.writeable = False
            self._count("tile_reads")
        self._cache.put(key, tiles)
        return tiles

    # -- footprint -----------------------------------------------------------------------

    def tiles_present(self, order: int, format: str | None = None) -> np.ndarray | None:
        """Sorted indices of the tiles of ``order`` that exist, for a local survey; None for a remote one.

        A local survey's tile files are listed (inside the coverage MOC when there is one); a
        remote survey's tiles cannot be listed without requesting each, so its footprint is
        known only from its MOC (:attr:`moc`).

        Examples
        --------
        >>> import hipsml
        >>> survey = hipsml.open_survey("demo-output/sky/r")  # a local survey: its files are listed
        >>> tiles = survey.tiles_present(8)
        >>> len(tiles) > 0, survey.read_tile(8, int(tiles[0])) is not None
        (True, True)
        """
        o = self._check_order(order)
        fmt = self._pick_format(format)
        if not isinstance(self._store, LocalTileStore):
            return None
        found = np.unique(np.asarray(self._store.tile_indices(o, FORMAT_EXTENSIONS[fmt]) or [], dtype=np.int64))
        found = found[(found >= 0) & (found < 12 * 4**o)]
        if self.moc is not None:
            found = found[self.moc.contains_tiles(o, found)]
        return found

    def _listed_footprint(self) -> tuple[int, np.ndarray] | None:
        """``(order, tiles)`` of the deepest order of a local survey cheap enough to list, or None."""
        if not isinstance(self._store, LocalTileStore):
            return None
        ext = FORMAT_EXTENSIONS[self._pick_format(None)]
        for order in sorted(self.orders or (), reverse=True):
            found = self._store.tile_indices(order, ext, max_dirs=_LIST_MAX_DIRS)
            if found:
                return order, np.unique(np.asarray(found, dtype=np.int64))
        return None

    def _coverage_lines(self) -> list[str]:
        """The ``coverage:`` lines of :meth:`summary`: the MOC, else the tiles present, else why unknown."""
        if self.moc is not None:
            return [f"coverage:    {self.moc.sky_fraction * 100:.3g}% of the sky ({len(self.moc)} ranges, Moc.fits)"]
        listed = self._listed_footprint()
        if listed is None:
            if isinstance(self._store, LocalTileStore):
                return ["coverage:    no Moc.fits and no tile files found: this folder holds no tiles"]
            return [
                "coverage:    unknown: no Moc.fits, and a remote survey's tiles cannot be listed; ask the archive "
                "for its MOC (moc_access_url), or copy the tiles locally and run survey info on the copy "
                "(it lists the tiles present)"
            ]
        order, tiles = listed
        area = tiles.size / (12 * 4**order) * _SKY_DEG2
        lon0, lon1, lat0, lat1 = lonlat_bounds(order, tiles)
        lon, lat = ("l", "b") if self.frame == "galactic" else ("RA", "Dec")
        across = " (across 0)" if lon0 > lon1 else ""
        return [
            f"coverage:    no Moc.fits; {tiles.size:,} order-{order} tiles present: {area:.4g} deg² "
            f"({area / _SKY_DEG2 * 100:.3g}% of the sky)",
            f"             {lon} {lon0:.4f} .. {lon1:.4f}{across}, {lat} {lat0:.4f} .. {lat1:.4f} ({self.frame})",
        ]

    # -- description ---------------------------------------------------------------------

    def summary(self) -> str:
        """Multi-line description of the survey (used by ``hipsml survey info``)."""
        p = self.properties
        cut = "-" if self.pixel_cut is None else f"{self.pixel_cut[0]:g} .. {self.pixel_cut[1]:g}"
        lines = [
            f"name:        {self.name}",
            f"location:    {self.location}",
            f"id:          {p.get('creator_did') or p.get('publisher_did') or '-'}",
            f"frame:       {self.frame}",
            f"orders:      {self.order_min}..{self.order}{self._declared_note()}",
            f"tile width:  {self.tile_width}",
            f"formats:     {' '.join(self.formats)}",
            f"channels:    {self.channels}{' (colour)' if self.channels == 3 else ''}",
            f"bitpix:      {'-' if self.bitpix is None else self.bitpix}",
            f"pixel cut:   {cut}",
            *self._coverage_lines(),
        ]
        return "\n".join(lines)

    def _declared_note(self) -> str:
        if (self.order_min, self.order) == self.declared_orders:
            return ""
        return f" (holding tiles; the properties say {self.declared_orders[0]}..{self.declared_orders[1]})"

    def __repr__(self) -> str:
        return (
            f"HipsSurvey(name={self.name!r}, location={self.location!r}, order={self.order}, "
            f"frame={self.frame!r}, tile_width={self.tile_width}, formats={self.formats!r})"
        )


def _same_origin(url: str, base: str) -> bool:
    """Whether ``url`` has the scheme, host and port of ``base`` (both normalised)."""
    from hipsml.hips._http import normalise_base_url

    try:
        a = urlsplit(normalise_base_url(url))
    except InvalidLocationError:
        return False
    b = urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _load_moc(store: TileStore, props: dict[str, str], http_options: dict[str, Any], *, any_host: bool) -> Moc | None:
    """The coverage MOC: ``Moc.fits`` beside ``properties``, else (remote surveys only) the
    file named by ``moc_access_url`` when it is on the survey's own origin or ``any_host``.
    None when there is none or it is broken (logged)."""
    source = store.url_for("Moc.fits")
    try:
        moc = store.fetch("Moc.fits", lambda data: Moc.from_fits(data, source=source))
        url = props.get("moc_access_url", "").strip()
        if moc is None and url.lower().startswith(("http://", "https://")) and not isinstance(store, LocalTileStore):
            # a remote survey whose MOC lives elsewhere; a local mirror never goes online for it
            parent, _, name = url.rpartition("/")
            if name != "Moc.fits" or parent.rstrip("/") == store.location.rstrip("/"):
                pass
            elif not (any_host or _same_origin(parent, store.location)):
                logger.info(
                    "not following moc_access_url %s: it is not on the survey's host %s"
                    " (pass moc_any_host=True to open_survey to allow it)",
                    url,
                    store.location,
                )
            else:
                from hipsml.hips._http import HttpTileStore

                with HttpTileStore(parent, **http_options) as moc_store:
                    moc = moc_store.fetch("Moc.fits", lambda data: Moc.from_fits(data, source=url))
    except (HipsmlError, OSError) as exc:
        logger.warning("ignoring the coverage MOC of %s: %s", store.location, exc)
        return None
    if moc is None:
        logger.info("%s has no Moc.fits; every tile will be requested", store.location)
    else:
        logger.info("coverage MOC of %s: %r", store.location, moc)
    return moc


def _check_options(http_options: dict[str, Any], location: object) -> None:
    """Reject misspelled ``open_survey`` options (for local and remote surveys alike)."""
    for key in http_options:
        if key not in HTTP_OPTIONS:
            known = ("memory_cache_bytes", "moc_any_host", *HTTP_OPTIONS)
            hint = did_you_mean(key, known, otherwise="; the options are {names}")
            raise InvalidInputError(f"open_survey() got an unknown option {key!r} for {location!r}{hint}")


def open_survey(
    location: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None | Literal[False] = None,
    memory_cache_bytes: int = 512 * 2**20,
    moc_any_host: bool = False,
    **http_options: Any,
) -> HipsSurvey:
    """Open a HiPS image survey for reading.

    Parameters
    ----------
    location : str or path-like
        Local directory, ``file://`` URL or ``http(s)://`` URL of the survey root
        (the directory holding ``properties``). ``~`` and ``~user`` are expanded.
    cache_dir : str, path-like or False, optional
        Disk cache for a remote survey's files (ignored for local surveys); None
        means the HTTP store's default (``$HIPSML_CACHE_DIR`` or ``~/.cache/hipsml``),
        False disables it.
    memory_cache_bytes : int
        Bound on the decoded tiles kept in memory (LRU), default 512 MiB.
    moc_any_host : bool
        Follow a remote survey's ``moc_access_url`` even when it points at another host
        (by default only the survey's own scheme, host and port are contacted).
    **http_options
        Passed to the HTTP store: ``max_connections_per_host``, ``retries``, ``backoff``,
        ``max_backoff``, ``timeout``, ``deadline``, ``max_total_time``, ``verify`` (see
        :class:`hipsml.hips._http.HttpTileStore`). Unknown names are refused, for local
        surveys too, with a "did you mean" hint.

    Returns
    -------
    HipsSurvey
        Also a context manager that closes the HTTP session on exit.

    Raises
    ------
    InvalidLocationError
        Unsupported scheme (``ftp://`` ...) or malformed location (``http://[::1/x``).
    InvalidInputError
        Unknown or ill-typed option, or ``~user`` naming no user.
    SurveyNotFoundError
        No directory, or no ``properties`` file, at ``location``.
    PropertiesError
        The ``properties`` file is malformed or lacks ``hips_order``.
    InputFileError
        A local ``properties`` is not a regular file (a FIFO, a device) or is too large.

    Examples
    --------
    >>> with open_survey("https://alasky.cds.unistra.fr/DSS/DSS2Merged") as survey:  # doctest: +SKIP
    ...     print(survey.frame, survey.order, survey.formats)
    icrs 9 ('fits', 'jpeg')
    """
    _check_options(http_options, location)
    check_http_options(cache_dir=cache_dir, **http_options)  # values too, for local surveys as well
    if not isinstance(moc_any_host, bool):
        raise InvalidInputError(f"moc_any_host must be True or False, got {moc_any_host!r}")
    _TileCache(memory_cache_bytes)  # validates it before any I/O
    if cache_dir is not None:
        http_options["cache_dir"] = cache_dir
    store = open_store(location, **http_options)
    try:
        source = store.url_for("properties")
        props = store.fetch("properties", lambda data: parse_properties(data, source=source))
        if props is None:
            raise SurveyNotFoundError(f"no HiPS at {store.location}: there is no properties file ({source})")
        moc = _load_moc(store, props, http_options, any_host=moc_any_host)
        local = isinstance(store, LocalTileStore)
        survey = HipsSurvey(
            store,
            props,
            moc=moc,
            memory_cache_bytes=memory_cache_bytes,
            orders=store.tile_orders() if isinstance(store, LocalTileStore) else None,
        )
        if not local:
            survey._probe_orders()
    except BaseException:
        store.close()
        raise
    logger.info("opened %r", survey)
    return survey
