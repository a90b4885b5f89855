"""The public cutout function: many targets, one or several surveys, batched by tile."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import healpy as hp
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from hipsml.errors import InvalidInputError
from hipsml.extract._geometry import (
    cutout_wcs,
    frame_matrix,
    healpix_cell_size_arcsec,
    pixel_grid_vectors,
    target_bases,
    _check_projection,
)
from hipsml.extract._kernels import (
    BICUBIC,
    BILINEAR,
    NEAREST,
    cutout_kernel,
    npix_to_tile_keys,
    tile_keys_to_npix,
)
from hipsml.hips._healpix import log2_width

__all__ = ["cutouts", "CutoutResult", "choose_order", "INTERPOLATIONS"]

logger = logging.getLogger(__name__)

INTERPOLATIONS = {"nearest": NEAREST, "bilinear": BILINEAR, "bicubic": BICUBIC}

#: targets per batch: a batch's tiles are loaded before its kernel runs
_TARGETS_PER_BATCH = 4096


@dataclass(frozen=True)
class CutoutResult:
    """Cutouts around many targets, with their coverage mask and geometry.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, C, size, size)`` float32; NaN where blank or not covered.
    mask : numpy.ndarray
        ``(N, C, size, size)`` bool; True where the pixel holds survey data.
    ra, dec : numpy.ndarray
        ICRS centres of the cutouts, degrees.
    rotation : numpy.ndarray
        Rotation of each cutout, degrees.
    size : int
    pixel_scale : float
        Arcseconds per pixel.
    projection : str
    interpolation : str
    orders : tuple of int
        HiPS order read from each survey.
    channels : tuple of str
        Survey name and channel of each output channel.
    surveys : tuple of str
        Location of each survey.
    tiles_read : int
        Tile reads made during the call, absent tiles included (each tile once while the
        call's tiles fit in ``memory_limit``).

    Unpacks as ``images, mask = result``.
    """

    images: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    rotation: np.ndarray
    size: int
    pixel_scale: float
    projection: str
    interpolation: str
    orders: tuple[int, ...]
    channels: tuple[str, ...]
    surveys: tuple[str, ...] = field(default=())
    tiles_read: int = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    @cached_property
    def mask(self) -> np.ndarray:
        """``(N, C, size, size)`` bool: True where the pixel holds survey data (not NaN)."""
        return np.isfinite(self.images)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.images, self.mask))

    def wcs(self, index: int) -> WCS:
        """The astropy WCS of cutout ``index`` (see :func:`hipsml.cutout_wcs`)."""
        return cutout_wcs(
            float(self.ra[index]),
            float(self.dec[index]),
            size=self.size,
            pixel_scale=self.pixel_scale,
            projection=self.projection,
            rotation=float(self.rotation[index]),
        )


def _normalise_coords(coords: Any) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) degree arrays from a SkyCoord or a pair of arrays/Quantities."""
    if isinstance(coords, SkyCoord):
        icrs = coords.icrs
        ra = np.atleast_1d(icrs.ra.deg).astype(np.float64).ravel()
        dec = np.atleast_1d(icrs.dec.deg).astype(np.float64).ravel()
    else:
        try:
            ra_in, dec_in = coords
        except (TypeError, ValueError):
            raise InvalidInputError(
                "coords must be a SkyCoord or a pair (ra, dec) of ICRS degree arrays"
            ) from None
        try:
            ra = np.atleast_1d(ra_in.to_value(u.deg) if isinstance(ra_in, u.Quantity) else ra_in)
            dec = np.atleast_1d(dec_in.to_value(u.deg) if isinstance(dec_in, u.Quantity) else dec_in)
        except (u.UnitConversionError, TypeError):
            raise InvalidInputError("coords (ra, dec) must be degrees or angle Quantities") from None
        try:
            ra = np.asarray(ra, dtype=np.float64).ravel()
            dec = np.asarray(dec, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise InvalidInputError("coords (ra, dec) must be numeric degree arrays") from None
        if ra.shape != dec.shape:
            raise InvalidInputError(f"ra and dec differ in length: {ra.size} vs {dec.size}")
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(f"target {i} has an invalid position (ra={float(ra[i])!r}, dec={float(dec[i])!r})")
    return np.mod(ra, 360.0), dec


def _arcsec(value: Any, name: str) -> float:
    if isinstance(value, u.Quantity):
        try:
            value = value.to_value(u.arcsec)
        except u.UnitConversionError:
            raise InvalidInputError(f"{name} must be an angle, got {value}") from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number of arcsec, got {value!r}") from None
    if not np.isfinite(out) or out <= 0:
        raise InvalidInputError(f"{name} must be positive, got {value!r}")
    return out


def choose_order(survey: Any, pixel_scale_arcsec: float) -> int:
    """The coarsest HiPS order whose cells are no larger than the output pixel.

    Clamped to the survey's ``order_min .. order`` (as hips2fits does).
    """
    s = log2_width(survey.tile_width)
    for k in range(survey.order_min, survey.order + 1):
        if healpix_cell_size_arcsec(k + s) <= pixel_scale_arcsec:
            return k
    return survey.order


class _TileSlab:
    """Decoded tiles of a group of surveys (same frame, order, width) held for one call.

    The slab is one array ``(capacity, W, W, C)`` that the kernel indexes; ``C`` stacks
    the channels of every survey in the group, so a tile key maps to one slot whatever the
    number of surveys (a tile absent from one survey is NaN in its channels). Each tile is
    read once per call while the tiles fit in ``max_bytes``; past that the slab is emptied
    between batches (targets are visited in sky order, so little is read twice).
    """

    def __init__(self, members: list[Any], order: int, max_bytes: int) -> None:
        self.members = members
        self.order = order
        w = members[0].tile_width
        self.nch = sum(sv.channels for sv in members)
        self.tile_shape = (w, w, self.nch)  # channel-last: a stencil's channels share cache lines
        self.max_tiles = max(64, int(max_bytes // (4 * self.nch * w * w)))
        # slot 0 stays all-NaN: the kernel points columns without a tile into it
        self.slab = np.full((1, *self.tile_shape), np.nan, dtype=np.float32)
        self.slot_of: dict[int, int] = {}  # key -> slot, -1 when absent from every survey
        self.used = 1
        self.tiles_read = 0
        self._table: tuple[np.ndarray, np.ndarray] | None = None

    def trim(self) -> None:
        """Empty the slab when over half full (between batches only).

        A batch brings at most about half the budget in new tiles (see ``_plan_batches``), so
        the slab then never grows past its budget.
        """
        if self.used > self.max_tiles // 2:
            self.slot_of.clear()
            self.used = 1
            self._table = None
        if self.slab.shape[0] > self.max_tiles + 1:
            # a batch needed more than the budget: give the memory back
            self.slab = np.full((1, *self.tile_shape), np.nan, dtype=np.float32)

    def ensure(self, keys: np.ndarray) -> None:
        """Load every tile of ``keys`` (packed tile keys) that is not loaded yet."""
        missing = np.setdiff1d(np.unique(keys), np.fromiter(self.slot_of, dtype=np.int64))
        if missing.size == 0:
            return
        npix = tile_keys_to_npix(missing, self.order).tolist()
        per_survey = [sv.read_tiles(self.order, npix) for sv in self.members]
        self.tiles_read += missing.size
        present = [any(tiles[i] is not None for tiles in per_survey) for i in range(missing.size)]
        need = self.used + sum(present)
        if need > self.slab.shape[0]:
            # grow once to the budget (pages are only committed as tiles are written)
            capacity = max(need, self.max_tiles + 1)
            bigger = np.empty((capacity, *self.tile_shape), dtype=np.float32)
            bigger[: self.used] = self.slab[: self.used]
            self.slab = bigger
        for i, key in enumerate(missing.tolist()):
            if not present[i]:
                self.slot_of[key] = -1
                continue
            slot = self.used
            self.used += 1
            c = 0
            for sv, tiles in zip(self.members, per_survey):
                tile = tiles[i]
                if tile is None:
                    self.slab[slot, :, :, c : c + sv.channels] = np.nan
                else:
                    self.slab[slot, :, :, c : c + sv.channels] = np.moveaxis(tile, 0, -1)
                c += sv.channels
            self.slot_of[key] = slot
        self._table = None

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted loaded keys and their slots, as the kernel wants them."""
        if self._table is None:
            keys = np.fromiter(self.slot_of, dtype=np.int64, count=len(self.slot_of))
            slots = np.fromiter(self.slot_of.values(), dtype=np.int64, count=len(self.slot_of))
            order = np.argsort(keys)
            self._table = (keys[order], slots[order])
        return self._table


def _plan_batches(visit: np.ndarray, bases_icrs: np.ndarray, groups: list, size: int) -> list[np.ndarray]:
    """Split the visiting order into batches of at most ``_TARGETS_PER_BATCH`` targets whose
    tiles fit each group's memory budget.

    Targets come in NESTED order, so the tile under each target's centre changes in runs; a
    batch takes at most an eighth of the budget in such runs (a cutout touches a few tiles,
    and neighbouring runs share most of them).
    """
    n = visit.size
    runs = np.zeros(n, dtype=np.int64)
    limit = None
    for frame, korder, _width, _chan_out, slab in groups:
        centre = np.einsum("ij,nj->ni", frame_matrix(frame), bases_icrs[visit, :, 0])
        keys = hp.vec2pix(1 << korder, centre[:, 0], centre[:, 1], centre[:, 2], nest=True)
        change = np.empty(n, dtype=np.int64)
        change[:1] = 0
        change[1:] = keys[1:] != keys[:-1]
        runs = np.maximum(runs, np.cumsum(change))
        per_batch = max(1, slab.max_tiles // 8)
        limit = per_batch if limit is None else min(limit, per_batch)
    batch_of = np.maximum(runs // max(limit or 1, 1), np.arange(n) // _TARGETS_PER_BATCH)
    # batch_of is non-decreasing: split where it changes
    cuts = np.flatnonzero(np.diff(batch_of)) + 1
    return np.split(visit, cuts)


def cutouts(
    surveys: Any,
    coords: Any,
    *,
    size: int = 64,
    pixel_scale: Any = None,
    fov: Any = None,
    projection: str = "TAN",
    rotation: Any = 0.0,
    interpolation: str = "bilinear",
    order: int | str | Sequence[int] = "auto",
    memory_limit: int = 1 << 30,
    progress: bool = False,
) -> CutoutResult:
    """Cut images around many targets out of one or several HiPS surveys.

    Pixel ``(row, col)`` of cutout ``n`` is the survey's value at the sky position of that
    pixel's centre for the WCS of :func:`cutout_wcs` (north up, east left, row 0 south).
    Work is grouped by tile: each tile is read once per call, whatever the number of
    cutouts touching it, and surveys with the same frame, order and tile width share the
    geometry work.

    Parameters
    ----------
    surveys : HipsSurvey or sequence of HipsSurvey
        Opened surveys (:func:`hipsml.open_survey`); their channels are concatenated in order.
    coords : SkyCoord or (ra, dec)
        Targets; a pair of arrays is taken as ICRS degrees (Quantities accepted). Note that
        ``[[ra0, ra1], [dec0, dec1]]`` is such a pair: pass ``(ra, dec)``, never a list of
        ``(ra, dec)`` tuples.
    size : int
        Cutout width and height, pixels.
    pixel_scale : float or Quantity, optional
        Arcsec per pixel. Default: ``fov / size``, or the first survey's finest cell size.
    fov : float or Quantity, optional
        Field of view (arcsec when a float), the alternative to ``pixel_scale``.
    projection : {"TAN", "SIN"}
        Gnomonic (default) or orthographic.
    rotation : float, array or Quantity
        Rotation of the cutouts, degrees (or an angle Quantity), one value or one per target.
    interpolation : {"bilinear", "nearest", "bicubic"}
        ``nearest`` takes the HEALPix cell containing the pixel centre; ``bilinear``
        interpolates in the HEALPix grid, continuously across tile and face edges;
        ``bicubic`` (Catmull-Rom) uses 4x4 cells within a base face, and bilinear within two
        cells of a base-face edge or next to blank cells.
    order : "auto", int or sequence of int
        HiPS order to read; ``"auto"`` picks the coarsest order whose cells are no larger
        than the output pixel (logged at INFO), clamped to each survey's orders.
    memory_limit : int
        Bytes of decoded tiles held during the call for each group of surveys sharing frame,
        order and tile width (the surveys' own memory caches come on top).
    progress : bool
        Show a progress bar.

    Returns
    -------
    CutoutResult
        ``images`` (N, C, size, size) float32 with NaN where uncovered, and ``mask``.

    Examples
    --------
    >>> import hipsml  # doctest: +SKIP
    >>> survey = hipsml.open_survey("demo-output/sky/r")  # doctest: +SKIP
    >>> images, mask = hipsml.cutouts(survey, ([150.0], [2.0]), size=64, pixel_scale=3.0)  # doctest: +SKIP
    >>> images.shape  # doctest: +SKIP
    (1, 1, 64, 64)
    """
    survey_list = list(surveys) if isinstance(surveys, (list, tuple)) else [surveys]
    if not survey_list:
        raise InvalidInputError("cutouts needs at least one survey")
    for sv in survey_list:
        if not (hasattr(sv, "read_tiles") and hasattr(sv, "tile_width")):
            raise InvalidInputError(f"{sv!r} is not an opened survey; use hipsml.open_survey(location)")
        if sv.tile_width < (4 if interpolation == "bicubic" else 2):
            raise InvalidInputError(
                f"{sv.name}: tiles {sv.tile_width} pixel wide are too small for {interpolation} interpolation"
            )
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, np.integer)) or memory_limit <= 0:
        raise InvalidInputError(f"memory_limit must be a positive number of bytes, got {memory_limit!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InvalidInputError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    proj = _check_projection(projection)
    if interpolation not in INTERPOLATIONS:
        raise InvalidInputError(
            f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}"
        )
    mode = INTERPOLATIONS[interpolation]
    ra, dec = _normalise_coords(coords)
    n = ra.size
    try:
        rot = np.asarray(rotation.to_value(u.deg) if isinstance(rotation, u.Quantity) else rotation, dtype=np.float64)
    except (TypeError, ValueError, u.UnitConversionError):
        raise InvalidInputError(f"rotation must be an angle in degrees (or a Quantity), got {rotation!r}") from None
    if rot.ndim == 0:
        rot = np.full(n, float(rot))
    elif rot.shape != (n,):
        raise InvalidInputError(f"rotation must be a number or one value per target ({n}), got shape {rot.shape}")
    if not np.all(np.isfinite(rot)):
        raise InvalidInputError("rotation must be finite")

    if pixel_scale is not None and fov is not None:
        raise InvalidInputError("give pixel_scale or fov, not both")
    if pixel_scale is not None:
        scale = _arcsec(pixel_scale, "pixel_scale")
    elif fov is not None:
        scale = _arcsec(fov, "fov") / size
    else:
        first = survey_list[0]
        scale = healpix_cell_size_arcsec(first.order + log2_width(first.tile_width))
        logger.info("pixel_scale not given: using %.4g arcsec (the finest cells of %s)", scale, first.name)

    if isinstance(order, str):
        if order != "auto":
            raise InvalidInputError(f"order must be 'auto' or an integer, got {order!r}")
        orders = [choose_order(sv, scale) for sv in survey_list]
        for sv, k in zip(survey_list, orders):
            logger.info("HiPS order %d chosen for %s (pixel %.4g arcsec)", k, sv.name, scale)
    else:
        try:
            raw = [order] * len(survey_list) if np.ndim(order) == 0 else list(order)
            if any(isinstance(k, bool) or int(k) != k for k in raw):
                raise ValueError
            orders = [int(k) for k in raw]
        except (TypeError, ValueError):
            raise InvalidInputError(f"order must be 'auto', an integer or one integer per survey, got {order!r}") from None
        if len(orders) != len(survey_list):
            raise InvalidInputError(f"order gives {len(orders)} values for {len(survey_list)} surveys")
        for sv, k in zip(survey_list, orders):
            if not sv.order_min <= k <= sv.order:
                raise InvalidInputError(f"order {k} is outside {sv.name}'s orders {sv.order_min}..{sv.order}")

    channels: list[str] = []
    for sv in survey_list:
        channels += [sv.name] if sv.channels == 1 else [f"{sv.name}[{c}]" for c in range(sv.channels)]
    ctot = len(channels)
    npx = size * size
    try:
        images = np.empty((n, ctot, npx), dtype=np.float32)
    except (MemoryError, ValueError):
        gib = n * ctot * npx * 4 / 2**30
        raise InvalidInputError(
            f"{n} cutouts of {ctot} x {size} x {size} need {gib:.1f} GiB, more than this machine can hold; "
            "cut fewer targets per call (the dataset builder batches them)"
        ) from None

    # surveys sharing frame, order and tile width share the geometry and one tile slab;
    # chan_out maps each slab channel to its output channel
    grouped: dict[tuple[str, int, int], list[tuple[int, Any]]] = {}
    c0 = 0
    for sv, k in zip(survey_list, orders):
        grouped.setdefault((sv.frame, k, sv.tile_width), []).append((c0, sv))
        c0 += sv.channels
    groups = []
    for (frame, korder, width), members in grouped.items():
        chan_out = np.concatenate([np.arange(c, c + sv.channels) for c, sv in members]).astype(np.int64)
        groups.append((frame, korder, width, chan_out, _TileSlab([sv for _, sv in members], korder, memory_limit)))

    try:
        grid = pixel_grid_vectors(size, scale, proj)
    except (MemoryError, ValueError):
        raise InvalidInputError(f"a {size} x {size} cutout is too large for this machine's memory") from None
    gx, gy, gz = (np.ascontiguousarray(grid[:, i]) for i in range(3))
    half = size // 2
    probe_pixels = np.array([half * size + half, 0, size - 1, npx - size, npx - 1])  # centre, corners
    bases_icrs = target_bases(ra, dec, rot)
    # visit targets in NESTED order so consecutive batches share tiles
    visit = np.argsort(hp.ang2pix(1 << 12, ra, dec, lonlat=True, nest=True), kind="stable")

    batches = _plan_batches(visit, bases_icrs, groups, size)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="cutout", desc="cutouts")
    try:
        for idx in batches:
            for frame, korder, width, chan_out, slab in groups:
                s = log2_width(width)
                nside_cells = 1 << (korder + s)
                bases = np.ascontiguousarray(np.matmul(frame_matrix(frame), bases_icrs[idx]))
                slab.trim()
                # prefetch the tiles under the centres and corners; any other tile a
                # stencil needs is reported by the kernel and its target run again
                probe = np.einsum("nij,pj->npi", bases, grid[probe_pixels])
                under = hp.vec2pix(1 << korder, probe[..., 0], probe[..., 1], probe[..., 2], nest=True)
                slab.ensure(npix_to_tile_keys(under.ravel(), korder))
                pending = np.arange(idx.size)
                while pending.size:
                    keys, slots = slab.table()
                    failed = np.zeros(pending.size, dtype=bool)
                    missing = cutout_kernel(
                        bases[pending], gx, gy, gz, size, nside_cells, s, korder, mode,
                        keys, slots, slab.slab, idx[pending], chan_out, images, failed,
                    )
                    if missing.size == 0:
                        break
                    slab.ensure(missing)
                    pending = pending[failed]
            if bar is not None:
                bar.update(idx.size)
    finally:
        if bar is not None:
            bar.close()

    images = images.reshape(n, ctot, size, size)
    for frame, korder, width, chan_out, slab in groups:
        logger.debug("%d tiles read at order %d for %d cutouts", slab.tiles_read, korder, n)
    return CutoutResult(
        images=images,
        ra=ra,
        dec=dec,
        rotation=rot,
        size=size,
        pixel_scale=scale,
        projection=proj,
        interpolation=interpolation,
        orders=tuple(orders),
        channels=tuple(channels),
        surveys=tuple(sv.location for sv in survey_list),
        tiles_read=sum(slab.tiles_read for *_, slab in groups),
    )
