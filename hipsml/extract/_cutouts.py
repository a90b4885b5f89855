"""The cutout engine's public pieces: a validated spec, a pure planner, a unit extractor.

:func:`cutouts` is their composition::

    spec = CutoutSpec.for_surveys(surveys, size=64, pixel_scale=1.8)   # validate once
    units = plan_work_units(ra, dec, spec, surveys)                    # pure: NESTED order, by tile
    for unit in units:
        extract_unit(surveys, spec, unit, out=block)                   # fill a preallocated block

The dataset builder runs the same pieces as Dask tasks: a :class:`WorkUnit` is small and
picklable, and :func:`extract_unit` accepts :class:`~hipsml.extract.SurveyRef` descriptions,
which each worker process opens once and shares between its tasks.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, TypeAlias

import healpy as hp
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS
from numpy.typing import ArrayLike

from hipsml.errors import IndexOutOfRangeError, InvalidInputError
from hipsml.extract._geometry import (
    PROJECTIONS,
    check_field_of_view,
    check_pixel_scale,
    check_rotation,
    check_size,
    check_sky_position,
    cutout_wcs,
    frame_matrix,
    healpix_cell_size_arcsec,
    pixel_grid_vectors,
    target_bases,
)
from hipsml.extract._kernels import (
    BICUBIC,
    BILINEAR,
    NEAREST,
    cutout_kernel,
    npix_to_tile_keys,
    tile_keys_to_npix,
)
from hipsml.extract._surveys import SurveyRef, resolve_surveys
from hipsml.hips import HipsSurvey, log2_width

__all__ = [
    "cutouts",
    "CutoutResult",
    "CutoutSpec",
    "WorkUnit",
    "plan_work_units",
    "extract_unit",
    "UnitExtractor",
    "choose_order",
    "INTERPOLATIONS",
]

logger = logging.getLogger(__name__)

INTERPOLATIONS = {"nearest": NEAREST, "bilinear": BILINEAR, "bicubic": BICUBIC}

#: targets per work unit by default: a unit's tiles are loaded before its kernel runs
DEFAULT_TARGETS_PER_UNIT = 4096

#: NESTED order of the visiting sort (cells of ~52 arcsec: finer than any tile)
VISIT_ORDER = 12


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

    Unpacks as ``images, mask = result`` (so it is not a sequence of cutouts: use
    ``len(result.images)`` for their number). Indexing picks cutouts along the first axis, as
    numpy does: ``result[i]`` is the ``(image, mask)`` pair of cutout ``i``, each ``(C, size,
    size)`` (negative ``i`` counts from the end); ``result[a:b]`` is a ``CutoutResult`` of those
    cutouts (which unpacks the same way). An index out of range raises
    :class:`~hipsml.errors.IndexOutOfRangeError` (an ``IndexError``).

    Examples
    --------
    >>> import hipsml
    >>> result = hipsml.cutouts("demo-output/sky/r", ([150.0, 150.01, 149.99], [2.0, 2.0, 2.01]), size=64,
    ...                         pixel_scale=3.0)
    >>> image, mask = result[0]
    >>> image.shape, bool(np.array_equal(image, result.images[0]))
    ((1, 64, 64), True)
    >>> result[-2:].images.shape
    (2, 1, 64, 64)
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

    @cached_property
    def mask(self) -> np.ndarray:
        """``(N, C, size, size)`` bool: True where the pixel holds survey data (not NaN)."""
        return np.isfinite(self.images)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.images, self.mask))

    def __getitem__(self, index: int | slice) -> tuple[np.ndarray, np.ndarray] | CutoutResult:
        """Cutout ``index`` as ``(image, mask)``, or a slice of cutouts as a ``CutoutResult``."""
        if isinstance(index, slice):
            rows = np.arange(self.images.shape[0])[index]
            return replace(self, images=self.images[rows], ra=self.ra[rows], dec=self.dec[rows],
                           rotation=self.rotation[rows])  # fmt: skip
        i = _check_index(index, self.images.shape[0])
        return self.images[i], self.mask[i]

    def wcs(self, index: int) -> WCS:
        """The astropy WCS of cutout ``index`` (see :func:`hipsml.cutout_wcs`)."""
        index = _check_index(index, self.images.shape[0])
        return cutout_wcs(
            float(self.ra[index]),
            float(self.dec[index]),
            size=self.size,
            pixel_scale=self.pixel_scale,
            projection=self.projection,
            rotation=float(self.rotation[index]),
        )


def _check_index(index: Any, n: int) -> int:
    """``index`` as a Python int in ``[0, n)`` (negative counts from the end)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise InvalidInputError(f"cutout index must be an integer or a slice, got {index!r}")
    i = int(index)
    if not -n <= i < n:
        raise IndexOutOfRangeError(f"cutout index {i} is out of range for {n} cutouts")
    return i % n


