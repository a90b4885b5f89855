"""Training straight from the sky: every epoch cuts every target afresh from the HiPS tiles.

Augmentation by reprojection is exact: a cutout at a random rotation is the survey resampled
onto that rotated pixel grid (no interpolated corners, no second resampling), as
:func:`hipsml.cutouts` would cut it with ``rotation=``; a sub-pixel shift moves the centre
along the rotated axes (computed on the sphere through the cutout's projection); scale
jitter changes the pixel scale per work unit (the engine's spec is per call).

The targets are grouped once into tile-compact work units (:func:`hipsml.extract.plan_work_units`,
NESTED order); each epoch shuffles the order of the units and the targets within a window
of units, and cuts the units in background threads (the kernel releases the GIL). Each
thread cuts with a :class:`hipsml.extract.UnitExtractor` kept from unit to unit and from epoch
to epoch, so the decoded tiles stay in its slab (up to ``memory_limit / threads``) instead of
being copied out of the survey's cache again for every unit. Batches are those of
:func:`hipsml.train.zarr_batches`.
"""

from __future__ import annotations

import math
import os
import queue
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hipsml.errors import HipsmlError, InvalidInputError
from hipsml.extract import (
    CutoutSpec,
    UnitExtractor,
    WorkUnit,
    normalise_coords,
    normalise_rotation,
    plan_work_units,
    resolve_surveys,
    target_bases,
)
from hipsml.train.loaders._normalise import Normalisation, parse_normalisation, prepare_batch
from hipsml.train.loaders._zarr import (
    Batch,
    EpochPlan,
    check_nan_to,
    check_positive_int,
    epoch_rng,
    in_background,
    label_codes,
    plan_epoch,
    split_rows,
    stream_batches,
)

__all__ = ["SkyAugmentation", "SkyBatches", "dataset_surveys", "offset_centres", "sky_batches"]

#: random streams of an epoch (see :func:`hipsml.train.loaders._zarr.epoch_rng`)
_ROTATION, _SHIFT, _SCALE = 3, 4, 5


def offset_centres(
    ra: np.ndarray,
    dec: np.ndarray,
    rotation: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    pixel_scale: np.ndarray | float,
    projection: str = "TAN",
) -> tuple[np.ndarray, np.ndarray]:
    """The sky position of pixel offset ``(dx, dy)`` from the centre of each cutout.

    Exactly the position of pixel ``(CRPIX1 + dx, CRPIX2 + dy)`` in the WCS of
    :func:`hipsml.cutout_wcs` for that centre, rotation and scale: the offset is taken
    along the cutout's rotated x (east left) and y (north up) axes in the projection plane,
    then deprojected (TAN or SIN).

    Examples
    --------
    >>> ra, dec = offset_centres(np.array([10.0]), np.array([0.0]), np.array([0.0]),  # 1 deg north in the plane
    ...                          np.array([0.0]), np.array([1.0]), 3600.0)
    >>> round(float(ra[0]), 9), round(float(dec[0]), 9)
    (10.0, 0.999898479)
    """
    scale = np.deg2rad(np.asarray(pixel_scale, dtype=np.float64) / 3600.0)
    xi = -scale * np.asarray(dx, dtype=np.float64)  # intermediate world x: east is left
    eta = scale * np.asarray(dy, dtype=np.float64)
    xi, eta = np.broadcast_arrays(xi, eta)
    if projection.upper() == "TAN":
        local = np.stack([np.ones_like(xi), xi, eta], axis=-1)
        local /= np.linalg.norm(local, axis=-1, keepdims=True)
    else:
        local = np.stack([np.sqrt(np.maximum(1.0 - xi**2 - eta**2, 0.0)), xi, eta], axis=-1)
    vec = np.einsum("nij,nj->ni", target_bases(ra, dec, rotation), local)
    out_ra = np.mod(np.degrees(np.arctan2(vec[:, 1], vec[:, 0])), 360.0)
    out_dec = np.degrees(np.arcsin(np.clip(vec[:, 2], -1.0, 1.0)))
    return out_ra, out_dec


