"""Building a dataset version from a recipe: plan, extract on Dask, write Zarr, publish.

:func:`extract_dataset` is the product's main job. In order:

1. validate the recipe, open the surveys, load and check the targets;
2. label the would-be version with a content hash (canonical recipe, targets' content,
   surveys' identity, hipsml version): an unchanged recipe reports the existing version
   and writes nothing;
3. fix the row order, a pure function of the targets (NESTED order, ties by id; for an
   incremental version, the parent's rows first), and the splits;
4. build in ``DATASET/.staging-<hash>/group``: every work unit owns whole chunks of the
   ``images`` array and leaves a done-marker, so ``resume=True`` after any crash (SIGKILL
   included) runs only the unfinished units, bit-identically;
5. publish by renaming the staging group to ``vN`` and indexing it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np

from hipsml._files import atomic_write, atomic_write_bytes, user_path
from hipsml._timestamps import now_iso
from hipsml.dataset._coverage import (
    ProbeJob,
    centre_covered,
    channel_coverage,
    coverage_drops,
    coverage_thresholds,
    probe_unit,
)
from hipsml.dataset._dataset import Dataset
from hipsml.dataset._identity import check_same_recipe, lineage_change
from hipsml.dataset._integrity import write_manifest
from hipsml.dataset._limits import check_memory, estimate_build_memory
from hipsml.dataset._recipe import Recipe, load_recipe, parse_recipe
from hipsml.dataset._runner import check_scheduler, run_tasks
from hipsml.dataset._splits import assign_splits, split_keys
from hipsml.dataset._store import (
    FORMAT_NAME,
    FORMAT_VERSION,
    check_output_root,
    dataset_lock,
    hipsml_attrs,
    link_or_copy,
    publish_version,
    read_versions,
    version_problem,
    write_image_rows,
    zarr_compressors,
)
from hipsml.dataset._targets import TargetTable, load_targets
from hipsml.errors import DatasetError, HipsmlError, InvalidInputError, RecipeError, TargetsError
from hipsml.extract import CutoutSpec, SurveyRef, UnitExtractor, WorkUnit, open_cached, plan_work_units

__all__ = ["extract_dataset", "BuildReport", "ROW_ORDER", "unit_size"]

logger = logging.getLogger(__name__)

#: NESTED order of the row sort (ties by id): rows are a pure function of the targets
ROW_ORDER = 16

_UNITS_DIR = "units"
_GROUP_DIR = "group"
_STAGING_FILE = "staging.json"


@dataclass
class BuildReport:
    """What a build did (``Dataset.report`` after :func:`extract_dataset`).

    ``dropped`` counts every target left out, by reason: ``uncovered`` (centre in no survey's MOC or
    tiles present; ``drop_uncovered``), ``no_data`` (a cutout without data in any channel;
    ``drop_uncovered`` with a remote survey without a MOC) and ``below_min_coverage``
    (``min_coverage``; ``below_by_channel`` counts each channel below its threshold, ``min_coverage``
    holds the threshold of each channel).
    """

    path: str
    version: int
    hash: str
    created: bool = True
    count: int = 0
    full: int = 0
    partial: int = 0
    empty: int = 0
    dropped: int = 0
    uncovered: int = 0
    no_data: int = 0
    below_min_coverage: int = 0
    below_by_channel: dict[str, int] = field(default_factory=dict)
    min_coverage: dict[str, float] = field(default_factory=dict)
    probed: int = 0
    probe_seconds: float = 0.0
    reused: int = 0
    resumed: int = 0
    units: int = 0
    tiles_read: int = 0
    tile_decodes: int = 0
    seconds: float = 0.0
    tile_seconds: float = 0.0
    kernel_seconds: float = 0.0
    write_seconds: float = 0.0
    float16_overflow: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Cutouts extracted per second of wall time (reused and resumed ones excluded)."""
        made = self.count - self.reused - self.resumed
        return made / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """A few lines for the terminal."""
        if not self.created:
            return (
                f"{self.path}: unchanged recipe: version v{self.version} ({self.hash[:12]}) already holds it; "
                "nothing written"
            )
        busy = self.tile_seconds + self.kernel_seconds + self.write_seconds
        share = (
            f" (worker time: tiles {100 * self.tile_seconds / busy:.0f}%, "
            f"kernel {100 * self.kernel_seconds / busy:.0f}%, "
            f"writing {100 * self.write_seconds / busy:.0f}%)"
            if busy > 0 else ""
        )  # fmt: skip
        lines = [
            f"{self.path}: published v{self.version} ({self.hash[:12]}): {self.count:,} cutouts",
            f"  coverage: {self.full:,} fully covered, {self.partial:,} partial, {self.empty:,} empty",
            *self._drop_lines(),
            f"  tiles: {self.tiles_read:,} read into work units, {self.tile_decodes:,} read from the surveys"
            + (f"; {self.reused:,} cutouts reused from the parent version" if self.reused else "")
            + (f"; {self.resumed:,} from an interrupted build" if self.resumed else ""),
            f"  {self.units} work units in {self.seconds:.1f} s: {self.rate:,.0f} cutouts/s{share}",
        ]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])

    def _drop_lines(self) -> list[str]:
        """One line per reason targets were dropped (none when none were)."""
        lines = []
        if self.probed:
            lines.append(
                f"  coverage pass: {self.probed:,} candidates cut in {self.probe_seconds:.1f} s "
                "to measure their coverage"
            )
        if self.uncovered:
            lines.append(
                f"  dropped: {self.uncovered:,} uncovered targets dropped (centre in no survey's MOC or tiles)"
            )
        if self.no_data:
            lines.append(f"  dropped: {self.no_data:,} targets whose cutout holds no data in any channel")
        if self.below_min_coverage:
            per = ", ".join(f"{k} {v:,}" for k, v in self.below_by_channel.items())
            lines.append(
                f"  dropped: {self.below_min_coverage:,} targets below min_coverage (channels below it: {per})"
            )
        return lines