def normalise_coords(coords: Any) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) degree arrays (RA in [0, 360)) from a SkyCoord or a pair of arrays/Quantities.

    Raises
    ------
    InvalidInputError
        Not a SkyCoord or pair; lengths differ; a position is not finite, |dec| > 90 or
        |ra| > 1e6 (the message names the first bad target).
    """
    if isinstance(coords, SkyCoord):
        icrs = coords.icrs
        ra = np.atleast_1d(icrs.ra.deg).astype(np.float64).ravel()
        dec = np.atleast_1d(icrs.dec.deg).astype(np.float64).ravel()
    else:
        try:
            ra_in, dec_in = coords
        except (TypeError, ValueError):
            raise InvalidInputError("coords must be a SkyCoord or a pair (ra, dec) of ICRS degree arrays") from None
        ra_arr, dec_arr = check_sky_position(ra_in, dec_in)
        ra, dec = np.atleast_1d(ra_arr).ravel(), np.atleast_1d(dec_arr).ravel()
        if ra.shape != dec.shape:
            raise InvalidInputError(f"ra and dec differ in length: {ra.size} vs {dec.size}")
    return np.mod(ra, 360.0), dec


def normalise_rotation(rotation: Any, n: int) -> np.ndarray:
    """Per-target rotation in degrees (one value broadcast, or one per target), finite and below 1e6."""
    rot = check_rotation(rotation)
    if rot.ndim == 0:
        return np.full(n, float(rot))
    rot = rot.ravel()
    if rot.shape != (n,):
        raise InvalidInputError(f"rotation must be a number or one value per target ({n}), got {rot.size} values")
    return rot


def _arcsec(value: Any, name: str) -> float:
    if isinstance(value, u.Quantity):
        try:
            value = value.to_value(u.arcsec)
        except u.UnitConversionError:
            raise InvalidInputError(f"{name} must be an angle, got {value}") from None
    if isinstance(value, (bool, complex, np.complexfloating)):
        raise InvalidInputError(f"{name} must be a number of arcsec, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number of arcsec, got {value!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise InvalidInputError(f"{name} must be a positive number of arcsec, got {value!r}")
    return out


def choose_order(survey: Any, pixel_scale_arcsec: float) -> int:
    """The coarsest HiPS order whose cells are no larger than the output pixel.

    Clamped to the survey's ``order_min .. order`` (as hips2fits does), and only among the
    orders that hold tiles when the survey knows them (``survey.orders``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> survey = SimpleNamespace(order_min=3, order=9, tile_width=512)
    >>> choose_order(survey, 2.0), choose_order(survey, 60.0), choose_order(survey, 1e-3)
    (8, 3, 9)
    """
    s = log2_width(survey.tile_width)
    present = getattr(survey, "orders", None)  # orders that hold tiles, when the survey knows them
    candidates = sorted(present) if present else range(survey.order_min, survey.order + 1)
    for k in candidates:
        if healpix_cell_size_arcsec(k + s) <= pixel_scale_arcsec:
            return k
    return max(candidates)


def _survey_list(surveys: Any) -> list[Any]:
    """Opened surveys (SurveyRef descriptions are opened through the per-process cache)."""
    survey_list = resolve_surveys(surveys)
    if not survey_list:
        raise InvalidInputError("cutouts need at least one survey")
    for sv in survey_list:
        if not (hasattr(sv, "read_tiles") and hasattr(sv, "tile_width")):
            raise InvalidInputError(
                f"{sv!r} is not a survey: give a HipsSurvey (hipsml.open_survey), or a folder or URL of one"
            )
    return survey_list


@dataclass(frozen=True)
class CutoutSpec:
    """A validated, immutable description of the cutouts to cut (build it once, at the boundary).

    Parameters
    ----------
    size : int
        Width and height, pixels.
    pixel_scale : float
        Arcsec per pixel.
    orders : tuple of int
        HiPS order read from each survey, in survey order.
    projection : {"TAN", "SIN"}
    interpolation : {"bilinear", "nearest", "bicubic"}
    rotation : float or str
        Rotation of every cutout in degrees, or the name of a targets column holding one
        rotation per target (dataset recipes); the per-target values then travel in the
        :class:`WorkUnit`.
    memory_limit : int
        Bytes of decoded tiles held by one :func:`extract_unit` call per group of surveys.

    Use :meth:`for_surveys` to pick ``pixel_scale`` and ``orders`` from opened surveys.

    Examples
    --------
    >>> spec = CutoutSpec(size=64, pixel_scale=1.8, orders=(9,))
    >>> spec.fov_deg
    0.032
    """

    size: int
    pixel_scale: float
    orders: tuple[int, ...]
    projection: str = "TAN"
    interpolation: str = "bilinear"
    rotation: float | str = 0.0
    memory_limit: int = 1 << 30

    def __post_init__(self) -> None:
        size = check_size(self.size)
        if size > 16384:
            raise InvalidInputError(f"size {size} is too large: cutouts are at most 16384 pixels wide")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "pixel_scale", check_pixel_scale(self.pixel_scale))
        if not isinstance(self.projection, str) or self.projection.upper() not in PROJECTIONS:
            raise InvalidInputError(
                f"unsupported projection {self.projection!r}; choose one of {', '.join(PROJECTIONS)}"
            )
        object.__setattr__(self, "projection", self.projection.upper())
        if not isinstance(self.interpolation, str) or self.interpolation not in INTERPOLATIONS:
            raise InvalidInputError(
                f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}"
            )
        orders = self.orders
        if isinstance(orders, (int, np.integer)) and not isinstance(orders, bool):
            orders = (orders,)
        try:
            ok = all(not isinstance(k, bool) and int(k) == k and 0 <= int(k) <= 29 for k in orders)
        except (TypeError, ValueError):
            ok = False
        if not ok or not orders:
            raise InvalidInputError(f"orders must be HiPS orders 0..29, one per survey, got {self.orders!r}")
        object.__setattr__(self, "orders", tuple(int(k) for k in orders))
        if isinstance(self.rotation, str):
            if not self.rotation:
                raise InvalidInputError("rotation column name is empty")
        else:
            object.__setattr__(self, "rotation", float(normalise_rotation(self.rotation, 1)[0]))
        memory_limit = self.memory_limit
        if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, np.integer)) or memory_limit <= 0:
            raise InvalidInputError(f"memory_limit must be a positive number of bytes, got {memory_limit!r}")
        check_field_of_view(self.size, self.pixel_scale, self.projection)

    @property
    def fov_deg(self) -> float:
        """Field of view (size x pixel scale), degrees."""
        return self.size * self.pixel_scale / 3600.0

    @classmethod
    def for_surveys(
        cls,
        surveys: Any,
        *,
        size: int = 64,
        pixel_scale: Any = None,
        fov: Any = None,
        projection: str = "TAN",
        interpolation: str = "bilinear",
        order: int | str | Sequence[int | str] = "auto",
        rotation: float | str = 0.0,
        memory_limit: int = 1 << 30,
    ) -> CutoutSpec:
        """A spec for these surveys: pixel scale from ``fov`` (or the finest cells), orders picked.

        ``order="auto"`` (or ``"auto"`` for one survey in a list) picks, per survey, the
        coarsest order whose cells are no larger than the output pixel (logged at INFO).
        """
        survey_list = _survey_list(surveys)
        size = check_size(size)
        if interpolation not in INTERPOLATIONS if isinstance(interpolation, str) else True:
            raise InvalidInputError(
                f"unknown interpolation {interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}"
            )
        for sv in survey_list:
            if sv.tile_width < (4 if interpolation == "bicubic" else 2):
                raise InvalidInputError(
                    f"{sv.name}: tiles {sv.tile_width} pixel wide are too small for {interpolation} interpolation"
                )
        if pixel_scale is not None and fov is not None:
            raise InvalidInputError("give pixel_scale or fov, not both")
        if pixel_scale is not None:
            scale = check_pixel_scale(pixel_scale)
        elif fov is not None:
            scale = _arcsec(fov, "fov") / int(size)
        else:
            first = survey_list[0]
            scale = healpix_cell_size_arcsec(first.order + log2_width(first.tile_width))
            logger.info("pixel_scale not given: using %.4g arcsec (the finest cells of %s)", scale, first.name)
        orders = _resolve_orders(survey_list, order, scale)
        return cls(
            size=int(size), pixel_scale=scale, orders=orders, projection=projection,
            interpolation=interpolation, rotation=rotation, memory_limit=memory_limit,
        )  # fmt: skip

    def wcs(self, ra: float, dec: float, rotation: float | None = None) -> WCS:
        """The astropy WCS of the cutout centred on ``(ra, dec)`` (see :func:`hipsml.cutout_wcs`)."""
        rot = rotation if rotation is not None else (0.0 if isinstance(self.rotation, str) else self.rotation)
        return cutout_wcs(
            ra, dec, size=self.size, pixel_scale=self.pixel_scale, projection=self.projection, rotation=rot
        )


def _resolve_orders(survey_list: list[Any], order: Any, scale: float) -> tuple[int, ...]:
    raw = [order] * len(survey_list) if isinstance(order, str) or np.ndim(order) == 0 else list(order)
    if len(raw) != len(survey_list):
        raise InvalidInputError(f"order gives {len(raw)} values for {len(survey_list)} surveys")
    orders = []
    for sv, k in zip(survey_list, raw, strict=True):
        if isinstance(k, str):
            if k != "auto":
                raise InvalidInputError(f"order must be 'auto' or an integer, got {k!r}")
            k = choose_order(sv, scale)
            logger.info("HiPS order %d chosen for %s (pixel %.4g arcsec)", k, sv.name, scale)
        else:
            try:
                if isinstance(k, bool) or int(k) != k:
                    raise ValueError
            except (TypeError, ValueError):
                raise InvalidInputError(f"order must be 'auto', an integer or one per survey, got {order!r}") from None
            k = int(k)
            if not sv.order_min <= k <= sv.order:
                raise InvalidInputError(f"order {k} is outside {sv.name}'s orders {sv.order_min}..{sv.order}")
        orders.append(k)
    return tuple(orders)


def channel_names(surveys: Any) -> tuple[str, ...]:
    """Output channel names: the survey name, with ``[c]`` for multi-channel surveys."""
    names: list[str] = []
    for sv in _survey_list(surveys):
        names += [sv.name] if sv.channels == 1 else [f"{sv.name}[{c}]" for c in range(sv.channels)]
    return tuple(names)


@dataclass(frozen=True, eq=False)
class WorkUnit:
    """A tile-compact group of targets, extracted in one go (one Dask task).

    Attributes
    ----------
    index : int
        Position of the unit in its plan.
    rows : numpy.ndarray
        Indices of the unit's targets in the planned arrays, in visiting (NESTED) order.
    ra, dec, rotation : numpy.ndarray
        ICRS centres and rotations of those targets, degrees.
    tiles : int
        Distinct tiles under the targets' centres (first survey), a measure of compactness.
    """

    index: int
    rows: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    rotation: np.ndarray
    tiles: int = 0

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def start(self) -> int:
        """First row of the unit (its rows are ``start .. start + len`` when the plan was aligned)."""
        return int(self.rows[0]) if self.rows.size else 0


def visiting_order(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Target indices sorted by NESTED cell at order :data:`VISIT_ORDER` (stable: ties keep input order)."""
    cells = hp.ang2pix(1 << VISIT_ORDER, np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64),
                       lonlat=True, nest=True)  # fmt: skip
    return np.argsort(cells, kind="stable")