@dataclass(frozen=True, eq=False)
class SkyAugmentation:
    """What one epoch cuts for each target: centre, rotation, shift and pixel scale.

    Attributes
    ----------
    rows : numpy.ndarray
        Dataset rows (or target indices), as in the batches.
    ra, dec : numpy.ndarray
        ICRS centres actually cut (the targets moved by the shift), degrees.
    rotation : numpy.ndarray
        Degrees, as ``hipsml.cutouts(..., rotation=)``.
    dx, dy : numpy.ndarray
        Shifts of the centre along the rotated x and y axes, pixels.
    pixel_scale : numpy.ndarray
        Arcsec per pixel (the same for every target of a work unit).
    """

    rows: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    rotation: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    pixel_scale: np.ndarray

    def select(self, rows: Sequence[int] | np.ndarray) -> SkyAugmentation:
        """The augmentation of ``rows`` (e.g. a batch's ``rows``), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        sorter = np.argsort(self.rows)
        pos = sorter[np.searchsorted(self.rows, rows, sorter=sorter)]
        if not np.array_equal(self.rows[pos], rows):
            raise InvalidInputError("rows not among this source's targets")
        return SkyAugmentation(rows, self.ra[pos], self.dec[pos], self.rotation[pos], self.dx[pos], self.dy[pos],
                               self.pixel_scale[pos])  # fmt: skip


def _check_fraction(value: Any, name: str, *, below: float = math.inf) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(value, bool) or not (math.isfinite(out) and 0.0 <= out < below):
        raise InvalidInputError(f"{name} must be a number in [0, {below:g}), got {value!r}")
    return out


@dataclass(frozen=True, eq=False)
class SkyBatches:
    """One epoch of batches cut from the sky (see :func:`sky_batches`); iterate it.

    ``for_epoch(k)`` gives another epoch; ``augmentation()`` what this epoch cuts for every
    target; ``plan()`` its reading order (blocks are work units, items target positions).
    """

    surveys: tuple[Any, ...]
    spec: CutoutSpec
    ra: np.ndarray
    dec: np.ndarray
    rows: np.ndarray
    labels: np.ndarray | None
    base_rotation: np.ndarray
    units: tuple[np.ndarray, ...]
    batch_size: int
    shuffle: bool
    seed: int
    epoch: int
    rotation: str | float | np.ndarray | None
    shift_pixels: float
    scale_jitter: float
    window_units: int
    normalisation: Normalisation | None
    nan_to: float | None
    mask_channel: bool
    prefetch: int
    drop_last: bool
    threads: int
    #: idle extractors (each keeps its decoded tiles), shared by every epoch of this source
    extractors: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)

    def __len__(self) -> int:
        n = self.rows.size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def for_epoch(self, epoch: int) -> SkyBatches:
        """This source for another epoch: new rotations, shifts, scales and order."""
        return replace(self, epoch=check_positive_int(epoch, "epoch", minimum=0))

    def plan(self) -> EpochPlan:
        return plan_epoch(self.units, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch, window=self.window_units)

    def augmentation(self) -> SkyAugmentation:
        """Centres, rotations, shifts and scales of this epoch, one per target (a pure function)."""
        n = self.rows.size
        if isinstance(self.rotation, str):  # "random"
            rot = epoch_rng(self.seed, self.epoch, _ROTATION).uniform(0.0, 360.0, n)
        elif self.rotation is None:
            rot = self.base_rotation.copy()
        else:
            rot = normalise_rotation(self.rotation, n)
        if self.shift_pixels > 0:
            dx, dy = epoch_rng(self.seed, self.epoch, _SHIFT).uniform(-self.shift_pixels, self.shift_pixels, (2, n))
        else:
            dx = dy = np.zeros(n)
        scale = np.full(n, self.spec.pixel_scale)
        if self.scale_jitter > 0:
            factor = epoch_rng(self.seed, self.epoch, _SCALE).uniform(1 - self.scale_jitter, 1 + self.scale_jitter,
                                                                      len(self.units))  # fmt: skip
            for k, unit in enumerate(self.units):
                scale[unit] *= factor[k]
        if self.shift_pixels > 0:
            ra, dec = offset_centres(self.ra, self.dec, rot, dx, dy, scale, self.spec.projection)
        else:
            ra, dec = self.ra.copy(), self.dec.copy()
        return SkyAugmentation(self.rows, ra, dec, rot, dx, dy, scale)

    def _stream(self) -> Iterator[Batch]:
        plan = self.plan()
        aug = self.augmentation()
        surveys = list(self.surveys)

        def load_block(k: int) -> np.ndarray:
            items = plan.blocks[k]
            spec = self.spec
            if self.scale_jitter > 0:
                spec = replace(spec, pixel_scale=float(aug.pixel_scale[items[0]]))
            unit = WorkUnit(k, np.arange(items.size), aug.ra[items], aug.dec[items], aug.rotation[items])
            try:
                extractor = self.extractors.get_nowait()
            except queue.Empty:
                extractor = UnitExtractor(surveys, self.spec)
            try:
                images = extractor.extract(spec, unit)
            finally:
                self.extractors.put(extractor)
            return prepare_batch(images, self.normalisation, nan_to=self.nan_to, mask_channel=self.mask_channel)

        return stream_batches(plan, load_block, batch_size=self.batch_size, rows=self.rows, labels=self.labels,
                              drop_last=self.drop_last, threads=self.threads)  # fmt: skip

    def __iter__(self) -> Iterator[Batch]:
        return in_background(self._stream, prefetch=self.prefetch)


def dataset_surveys(dataset: Any) -> tuple[Any, ...]:
    """The surveys a dataset was cut from (its recipe's), opened where the dataset recorded them.

    Raises
    ------
    HipsmlError
        The dataset records no surveys, or one cannot be opened there (moved, deleted,
        unreachable): one line naming the dataset and the survey's location.
    """
    from hipsml.hips import open_survey

    entries = dataset.attrs.get("surveys")
    if not entries or not dataset.attrs.get("geometry"):
        raise InvalidInputError(f"{dataset.location}: no geometry or surveys in its attributes; not a hipsml dataset")
    surveys = []
    for entry in entries:
        try:
            surveys.append(open_survey(entry["location"]))
        except HipsmlError as exc:
            raise type(exc)(f"{dataset.location} was cut from the survey at {entry['location']}, which cannot be "
                            f"opened ({exc}); cutting from the sky needs its surveys there") from None  # fmt: skip
    return tuple(surveys)


def _dataset_source(dataset: Any, split: Any) -> dict[str, Any]:
    """Surveys, geometry and targets of a dataset's split (its recipe's surveys, opened)."""
    rows = split_rows(dataset, split)
    surveys = dataset_surveys(dataset)
    g = dataset.attrs["geometry"]
    entries = dataset.attrs["surveys"]
    spec = CutoutSpec(size=int(g["size"]), pixel_scale=float(g["pixel_scale_arcsec"]),
                      orders=tuple(int(s["order"]) for s in entries), projection=g["projection"],
                      interpolation=g["interpolation"])  # fmt: skip
    rotation = g.get("rotation", 0.0)
    base = dataset.column("rotation")[rows].astype(np.float64) if isinstance(rotation, str) else np.full(
        rows.size, float(rotation))  # fmt: skip
    return {"surveys": surveys, "spec": spec, "ra": dataset.column("ra")[rows].astype(np.float64),
            "dec": dataset.column("dec")[rows].astype(np.float64), "rows": rows, "base_rotation": base}  # fmt: skip


def sky_batches(
    source: Any,
    targets: Any = None,
    *,
    split: str | Sequence[int] | np.ndarray | None = "train",
    labels: Any = True,
    size: int = 64,
    pixel_scale: Any = None,
    fov: Any = None,
    projection: str = "TAN",
    interpolation: str = "bilinear",
    order: Any = "auto",
    batch_size: int = 256,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    rotation: str | float | Sequence[float] | np.ndarray | None = "random",
    shift_pixels: float = 0.0,
    scale_jitter: float = 0.0,
    threads: int = 2,
    unit_size: int = 1024,
    window_units: int = 4,
    normalise: Any = None,
    nan_to: float | str | None = "zero",
    mask_channel: bool = False,
    prefetch: int = 2,
    drop_last: bool = False,
) -> SkyBatches:
    """Batches of one epoch cut afresh from the HiPS tiles, with exact augmentation by reprojection.

    Each epoch cuts every target once, at a random rotation (and optional sub-pixel shift
    and scale jitter), with the cutout engine: exactly what ``hipsml.cutouts(surveys,
    centre, rotation=angle, pixel_scale=scale)`` returns for that target (see
    :meth:`SkyBatches.augmentation`). Targets are grouped into tile-compact work units in
    NESTED order; each epoch shuffles the units' order and the targets within windows of
    ``window_units`` units, and cuts the units in ``threads`` background threads. The
    batches are those of :func:`zarr_batches`; the whole epoch is a pure function of
    ``(seed, epoch)``.

    Parameters
    ----------
    source : Dataset, dataset path, or surveys
        A :class:`hipsml.Dataset` (its recipe's surveys, its geometry and the targets of
        ``split``, from its columns), or, with ``targets``, opened surveys
        (:func:`hipsml.open_survey`, :class:`hipsml.extract.SurveyRef` or a location; one or a list).
    targets : SkyCoord or (ra, dec), optional
        The targets (ICRS degrees), when ``source`` holds surveys.
    split : str, None or array of int
        The dataset's split (a dataset source only).
    labels : bool, str or array
        A dataset: as in :func:`zarr_batches`. Surveys: an int array, one label per target, or None.
    size, pixel_scale, fov, projection, interpolation, order
        The geometry, as in :func:`hipsml.cutouts` (surveys only: a dataset brings its own).
    batch_size, shuffle, seed, epoch, normalise, nan_to, mask_channel, prefetch, drop_last
        As in :func:`zarr_batches`.
    rotation : "random", float, array or None
        ``"random"``: uniform in [0, 360) degrees, fresh each epoch; a number or one value per
        target: fixed; None: the dataset's own rotation (0 for surveys).
    shift_pixels : float
        Move each centre by ``(dx, dy)`` uniform in ``[-shift_pixels, shift_pixels]`` pixels
        along the rotated axes.
    scale_jitter : float
        Multiply the pixel scale by a factor uniform in ``[1 - j, 1 + j]``, one per work unit
        (the HiPS orders stay those of the base scale).
    threads : int
        Threads cutting work units.
    unit_size : int
        Targets per work unit, about (units end where the tile under the centres changes).
    window_units : int
        Units whose targets are shuffled together.

    Returns
    -------
    SkyBatches
        Iterable of :class:`Batch` ``(images, labels, rows)``; rows are dataset rows (or
        target indices).

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
    >>> source = sky_batches(ds, split="train", batch_size=32, normalise="minmax")
    >>> seen = []
    >>> for images, labels, rows in source.for_epoch(0):  # every training target, cut afresh at a random angle
    ...     seen.extend(rows.tolist())
    >>> sorted(seen) == ds.split("train").tolist(), images.shape[1:]
    (True, (4, 64, 64))
    """
    from hipsml.dataset import Dataset

    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_positive_int(seed, "seed", minimum=0)
    epoch = check_positive_int(epoch, "epoch", minimum=0)
    threads = check_positive_int(threads, "threads")
    unit_size = check_positive_int(unit_size, "unit_size")
    window_units = check_positive_int(window_units, "window_units")
    prefetch = check_positive_int(prefetch, "prefetch", minimum=0)
    shift_pixels = _check_fraction(shift_pixels, "shift_pixels")
    scale_jitter = _check_fraction(scale_jitter, "scale_jitter", below=1.0)
    if isinstance(rotation, str) and rotation != "random":
        raise InvalidInputError(f"rotation must be 'random', a number, one per target or None, got {rotation!r}")
    if isinstance(targets, str):
        raise InvalidInputError(f"targets must be a SkyCoord or (ra, dec), got {targets!r}; for a split pass split=")
    if targets is None:
        if not isinstance(source, (Dataset, str, os.PathLike)):
            raise InvalidInputError("sky_batches needs a dataset, or surveys and targets")
        from hipsml.dataset import as_dataset

        ds = as_dataset(source)
        parts = _dataset_source(ds, split)
        if not (isinstance(labels, (bool, str)) or labels is None):
            raise InvalidInputError("with a dataset, labels must be True, False or a column name")
        codes = label_codes(ds, labels)
        label_arr = None if codes is None else codes[parts["rows"]]
        normalisation = parse_normalisation(normalise, dataset=ds)
    else:
        surveys = tuple(resolve_surveys(source))
        ra, dec = normalise_coords(targets)
        spec = CutoutSpec.for_surveys(list(surveys), size=size, pixel_scale=pixel_scale, fov=fov,
                                      projection=projection, interpolation=interpolation, order=order)  # fmt: skip
        n = ra.size
        parts = {"surveys": surveys, "spec": spec, "ra": ra, "dec": dec, "rows": np.arange(n, dtype=np.int64),
                 "base_rotation": np.zeros(n)}  # fmt: skip
        if labels is None or isinstance(labels, bool):
            label_arr = None
        else:
            label_arr = np.asarray(labels)
            if label_arr.shape != (n,) or label_arr.dtype.kind not in "iu":
                raise InvalidInputError(f"labels must be {n} integer labels, one per target")
            label_arr = label_arr.astype(np.int64)
        normalisation = parse_normalisation(normalise)
    rot_arg: Any = rotation
    if rotation is not None and not isinstance(rotation, str):
        rot_arg = normalise_rotation(rotation, parts["rows"].size)
    units = plan_work_units(parts["ra"], parts["dec"], parts["spec"], list(parts["surveys"]),
                            rotation=parts["base_rotation"], target_per_unit=unit_size)  # fmt: skip
    return SkyBatches(
        # each reader thread keeps its own decoded tiles: together they stay within the spec's memory_limit
        surveys=parts["surveys"],
        spec=replace(parts["spec"], memory_limit=max(1, parts["spec"].memory_limit // threads)),
        ra=parts["ra"], dec=parts["dec"], rows=parts["rows"],
        labels=label_arr, base_rotation=parts["base_rotation"], units=tuple(u.rows.astype(np.int64) for u in units),
        batch_size=batch_size, shuffle=bool(shuffle), seed=seed, epoch=epoch, rotation=rot_arg,
        shift_pixels=shift_pixels, scale_jitter=scale_jitter, window_units=window_units,
        normalisation=normalisation, nan_to=check_nan_to(nan_to), mask_channel=bool(mask_channel),
        prefetch=prefetch, drop_last=bool(drop_last), threads=threads,
    )  # fmt: skip