# ----------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class _UnitJob:
    """One Dask task: extract one unit and write its rows of ``images``."""

    surveys: tuple[SurveyRef, ...]
    spec: CutoutSpec
    unit: WorkUnit
    images: str
    marker: str
    dtype: str
    chunk_rows: int
    compressor: str


def _read_marker(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        return {k: (z[k] if k in ("coverage", "channel_coverage") else z[k].item()) for k in z.files}


def run_unit(job: _UnitJob) -> dict[str, Any]:
    """Extract one unit into its rows of the staging ``images`` array and leave its done-marker.

    The unit is cut and written one chunk of rows at a time into one reused buffer, so its
    memory follows ``output.chunk_mb`` (plus the decoded tiles), not the number of targets in
    the unit; the tiles stay decoded from chunk to chunk.
    """
    marker = Path(job.marker)
    if marker.is_file():  # a retried task whose unit is already done
        return {**_read_marker(marker), "skipped": 1}
    unit, rows = job.unit, job.chunk_rows
    extractor = UnitExtractor(job.surveys, job.spec)
    coverage = np.empty(len(unit), dtype=np.float32)
    per_channel = np.empty((len(unit), extractor.nch), dtype=np.float32)
    stats = {"tiles_read": 0.0, "tile_seconds": 0.0, "kernel_seconds": 0.0}
    overflow = 0
    write_seconds = 0.0
    for part, block in extractor.extract_in_pieces(job.spec, unit, rows, stats=stats):
        first = part.start
        n = block.shape[0]
        coverage[part] = np.count_nonzero(np.isfinite(block.reshape(n, -1)), axis=1) / block[0].size
        per_channel[part] = channel_coverage(block)
        t0 = time.perf_counter()
        if job.dtype == "float16":
            with np.errstate(invalid="ignore"):
                overflow += int(np.count_nonzero(np.abs(block) > np.finfo(np.float16).max))
            block = block.astype(np.float16)
        write_image_rows(job.images, unit.start + first, block, chunk_rows=rows, compressor=job.compressor)
        write_seconds += time.perf_counter() - t0
    result = {
        "index": unit.index,
        "n": len(unit),
        "coverage": coverage,
        "channel_coverage": per_channel,
        "tiles_read": int(stats["tiles_read"]),
        "tile_seconds": stats["tile_seconds"],
        "kernel_seconds": stats["kernel_seconds"],
        "write_seconds": write_seconds,
        "float16_overflow": overflow,
    }
    # this process's survey reads so far (its counters start at zero when it opens a survey)
    decoded = sum(open_cached(ref).stats["tile_reads"] for ref in job.surveys)
    with atomic_write(marker) as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in result.items()})  # type: ignore[arg-type]  # numpy's stubs match **arrays against allow_pickle: bool
    return {**result, "skipped": 0, "pid": os.getpid(), "decoded": decoded}


# ----------------------------------------------------------------------------- planning


def _as_recipe(recipe: Recipe | str | os.PathLike[str] | dict[str, Any]) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return parse_recipe(recipe, source="recipe", base_dir=os.getcwd())
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    raise InvalidInputError(f"recipe must be a Recipe, a mapping or a YAML path, got {type(recipe).__name__}")


def _software() -> dict[str, str]:
    import astropy
    import dask
    import numba
    import zarr

    import hipsml

    return {
        "hipsml": hipsml.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "astropy": astropy.__version__,
        "healpy": hp.__version__,
        "numba": numba.__version__,
        "zarr": zarr.__version__,
        "dask": dask.__version__,
    }


def _survey_identity(recipe: Recipe, surveys: list[Any], spec: CutoutSpec) -> list[dict[str, Any]]:
    """What identifies each survey's content (not where it is read from: a mirror is the same survey)."""
    out = []
    for _entry, sv, k in zip(recipe.surveys, surveys, spec.orders, strict=True):
        p = sv.properties
        out.append({
            "creator_did": p.get("creator_did") or p.get("publisher_did") or "",
            "title": p.get("obs_title", ""),
            "release_date": p.get("hips_release_date", ""),
            "tile_format": p.get("hips_tile_format", ""),
            "frame": sv.frame,
            "order": k,
        })  # fmt: skip
    return out