def _cut_points(tile_of: np.ndarray, target: int, align: int) -> list[int]:
    """Unit boundaries along the visiting order: about ``target`` targets per unit, cut where
    the tile under the centre changes when that happens in the last half of a unit, and only
    at multiples of ``align`` (so a unit owns whole storage chunks)."""
    n = tile_of.size
    change = np.zeros(n + 1, dtype=bool)
    change[1:n] = tile_of[1:] != tile_of[:-1]
    change[0] = change[n] = True
    cuts = [0]
    while cuts[-1] < n:
        start = cuts[-1]
        hi = start + target
        if hi >= n:
            cuts.append(n)
            break
        lo = start + max(align, target // 2)
        candidates = np.arange(-(-lo // align) * align, hi + 1, align)
        at_tile_edge = candidates[change[candidates]]
        cuts.append(int(at_tile_edge[-1] if at_tile_edge.size else candidates[-1]))
    return cuts


def plan_work_units(
    ra: Any,
    dec: Any,
    spec: CutoutSpec,
    surveys: Any,
    *,
    rotation: Any = None,
    target_per_unit: int = DEFAULT_TARGETS_PER_UNIT,
    align: int = 1,
    presorted: bool = False,
) -> list[WorkUnit]:
    """Group targets into tile-compact work units, in NESTED order (a pure function).

    Targets are visited in NESTED order (cells of order :data:`VISIT_ORDER`), so a unit
    covers a compact patch of sky: sparse tiles are merged into one unit and a dense tile is
    split over several. A unit ends, near ``target_per_unit`` targets, where the tile under
    the targets' centres changes.

    Parameters
    ----------
    ra, dec : array_like
        ICRS target centres, degrees.
    spec : CutoutSpec
    surveys : sequence of HipsSurvey or SurveyRef
        Only their frame and tile width (for the tile grid) are used: nothing is read.
    rotation : array_like, optional
        One rotation per target, degrees; required when ``spec.rotation`` names a column.
    target_per_unit : int
        Targets per unit, about.
    align : int
        Unit sizes are multiples of ``align`` (the last unit excepted), so that with
        ``presorted=True`` each unit owns whole chunks of rows ``align`` long.
    presorted : bool
        The targets are already in visiting order (as a dataset's rows are): units are then
        contiguous row ranges.

    Returns
    -------
    list of WorkUnit
    """
    ra, dec = normalise_coords((ra, dec))
    n = ra.size
    if rotation is None:
        if isinstance(spec.rotation, str):
            raise InvalidInputError(f"spec.rotation names column {spec.rotation!r}: pass rotation= per target")
        rot = np.full(n, spec.rotation)
    else:
        rot = normalise_rotation(rotation, n)
    for name, value in (("target_per_unit", target_per_unit), ("align", align)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    target = max(int(align), int(target_per_unit) // int(align) * int(align))
    visit = np.arange(n) if presorted else visiting_order(ra, dec)
    if n == 0:
        return []
    first = _survey_list(surveys)[0]
    korder = spec.orders[0]
    centre = np.einsum("ij,nj->ni", frame_matrix(first.frame), target_bases(ra[visit], dec[visit], rot[visit])[:, :, 0])
    tile_of = hp.vec2pix(1 << korder, centre[:, 0], centre[:, 1], centre[:, 2], nest=True)
    cuts = _cut_points(tile_of, target, int(align))
    units = []
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        rows = visit[a:b]
        units.append(WorkUnit(i, rows, ra[rows], dec[rows], rot[rows], int(np.unique(tile_of[a:b]).size)))
    return units


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
        self.tiles_read += missing.size * len(self.members)  # one read per survey
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
            for sv, tiles in zip(self.members, per_survey, strict=True):
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


def _plan_batches(visit: np.ndarray, bases_icrs: np.ndarray, groups: list[_Group]) -> list[np.ndarray]:
    """Split the visiting order into batches of at most :data:`DEFAULT_TARGETS_PER_UNIT`
    targets whose tiles fit each group's memory budget.

    Targets come in NESTED order, so the tile under each target's centre changes in runs; a
    batch takes at most an eighth of the budget in such runs (a cutout touches a few tiles,
    and neighbouring runs share most of them).
    """
    n = visit.size
    runs = np.zeros(n, dtype=np.int64)
    limit = None
    for g in groups:
        centre = np.einsum("ij,nj->ni", frame_matrix(g.frame), bases_icrs[visit, :, 0])
        keys = hp.vec2pix(1 << g.order, centre[:, 0], centre[:, 1], centre[:, 2], nest=True)
        change = np.empty(n, dtype=np.int64)
        change[:1] = 0
        change[1:] = keys[1:] != keys[:-1]
        runs = np.maximum(runs, np.cumsum(change))
        per_batch = max(1, g.slab.max_tiles // 8)
        limit = per_batch if limit is None else min(limit, per_batch)
    batch_of = np.maximum(runs // max(limit or 1, 1), np.arange(n) // DEFAULT_TARGETS_PER_UNIT)
    # batch_of is non-decreasing: split where it changes
    cuts = np.flatnonzero(np.diff(batch_of)) + 1
    return np.split(visit, cuts)


@dataclass
class _Group:
    """Surveys sharing frame, order and tile width: one geometry pass, one tile slab."""

    frame: str
    order: int
    width: int
    chan_out: np.ndarray
    slab: _TileSlab


def _groups(survey_list: list[Any], spec: CutoutSpec) -> list[_Group]:
    if len(spec.orders) != len(survey_list):
        raise InvalidInputError(f"the spec has {len(spec.orders)} orders for {len(survey_list)} surveys")
    grouped: dict[tuple[str, int, int], list[tuple[int, Any]]] = {}
    c0 = 0
    for sv, k in zip(survey_list, spec.orders, strict=True):
        if not sv.order_min <= k <= sv.order:
            raise InvalidInputError(f"order {k} is outside {sv.name}'s orders {sv.order_min}..{sv.order}")
        grouped.setdefault((sv.frame, k, sv.tile_width), []).append((c0, sv))
        c0 += sv.channels
    out = []
    for (frame, korder, width), members in grouped.items():
        chan_out = np.concatenate([np.arange(c, c + sv.channels) for c, sv in members]).astype(np.int64)
        out.append(
            _Group(frame, korder, width, chan_out, _TileSlab([sv for _, sv in members], korder, spec.memory_limit))
        )
    return out


class _Extractor:
    """What one call needs to run the kernel: the pixel grid and the tile slabs."""

    def __init__(self, survey_list: list[Any], spec: CutoutSpec, groups: list[_Group] | None = None) -> None:
        self.spec = spec
        self.groups = _groups(survey_list, spec) if groups is None else groups
        size = spec.size
        self.grid = pixel_grid_vectors(size, spec.pixel_scale, spec.projection)
        self.gx, self.gy, self.gz = (np.ascontiguousarray(self.grid[:, i]) for i in range(3))
        half, npx = size // 2, size * size
        self.probe_pixels = np.array([half * size + half, 0, size - 1, npx - size, npx - 1])  # centre, corners
        self.mode = INTERPOLATIONS[spec.interpolation]
        self.tile_seconds = 0.0  # reading tiles into the slabs (decode, cache, network)
        self.kernel_seconds = 0.0

    @property
    def tiles_read(self) -> int:
        return sum(g.slab.tiles_read for g in self.groups)

    def run(self, ra: np.ndarray, dec: np.ndarray, rot: np.ndarray, out: np.ndarray, rows: np.ndarray) -> None:
        """Cut targets ``(ra, dec, rot)`` (in visiting order) into ``out[rows]`` (``out``: (N, C, P))."""
        bases_icrs = target_bases(ra, dec, rot)
        for batch in _plan_batches(np.arange(ra.size), bases_icrs, self.groups):
            for g in self.groups:
                self._run_group(g, bases_icrs[batch], rows[batch], out)

    def _run_group(self, g: _Group, bases_icrs: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
        s = log2_width(g.width)
        bases = np.ascontiguousarray(np.matmul(frame_matrix(g.frame), bases_icrs))
        g.slab.trim()
        # prefetch the tiles under the centres and corners; any other tile a stencil needs
        # is reported by the kernel and its target run again
        probe = np.einsum("nij,pj->npi", bases, self.grid[self.probe_pixels])
        under = hp.vec2pix(1 << g.order, probe[..., 0], probe[..., 1], probe[..., 2], nest=True)
        t0 = time.perf_counter()
        g.slab.ensure(npix_to_tile_keys(under.ravel(), g.order))
        self.tile_seconds += time.perf_counter() - t0
        pending = np.arange(rows.size)
        while pending.size:
            keys, slots = g.slab.table()
            failed = np.zeros(pending.size, dtype=bool)
            t0 = time.perf_counter()
            missing = cutout_kernel(
                bases[pending], self.gx, self.gy, self.gz, self.spec.size, 1 << (g.order + s), s, g.order,
                self.mode, keys, slots, g.slab.slab, rows[pending], g.chan_out, out, failed,
            )  # fmt: skip
            t1 = time.perf_counter()
            self.kernel_seconds += t1 - t0
            if missing.size == 0:
                break
            g.slab.ensure(missing)
            self.tile_seconds += time.perf_counter() - t1
            pending = pending[failed]


class UnitExtractor:
    """Cuts work units one after another, keeping the decoded tiles between units.

    :func:`extract_unit` starts from empty tile slabs at every call (each unit copies its
    tiles out of the surveys' memory caches again); an extractor keeps them, up to
    ``spec.memory_limit`` bytes per group of surveys (emptied, between batches, when over
    half full), so a loader that cuts the same sky every epoch reads each tile once. The
    cutouts are those of :func:`extract_unit`, bit for bit. Use one per thread.

    Parameters
    ----------
    surveys : sequence of HipsSurvey or SurveyRef
    spec : CutoutSpec
        Fixes the surveys' orders and the memory budget; :meth:`extract` takes specs that
        differ from it in pixel scale, size, projection or interpolation (e.g. scale jitter).

    Examples
    --------
    >>> extractor = UnitExtractor(surveys, spec)  # doctest: +SKIP
    >>> for unit in units:  # doctest: +SKIP
    ...     block = extractor.extract(spec, unit)
    """

    def __init__(self, surveys: Any, spec: CutoutSpec) -> None:
        self.surveys = _survey_list(surveys)
        self.nch = sum(sv.channels for sv in self.surveys)
        self._extractor = _Extractor(self.surveys, spec)

    def _for(self, spec: CutoutSpec) -> _Extractor:
        ex = self._extractor
        if spec != ex.spec:
            if spec.orders != ex.spec.orders or spec.memory_limit != ex.spec.memory_limit:
                raise InvalidInputError("an extractor's specs must share the orders and memory_limit it was made with")
            ex = self._extractor = _Extractor(self.surveys, spec, groups=ex.groups)
        return ex

    def extract(
        self, spec: CutoutSpec, unit: WorkUnit, *, out: np.ndarray | None = None, stats: dict[str, float] | None = None
    ) -> np.ndarray:
        """Cut ``unit`` into a block ``(len(unit), C, size, size)``, as :func:`extract_unit` does."""
        ex = self._for(spec)
        shape = (len(unit), self.nch, spec.size, spec.size)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise InvalidInputError(
                f"out must be a C-contiguous float32 array of shape {shape}, got {out.dtype} {out.shape}"
            )
        before = (ex.tiles_read, ex.tile_seconds, ex.kernel_seconds)
        flat = out.reshape(shape[0], self.nch, spec.size * spec.size)
        ex.run(unit.ra, unit.dec, unit.rotation, flat, np.arange(len(unit), dtype=np.int64))
        if stats is not None:
            stats.update(tiles_read=ex.tiles_read - before[0], tile_seconds=ex.tile_seconds - before[1],
                         kernel_seconds=ex.kernel_seconds - before[2])  # fmt: skip
        return out

    def extract_in_pieces(
        self, spec: CutoutSpec, unit: WorkUnit, rows: int, *, stats: dict[str, float] | None = None
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Cut ``unit`` ``rows`` targets at a time into one reused buffer: yield ``(part, block)``.

        ``part`` is the slice of the unit's targets in ``block`` (valid until the next piece), so a
        unit's memory follows ``rows``, not its size; the decoded tiles are kept from piece to
        piece. ``stats`` (when given) accumulates the pieces' tile and kernel counters.
        """
        rows = max(1, int(rows))
        buffer = np.empty((min(rows, len(unit)), self.nch, spec.size, spec.size), dtype=np.float32)
        for first in range(0, len(unit), rows):
            part = slice(first, first + rows)
            piece = WorkUnit(unit.index, unit.rows[part], unit.ra[part], unit.dec[part], unit.rotation[part])
            step: dict[str, float] = {}
            block = self.extract(spec, piece, out=buffer[: len(piece)], stats=step)
            if stats is not None:
                for key, value in step.items():
                    stats[key] = stats.get(key, 0.0) + value
            yield part, block


def extract_unit(
    surveys: Any,
    spec: CutoutSpec,
    unit: WorkUnit,
    *,
    out: np.ndarray | None = None,
    stats: dict[str, float] | None = None,
) -> np.ndarray:
    """Cut the targets of one work unit into a block ``(len(unit), C, size, size)``.

    Parameters
    ----------
    surveys : sequence of HipsSurvey or SurveyRef
        The surveys of the plan, in channel order; SurveyRef descriptions are opened once per
        process and shared by every unit that process runs (tile cache, HTTP session).
    spec : CutoutSpec
    unit : WorkUnit
    out : numpy.ndarray, optional
        Preallocated C-contiguous float32 block of that shape to fill (e.g. a slice of a
        larger buffer); NaN where uncovered.
    stats : dict, optional
        Filled with ``tiles_read`` (tile loads, cache hits included), ``tile_seconds`` (time
        reading tiles) and ``kernel_seconds`` (time in the compiled kernel).

    Returns
    -------
    numpy.ndarray
        ``out``, filled; cutout ``j`` is the target ``unit.rows[j]``.
    """
    return UnitExtractor(surveys, spec).extract(spec, unit, out=out, stats=stats)


#: what :func:`cutouts` and :func:`hipsml.train.sky_batches` accept as surveys
Surveys: TypeAlias = HipsSurvey | SurveyRef | str | os.PathLike | Sequence[HipsSurvey | SurveyRef | str | os.PathLike]
#: targets: a SkyCoord, or ``(ra, dec)`` in ICRS degrees (arrays or Quantities)
Coords: TypeAlias = SkyCoord | tuple[ArrayLike | u.Quantity, ArrayLike | u.Quantity]


def cutouts(
    surveys: Surveys,
    coords: Coords,
    *,
    size: int = 64,
    pixel_scale: float | u.Quantity | None = None,
    fov: float | u.Quantity | None = None,
    projection: Literal["TAN", "SIN"] = "TAN",
    rotation: float | ArrayLike | u.Quantity = 0.0,
    interpolation: Literal["bilinear", "nearest", "bicubic"] = "bilinear",
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
    surveys : HipsSurvey, SurveyRef, location, or a sequence of them
        Surveys, opened (:func:`hipsml.open_survey`) or given by location (a folder, ``file://``
        or ``http(s)://`` URL, opened here), as :func:`hipsml.train.sky_batches` takes them; their
        channels are concatenated in order.
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
    order : "auto", int or sequence of int or "auto"
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
    >>> import hipsml
    >>> survey = hipsml.open_survey("demo-output/sky/r")
    >>> images, mask = hipsml.cutouts(survey, ([150.0], [2.0]), size=64, pixel_scale=3.0)
    >>> images.shape, bool(mask.all())
    ((1, 1, 64, 64), True)
    """
    survey_list = _survey_list(surveys)
    spec = CutoutSpec.for_surveys(
        survey_list, size=size, pixel_scale=pixel_scale, fov=fov, projection=projection,
        interpolation=interpolation, order=order, memory_limit=memory_limit,
    )  # fmt: skip
    ra, dec = normalise_coords(coords)
    rot = normalise_rotation(rotation, ra.size)
    channels = channel_names(survey_list)
    n, ctot, npx = ra.size, len(channels), spec.size * spec.size
    try:
        images: np.ndarray = np.empty((n, ctot, npx), dtype=np.float32)
    except (MemoryError, ValueError):
        gib = n * ctot * npx * 4 / 2**30
        raise InvalidInputError(
            f"{n} cutouts of {ctot} x {spec.size} x {spec.size} need {gib:.1f} GiB, more than this machine can "
            "hold; cut fewer targets per call (hipsml.extract_dataset batches them)"
        ) from None
    units = plan_work_units(ra, dec, spec, survey_list, rotation=rot)
    # one extractor for the whole call: each tile is read once while the tiles fit memory_limit
    extractor = _Extractor(survey_list, spec)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="cutout", desc="cutouts")
    try:
        for unit in units:
            extractor.run(unit.ra, unit.dec, unit.rotation, images, unit.rows)
            if bar is not None:
                bar.update(len(unit))
    finally:
        if bar is not None:
            bar.close()
    images = images.reshape(n, ctot, spec.size, spec.size)
    if n and not np.isfinite(images).any():
        logger.warning(
            "every cutout is empty: no tile of %s at order(s) %s covers the %d target(s)",
            ", ".join(sv.name for sv in survey_list), ", ".join(map(str, spec.orders)), n,
        )  # fmt: skip
    return CutoutResult(
        images=images,
        ra=ra,
        dec=dec,
        rotation=rot,
        size=spec.size,
        pixel_scale=spec.pixel_scale,
        projection=spec.projection,
        interpolation=spec.interpolation,
        orders=spec.orders,
        channels=channels,
        surveys=tuple(sv.location for sv in survey_list),
        tiles_read=extractor.tiles_read,
    )