def _content_hash(recipe: Recipe, targets: TargetTable, identity: list[dict[str, Any]], spec: CutoutSpec) -> str:
    import hipsml

    payload = {
        "format": FORMAT_VERSION,
        "hipsml": hipsml.__version__,
        "recipe": recipe.canonical(),
        "targets": targets.content_hash,
        "surveys": identity,
        "pixel_scale": spec.pixel_scale,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _lineage_key(recipe: Recipe, identity: list[dict[str, Any]], spec: CutoutSpec) -> str:
    """What must match for a version to extend another by added targets (all but the target source)."""
    import hipsml

    data = recipe.canonical()
    for k in ("file", "vizier", "tap", "grid"):
        data["targets"].pop(k, None)
    payload = {"hipsml": hipsml.__version__, "recipe": data, "surveys": identity, "pixel_scale": spec.pixel_scale}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _sorted_rows(targets: TargetTable) -> np.ndarray:
    """Row order: NESTED cell at :data:`ROW_ORDER`, ties by id (a pure function of the targets)."""
    cells = hp.ang2pix(1 << ROW_ORDER, targets.ra, targets.dec, nest=True, lonlat=True)
    return np.lexsort((targets.ids, cells))


def _text_ids(values: np.ndarray) -> np.ndarray:
    """Text ids as a fixed-width unicode array (Zarr gives numpy's variable-width StringDType)."""
    return np.asarray(values.tolist(), dtype=str) if values.dtype.kind in "TOS" else values


def _parent_rows(targets: TargetTable, parent: Any, version: int) -> tuple[np.ndarray | None, str]:
    """Rows of an incremental version (the parent's rows in its order, then the new targets sorted),
    or ``(None, reason)`` when ``targets`` does not extend the parent's targets unchanged.

    ``reason`` names the first thing that rules out reusing the parent (one line, no trailing
    period), e.g. ``target 'T00005' of v1 changed position``.
    """
    old_ids = _text_ids(parent["id"][:])
    ids = targets.ids
    if (old_ids.dtype.kind in "iu") != (ids.dtype.kind in "iu"):
        kinds = ("integers", "text") if old_ids.dtype.kind in "iu" else ("text", "integers")
        return None, f"the ids of v{version} are {kinds[0]}, the new ones {kinds[1]}"
    order = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids[order], old_ids), ids.size - 1)
    where = order[pos]
    gone = np.flatnonzero(ids[where] != old_ids)
    if gone.size:
        return None, f"target {old_ids[gone[0]].item()!r} of v{version} is no longer in the targets ({gone.size} gone)"
    moved = np.flatnonzero((targets.ra[where] != parent["ra"][:]) | (targets.dec[where] != parent["dec"][:]))
    if moved.size:
        return None, f"target {old_ids[moved[0]].item()!r} of v{version} changed position ({moved.size} moved)"
    if "rotation" in parent and targets.rotation is not None:
        turned = np.flatnonzero(targets.rotation[where] != parent["rotation"][:])
        if turned.size:
            return None, f"target {old_ids[turned[0]].item()!r} of v{version} changed rotation ({turned.size} turned)"
    if old_ids.size >= len(targets):
        return None, f"no target was added to the {old_ids.size:,} of v{version}"
    rest = np.setdiff1d(np.arange(len(targets)), where, assume_unique=True)
    sub = targets.take(rest)
    return np.concatenate([where, rest[_sorted_rows(sub)]]), ""


def unit_size(n: int, *, chunk: int, targets_per_unit: int, slots: int) -> int:
    """Targets per work unit: at most ``targets_per_unit``, and small enough that ``n`` targets make
    at least two units per worker slot, in whole chunks of ``chunk`` rows (a pure function).

    The units only group the work: each cutout is the same whatever unit cuts it, so the
    dataset is bit-identical for any number of workers.

    Examples
    --------
    >>> unit_size(3000, chunk=10, targets_per_unit=4096, slots=2)  # 4 units of 750
    750
    >>> unit_size(30, chunk=10, targets_per_unit=4096, slots=2)  # never less than a chunk
    10
    """
    per = min(targets_per_unit, n // (2 * max(1, slots)))
    return max(chunk, per // chunk * chunk)


def _check_build_memory(recipe: Recipe, inputs: _Inputs, n: int, chunk: int, id_bytes: int) -> None:
    """Refuse, before any array is allocated, a build whose estimated memory exceeds the budget."""
    c = recipe.compute
    slots = c.workers * c.threads_per_worker
    estimate = estimate_build_memory(
        n, spec=inputs.spec, surveys=inputs.surveys, chunk_rows=chunk, id_bytes=id_bytes, slots=slots,
        unit_targets=unit_size(n, chunk=chunk, targets_per_unit=c.targets_per_unit, slots=slots),
        processes=1 if c.scheduler == "threads" else c.workers,
    )  # fmt: skip
    size = inputs.spec.size
    check_memory(estimate, what=f"recipe {recipe.name!r} ({n:,} cutouts of {len(inputs.channels)} x {size} x {size} "
                 f"pixels, {slots} worker threads)",
                 shrink="cutout.size, output.chunk_mb or compute.workers")  # fmt: skip


def _chunk_rows(recipe: Recipe, channels: int, size: int) -> int:
    per = channels * size * size * (2 if recipe.output.dtype == "float16" else 4)
    return max(1, int(recipe.output.chunk_mb * 2**20 // per))


# ----------------------------------------------------------------------------- writing


def _create_arrays(
    group: Any, recipe: Recipe, targets: TargetTable, splits: np.ndarray, healpix: np.ndarray,
    shape: tuple[int, int, int, int], chunk: int, split_names: list[str],
) -> None:  # fmt: skip
    n = shape[0]
    dtype = recipe.output.dtype
    group.create_array(
        "images", shape=shape, chunks=(chunk, *shape[1:]), dtype=dtype, fill_value=np.nan,
        compressors=zarr_compressors(recipe.output.compressor, np.dtype(dtype).itemsize),
        dimension_names=["cutout", "channel", "y", "x"],
    )  # fmt: skip
    vec_chunk = max(1, min(n, 1 << 18))

    def column(name: str, values: np.ndarray, attrs: dict[str, Any] | None = None) -> None:
        values = np.asarray(values)
        dtype = str if values.dtype.kind == "U" else values.dtype
        arr = group.create_array(name, shape=(n,), chunks=(vec_chunk,), dtype=dtype, dimension_names=["cutout"])
        arr[:] = values
        if attrs:
            arr.attrs.update(attrs)

    column("id", targets.ids)
    column("ra", targets.ra)
    column("dec", targets.dec)
    if targets.labels is not None:
        column("label", targets.labels, {"names": list(targets.label_names)} if targets.label_names else None)
    column("split", splits, {"names": split_names})
    column("healpix", healpix, {"order": recipe.splits.order, "nest": True})
    if targets.rotation is not None:
        column("rotation", targets.rotation, {"unit": "deg"})
    for name, values in targets.carry.items():
        column(name, values)


# ----------------------------------------------------------------------------- the job


def extract_dataset(
    recipe: Recipe | str | os.PathLike[str] | dict[str, Any],
    *,
    resume: bool = True,
    scheduler: str | None = None,
    workers: int | None = None,
    output: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Dataset:
    """Build (or find) the dataset version a recipe describes; return it opened.

    Parameters
    ----------
    recipe : Recipe, mapping or path
        A recipe object, its data, or a YAML file (relative paths are relative to its folder).
    resume : bool
        Continue an interrupted build of the same recipe from its finished units (the default:
        the content hash and the units' done-markers prove them right, and the result is
        bit-identical to an uninterrupted build). ``False`` discards the interrupted build and
        starts again (``hipsml extract --fresh``).
    scheduler : str, optional
        Overrides ``compute.scheduler``: ``threads``, ``processes``, ``tcp://host:port``,
        ``sciserver`` or ``slurm``.
    workers : int, optional
        Overrides ``compute.workers``.
    output : path, optional
        Overrides ``output.path``.
    progress : bool
        Show a progress bar (cutouts done of total, rate).

    Returns
    -------
    Dataset
        The published version; ``.report`` (a :class:`BuildReport`) says what was done.

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.extract_dataset("recipes/demo.yaml")  # the version exists already: nothing is written
    >>> len(ds), ds.version
    (120, 1)
    """
    from hipsml.dataset._dataset import open_dataset

    recipe = _as_recipe(recipe)
    compute: dict[str, Any] = {}
    if scheduler is not None:
        compute["scheduler"] = scheduler
    if workers is not None:
        compute["workers"] = workers
    if compute:
        try:
            recipe = parse_recipe(
                {**recipe.model_dump(mode="json", exclude={"base_dir"}),
                 "compute": {**recipe.compute.model_dump(), **compute}},
                source="command line", base_dir=recipe.base_dir,
            )  # fmt: skip
        except RecipeError as exc:
            raise RecipeError(str(exc).replace("command line: compute.", "--")) from None
    root = user_path(output if output is not None else recipe.resolve(recipe.output.path), what="output.path")
    root = Path(os.path.abspath(root))
    check_output_root(root)
    check_scheduler(recipe.compute.scheduler)  # an unreachable scheduler is refused before anything is made
    created_root = not root.exists()
    try:
        with dataset_lock(root):
            report = _build(recipe, root, resume=resume, progress=progress)
    except BaseException:
        unfinished = any(root.glob(".staging-*")) or any(root.glob(".coverage-*"))  # kept for resume
        if created_root and root.is_dir() and not read_versions(root) and not unfinished:
            shutil.rmtree(root, ignore_errors=True)  # leave nothing behind for a recipe that failed early
        raise
    ds = open_dataset(root, version=report.version)
    ds.report = report
    return ds


@dataclass
class _Inputs:
    """What a build reads: the surveys, the cutout spec, the checked targets, and their identity."""

    refs: tuple[SurveyRef, ...]
    surveys: list[Any]
    spec: CutoutSpec
    targets: TargetTable
    dropped: int
    digest: str
    lineage: str
    channels: list[str]
    groups: dict[str, list[int]]
    footprint_known: bool


def _read_inputs(recipe: Recipe, root: Path) -> _Inputs:
    """Open the surveys, build the spec, load and check the targets, and hash it all."""
    refs = tuple(SurveyRef(recipe.resolve(entry.location), entry.options) for entry in recipe.surveys)
    surveys = [open_cached(ref) for ref in refs]
    c = recipe.cutout
    spec = CutoutSpec.for_surveys(
        surveys, size=c.size, pixel_scale=c.pixel_scale, fov=c.fov, projection=c.projection,
        interpolation=c.interpolation, order=[s.order for s in recipe.surveys], rotation=c.rotation,
    )  # fmt: skip
    targets = load_targets(recipe, dataset_root=root)
    dropped = 0
    known = True
    if recipe.targets.drop_uncovered:
        covered = centre_covered(surveys, spec.orders, targets.ra, targets.dec)
        known = covered is not None
        if covered is None:
            logger.info("a survey has no MOC and is remote: uncovered targets are found by cutting them")
        else:
            dropped = int((~covered).sum())
            if dropped == len(targets):
                raise TargetsError(
                    f"targets: none of the {len(targets)} targets lies in the surveys' coverage (MOC or tiles present)"
                )
            if dropped:
                targets = targets.take(np.flatnonzero(covered))
    identity = _survey_identity(recipe, surveys, spec)
    channels: list[str] = []
    groups: dict[str, list[int]] = {}
    for entry, sv in zip(recipe.surveys, surveys, strict=True):
        name = entry.name or sv.name
        groups.setdefault(name, []).extend(range(len(channels), len(channels) + sv.channels))
        channels += [name] if sv.channels == 1 else [f"{name}[{i}]" for i in range(sv.channels)]
    return _Inputs(refs, surveys, spec, targets, dropped, _content_hash(recipe, targets, identity, spec),
                   _lineage_key(recipe, identity, spec), channels, groups, known)  # fmt: skip


def _order_rows(
    recipe: Recipe, targets: TargetTable, root: Path, versions: list[dict[str, Any]], lineage: str
) -> tuple[TargetTable, Any, str]:
    """The targets in dataset row order, the parent ``(entry, group)`` whose rows come first (or None),
    and, when there is an earlier version but no parent, the reason (one line)."""
    if not versions:
        return targets.take(_sorted_rows(targets)), None, ""
    import zarr

    latest = versions[-1]
    group = zarr.open_group(root / latest["path"], mode="r")
    attrs = hipsml_attrs(group)
    if attrs.get("lineage") != lineage:
        why = lineage_change(recipe, attrs, int(latest["version"]))
    else:
        rows, why = _parent_rows(targets, group, int(latest["version"]))
        if rows is not None:
            return targets.take(rows), (latest, group), ""
    return targets.take(_sorted_rows(targets)), None, why


def _stage_units(
    staging: Path, recipe: Recipe, inputs: _Inputs, targets: TargetTable, parent: Any, chunk: int, resume: bool
) -> tuple[list[WorkUnit], int]:
    """The work units of the build (planned afresh, or those of the interrupted build resumed) and the
    number of leading rows reused from the parent version."""
    state = _open_staging(staging, inputs.digest, resume)
    if state is not None:
        logger.info("resuming the build in %s", staging)
        return _units_from_bounds(state["bounds"], targets, inputs.spec), int(state["reused_rows"])
    split_names = list(recipe.splits.fractions)
    keys = split_keys(recipe.splits.scheme, ids=targets.ids, ra=targets.ra, dec=targets.dec, order=recipe.splits.order)
    splits = assign_splits(keys, salt=recipe.splits.salt, fractions=recipe.splits.fractions)
    healpix = hp.ang2pix(1 << recipe.splits.order, targets.ra, targets.dec, nest=True, lonlat=True).astype(np.int64)
    shape = (len(targets), len(inputs.channels), inputs.spec.size, inputs.spec.size)
    _new_staging(staging, recipe, targets, splits, healpix, shape, chunk, split_names, inputs.digest)
    reused = _link_parent(parent, staging, chunk) if parent is not None else 0
    per_unit = unit_size(len(targets) - reused, chunk=chunk, targets_per_unit=recipe.compute.targets_per_unit,
                         slots=recipe.compute.workers * recipe.compute.threads_per_worker)  # fmt: skip
    units = plan_work_units(
        targets.ra[reused:], targets.dec[reused:], inputs.spec, inputs.surveys,
        rotation=None if targets.rotation is None else targets.rotation[reused:],
        target_per_unit=per_unit, align=chunk, presorted=True,
    )  # fmt: skip
    units = [replace(u, rows=u.rows + reused) for u in units]
    state = {"hash": inputs.digest, "reused_rows": reused, "bounds": [[u.start, u.start + len(u)] for u in units]}
    atomic_write_bytes(staging / _STAGING_FILE, json.dumps(state).encode())
    return units, reused


def _gather_coverage(
    units: list[WorkUnit], markers: Path, n: int, channels: int, parent: Any, reused: int, images: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The coverage ``(N,)`` and channel coverage ``(N, C)`` of every row: from the units' done-markers,
    and the parent's for reused rows (measured on ``images`` where a parent or marker predates it)."""
    coverage = np.empty(n, dtype=np.float32)
    per_channel = np.empty((n, channels), dtype=np.float32)
    if reused:
        coverage[:reused] = parent[1]["coverage"][:reused]
        if "channel_coverage" in parent[1]:
            per_channel[:reused] = parent[1]["channel_coverage"][:reused]
        else:
            per_channel[:reused] = _measure_rows(images, 0, reused)
    for u in units:
        marker = _read_marker(markers / f"{u.index:06d}.npz")
        coverage[u.start : u.start + len(u)] = marker["coverage"]
        if "channel_coverage" in marker:
            per_channel[u.start : u.start + len(u)] = marker["channel_coverage"]
        else:  # a unit finished by an older hipsml before a resume
            per_channel[u.start : u.start + len(u)] = _measure_rows(images, u.start, u.start + len(u))
    return coverage, per_channel


def _measure_rows(images: Any, start: int, stop: int) -> np.ndarray:
    """Channel coverage of rows ``start:stop`` of a Zarr ``images`` array, read a chunk at a time."""
    step = max(1, int(images.chunks[0]))
    return np.concatenate(
        [
            channel_coverage(np.asarray(images[a : min(a + step, stop)], dtype=np.float32))
            for a in range(start, stop, step)
        ]
    )


def _coverage_pass(
    recipe: Recipe, inputs: _Inputs, root: Path, report: BuildReport, *, chunk: int, resume: bool, progress: bool
) -> None:
    """Drop the targets below ``min_coverage`` (and, with ``drop_uncovered`` and a survey whose footprint is
    unknown, those without data) by cutting every candidate once and measuring its channel coverage.

    Updates ``inputs.targets`` and the report's drop counts. The measurements are kept in
    ``DATASET/.coverage-<hash>.npz`` until the version is published, for ``resume``.
    """
    thresholds = coverage_thresholds(recipe.targets.min_coverage, inputs.channels, inputs.groups, source=recipe.name)
    drop_empty = recipe.targets.drop_uncovered and not inputs.footprint_known
    report.min_coverage = dict(zip(inputs.channels, thresholds.tolist(), strict=True))
    if not (drop_empty or thresholds.any()):
        return
    targets = inputs.targets
    saved = root / f".coverage-{inputs.digest[:16]}.npz"
    cc = None
    if resume and saved.is_file():
        with np.load(saved) as z:
            if str(z["hash"]) == inputs.digest and z["channel_coverage"].shape == (len(targets), len(inputs.channels)):
                cc = z["channel_coverage"]
                logger.info("coverage pass: reusing %s", saved)
    if cc is None:
        t0 = time.perf_counter()
        c = recipe.compute  # units sized as the build's own, which the memory check counted
        units = plan_work_units(
            targets.ra, targets.dec, inputs.spec, inputs.surveys, rotation=targets.rotation,
            target_per_unit=unit_size(len(targets), chunk=chunk,
                                      targets_per_unit=c.targets_per_unit, slots=c.workers * c.threads_per_worker),
        )  # fmt: skip
        logger.info(
            "coverage pass: cutting %d candidates in %d units to measure their coverage", len(targets), len(units)
        )
        bar = None
        if progress and units:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(targets), unit="cutout", unit_scale=True, desc=f"coverage {recipe.name}")
        cc = np.empty((len(targets), len(inputs.channels)), dtype=np.float32)
        c = recipe.compute
        try:
            results = run_tasks(
                probe_unit, [ProbeJob(inputs.refs, inputs.spec, u, chunk) for u in units], scheduler=c.scheduler,
                workers=c.workers, threads_per_worker=c.threads_per_worker, slurm=c.slurm,
                done=(lambda r: bar.update(int(r["n"]))) if bar is not None else (lambda r: None),
            )  # fmt: skip
        finally:
            if bar is not None:
                bar.close()
        for r in results:
            cc[r["rows"]] = r["channel_coverage"]
        report.probed, report.probe_seconds = len(targets), time.perf_counter() - t0
        with atomic_write(saved) as fh:
            np.savez(fh, hash=np.asarray(inputs.digest), channel_coverage=cc)
    drops = coverage_drops(cc, thresholds, inputs.channels, drop_empty=drop_empty)
    if not drops.keep.any():
        raise TargetsError(
            f"targets: all {len(targets)} targets were dropped by coverage ({drops.no_data} without data, "
            f"{drops.min_coverage} below min_coverage); lower targets.min_coverage or check the surveys"
        )
    report.no_data, report.below_min_coverage, report.below_by_channel = (
        drops.no_data,
        drops.min_coverage,
        drops.by_channel,
    )
    if not drops.keep.all():
        inputs.targets = targets.take(np.flatnonzero(drops.keep))


def _build(recipe: Recipe, root: Path, *, resume: bool, progress: bool) -> BuildReport:
    t_start = time.perf_counter()
    versions = read_versions(root)
    for entry in versions:  # an index naming a folder that is gone: refused before anything is built
        problem = version_problem(root, entry)
        if problem is not None:
            raise DatasetError(f"{root}: version v{entry['version']} is listed but {problem}; restore it from a "
                               f"good copy, or remove its entry from {root / 'versions.json'}")  # fmt: skip
    if versions:
        check_same_recipe(root, recipe, versions[-1], _read_attrs(root / versions[-1]["path"]))
    inputs = _read_inputs(recipe, root)
    for v in versions:
        if v["hash"] == inputs.digest:
            logger.info("unchanged recipe: version v%s holds it", v["version"])
            return BuildReport(os.fspath(root), int(v["version"]), inputs.digest, created=False, count=int(v["count"]))
    version = max((int(v["version"]) for v in versions), default=0) + 1
    report = BuildReport(os.fspath(root), version, inputs.digest, uncovered=inputs.dropped)
    chunk = _chunk_rows(recipe, len(inputs.channels), inputs.spec.size)
    # the candidates bound the targets kept: checked before the coverage pass cuts anything
    _check_build_memory(recipe, inputs, len(inputs.targets), chunk, inputs.targets.ids.dtype.itemsize)
    before = sum(sv.stats["tile_reads"] for sv in inputs.surveys)  # this process's reads before the cutting
    _coverage_pass(recipe, inputs, root, report, chunk=chunk, resume=resume, progress=progress)
    targets, parent, why = _order_rows(recipe, inputs.targets, root, versions, inputs.lineage)
    staging = root / f".staging-{inputs.digest[:16]}"
    units, reused = _stage_units(staging, recipe, inputs, targets, parent, chunk, resume)

    report.count, report.reused, report.units = len(targets), reused, len(units)
    report.dropped = report.uncovered + report.no_data + report.below_min_coverage
    if why:
        report.notes.append(f"{why}: full build, no parent")
        logger.info("%s: full build, no parent", why)
    markers = staging / _UNITS_DIR
    todo = [u for u in units if not (markers / f"{u.index:06d}.npz").is_file()]
    report.resumed = sum(len(u) for u in units) - sum(len(u) for u in todo)
    jobs = [
        _UnitJob(inputs.refs, inputs.spec, u, os.fspath(staging / _GROUP_DIR / "images"),
                 os.fspath(markers / f"{u.index:06d}.npz"), recipe.output.dtype, chunk, recipe.output.compressor)
        for u in todo
    ]  # fmt: skip
    _run_jobs(jobs, recipe, report, progress, own_reads_before=before)

    coverage, per_channel = _gather_coverage(units, markers, len(targets), len(inputs.channels), parent, reused,
                                             _open_images(staging / _GROUP_DIR))  # fmt: skip
    report.full = int((coverage >= 1.0).sum())
    report.empty = int((coverage <= 0.0).sum())
    report.partial = len(targets) - report.full - report.empty
    if report.float16_overflow:
        report.notes.append(f"{report.float16_overflow:,} pixel values exceed float16's range and are stored as inf")
    _finish_staging(staging, recipe, targets, coverage, per_channel, inputs.spec, inputs.surveys, inputs.channels,
                    list(recipe.splits.fractions), inputs.digest, inputs.lineage, version, parent, report)  # fmt: skip
    manifest = staging / "manifest.json"
    write_manifest(staging / _GROUP_DIR, manifest)  # every file of the version, hard links to the parent's included
    report.seconds = time.perf_counter() - t_start
    publish_version(root, staging / _GROUP_DIR, recipe.name, _read_attrs(staging / _GROUP_DIR), manifest=manifest)
    shutil.rmtree(staging)
    (root / f".coverage-{inputs.digest[:16]}.npz").unlink(missing_ok=True)
    logger.info("%s", report.summary())
    return report


def _open_staging(staging: Path, digest: str, resume: bool) -> dict[str, Any] | None:
    """The state of an interrupted build of this recipe to resume, or None (discarding any)."""
    if not staging.exists():
        if resume:
            logger.info("no interrupted build to resume: starting afresh")
        return None
    state = None
    try:
        state = json.loads((staging / _STAGING_FILE).read_text())
    except (OSError, ValueError):
        state = None
    if resume and state is not None and state.get("hash") == digest:
        return state
    if resume:
        logger.warning("discarding the unreadable interrupted build in %s", staging)
    else:
        logger.info("starting afresh: discarding the interrupted build in %s", staging)
    shutil.rmtree(staging)
    return None


def _new_staging(
    staging: Path, recipe: Recipe, targets: TargetTable, splits: np.ndarray, healpix: np.ndarray,
    shape: tuple[int, int, int, int], chunk: int, split_names: list[str], digest: str,
) -> None:  # fmt: skip
    import zarr

    tmp = staging.with_name(staging.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(tmp / _GROUP_DIR, mode="w", zarr_format=3)
    _create_arrays(group, recipe, targets, splits, healpix, shape, chunk, split_names)
    (tmp / _UNITS_DIR).mkdir()
    os.rename(tmp, staging)
    return None


def _link_parent(parent: tuple[dict[str, Any], Any], staging: Path, chunk: int) -> int:
    """Hard-link the parent's whole ``images`` chunks (rows it shares) into the staging folder.

    Only chunks that prove intact are reused: each is hashed against the parent's manifest (or,
    for a parent published without one, must at least be a regular file). Reuse stops at the
    first chunk that is missing or differs, with a warning naming it; the rows from there on are
    cut again, so a damaged parent can never pass its damage on. Returns the rows reused.
    """
    from hipsml.dataset._integrity import file_sha256, load_manifest

    entry, group = parent
    images = group["images"]
    if images.chunks[0] != chunk:
        return 0
    full = images.shape[0] // chunk
    root = Path(group.store.root) if hasattr(group.store, "root") else None
    if root is None or full == 0:
        return 0
    where = f"{root.parent} v{entry['version']}"
    files = load_manifest(root, entry.get("manifest"), where=where)
    good = linked = 0
    for i in range(full):
        rel = Path("images", "c", str(i), *["0"] * (images.ndim - 1))
        path = root / rel
        record = files.get(rel.as_posix()) if files is not None else None
        intact = (
            path.is_file()
            and not path.is_symlink()
            and (
                files is None
                or (
                    record is not None
                    and path.stat().st_size == record["size"]
                    and file_sha256(path) == record["sha256"]
                )
            )
        )
        if not intact:
            logger.warning("%s: chunk %s is missing or differs from its manifest: reusing the %d chunks before it "
                           "and cutting the rest again (verify and restore v%s)", where, rel.as_posix(), good,
                           entry["version"])  # fmt: skip
            break
        linked += link_or_copy(path, staging / _GROUP_DIR / rel)
        good += 1
    logger.info("reused %d chunks (%d cutouts) of v%s, %d by hard link", good, good * chunk, entry["version"], linked)
    return good * chunk


def _units_from_bounds(bounds: list[list[int]], targets: TargetTable, spec: CutoutSpec) -> list[WorkUnit]:
    units = []
    for i, (a, b) in enumerate(bounds):
        rot = targets.rotation[a:b] if targets.rotation is not None else np.full(b - a, float(spec.rotation))
        units.append(WorkUnit(i, np.arange(a, b), targets.ra[a:b], targets.dec[a:b], rot))
    return units


def _run_jobs(
    jobs: list[_UnitJob], recipe: Recipe, report: BuildReport, progress: bool, *, own_reads_before: int
) -> None:
    bar = None
    if progress and jobs:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(j.unit) for j in jobs), unit="cutout", unit_scale=True, desc=f"extract {recipe.name}")

    reads: dict[int, int] = {}  # process -> its survey reads (cumulative, so keep the latest)

    def done(result: dict[str, Any]) -> None:
        if "pid" in result:
            reads[result["pid"]] = max(reads.get(result["pid"], 0), int(result["decoded"]))
        report.tiles_read += int(result["tiles_read"])
        report.tile_seconds += float(result["tile_seconds"])
        report.kernel_seconds += float(result["kernel_seconds"])
        report.write_seconds += float(result["write_seconds"])
        report.float16_overflow += int(result["float16_overflow"])
        if bar is not None:
            bar.update(int(result["n"]))

    compute = recipe.compute
    try:
        run_tasks(
            run_unit, jobs, scheduler=compute.scheduler, workers=compute.workers,
            threads_per_worker=compute.threads_per_worker, slurm=compute.slurm, done=done,
        )  # fmt: skip
    except HipsmlError as exc:
        if getattr(exc, "resumable", False):
            raise
        finished = sum(Path(j.marker).is_file() for j in jobs)
        hint = (
            f"; the {finished} finished work units of {len(jobs)} are kept and the same extraction run again "
            "continues them"
            if finished
            else f"; none of the {len(jobs)} work units had finished; the same extraction run again starts them"
        )
        try:
            error = type(exc)(f"{exc}{hint}")
        except TypeError:  # an error class with another signature: keep it as it is
            error = exc
        error.resumable = True  # type: ignore[attr-defined]  # the CLI adds the command that continues
        raise error from None
    finally:
        if bar is not None:
            bar.close()
    own = os.getpid()
    report.tile_decodes = sum(reads.values()) - (own_reads_before if own in reads else 0)


def _open_images(group: Path) -> Any:
    import zarr

    return zarr.open_array(group / "images", mode="r")


def _read_attrs(staging: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((staging / "zarr.json").read_text())["attributes"]["hipsml"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{staging / 'zarr.json'} is not a hipsml version's metadata ({exc}); restore the version from a good copy"
        ) from None


def _finish_staging(
    staging: Path, recipe: Recipe, targets: TargetTable, coverage: np.ndarray, per_channel: np.ndarray,
    spec: CutoutSpec, surveys: list[Any],
    channels: list[str], split_names: list[str], digest: str, lineage: str, version: int,
    parent: tuple[dict[str, Any], Any] | None, report: BuildReport,
) -> None:  # fmt: skip
    import zarr

    group = zarr.open_group(staging / _GROUP_DIR, mode="r+")
    n = len(targets)
    arr = group.create_array("coverage", shape=(n,), chunks=(max(1, min(n, 1 << 18)),), dtype="float32",
                             dimension_names=["cutout"], overwrite=True)  # fmt: skip
    arr[:] = coverage
    arr.attrs["description"] = "fraction of the cutout's pixels (all channels) holding survey data"
    cc = group.create_array("channel_coverage", shape=per_channel.shape, dtype="float32", overwrite=True,
                            chunks=(max(1, min(n, 1 << 16)), per_channel.shape[1]),
                            dimension_names=["cutout", "channel"])  # fmt: skip
    cc[:] = per_channel
    cc.attrs["description"] = "fraction of each channel's pixels holding survey data"
    src = group.create_array("source_row", shape=(n,), chunks=(max(1, min(n, 1 << 18)),), dtype="int64",
                             dimension_names=["cutout"], overwrite=True)  # fmt: skip
    assert targets.source_row is not None  # TargetTable.__post_init__ fills it
    src[:] = targets.source_row
    attrs: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": recipe.name,
        "description": recipe.description,
        "version": version,
        "hash": digest,
        "lineage": lineage,
        "created": now_iso(),
        "complete": True,
        "count": n,
        "recipe": recipe.model_dump(mode="json", exclude={"base_dir"}),
        "surveys": [
            {
                "location": sv.location,
                "name": entry.name or sv.name,
                "order": k,
                "frame": sv.frame,
                "tile_width": sv.tile_width,
                "channels": sv.channels,
                "properties": dict(sv.properties),
            }
            for entry, sv, k in zip(recipe.surveys, surveys, spec.orders, strict=True)
        ],  # fmt: skip
        "channels": channels,
        "geometry": {
            "size": spec.size,
            "pixel_scale_arcsec": spec.pixel_scale,
            "projection": spec.projection,
            "interpolation": spec.interpolation,
            "rotation": spec.rotation,
            "crpix": [spec.size / 2 + 0.5, spec.size / 2 + 0.5],
            "cd": "pixel_scale/3600 * [[-cos t, sin t], [sin t, cos t]], t = rotation (deg); row 0 south, east left",
        },  # fmt: skip
        "splits": {**recipe.splits.model_dump(mode="json"), "names": split_names},
        "labels": {
            "column": recipe.targets.columns.label,
            "names": list(targets.label_names) if targets.label_names else None,
        },  # fmt: skip
        "targets": {
            "source": targets.source,
            "hash": targets.content_hash,
            "count": n,
            "frame": recipe.targets.frame,
            "dropped_uncovered": report.uncovered,
            "row_order": f"NESTED order {ROW_ORDER}, ties by id",
            "dropped": {
                "uncovered": report.uncovered,
                "no_data": report.no_data,
                "min_coverage": report.below_min_coverage,
                "min_coverage_by_channel": report.below_by_channel,
            },
            "min_coverage": report.min_coverage,
        },  # fmt: skip
        "software": _software(),
        "parent": None
        if parent is None
        else {
            "version": int(parent[0]["version"]),
            "hash": parent[0]["hash"],
            "reused_cutouts": report.reused,
        },  # fmt: skip
        "summary": {"full": report.full, "partial": report.partial, "empty": report.empty},
    }
    group.attrs["hipsml"] = attrs
