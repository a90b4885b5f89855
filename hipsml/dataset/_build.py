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
import math
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
from hipsml.dataset._dataset import Dataset
from hipsml.dataset._recipe import Recipe, load_recipe, parse_recipe
from hipsml.dataset._runner import run_tasks
from hipsml.dataset._splits import assign_splits, split_keys
from hipsml.dataset._store import (
    FORMAT_NAME,
    FORMAT_VERSION,
    check_output_root,
    dataset_lock,
    link_or_copy,
    now_iso,
    publish_version,
    read_versions,
    write_image_rows,
)
from hipsml.dataset._targets import TargetTable, load_targets
from hipsml.errors import HipsmlError, InvalidInputError, RecipeError, TargetsError
from hipsml.extract import CutoutSpec, SurveyRef, WorkUnit, extract_unit, open_cached, plan_work_units

__all__ = ["extract_dataset", "BuildReport", "ROW_ORDER"]

logger = logging.getLogger(__name__)

#: NESTED order of the row sort (ties by id): rows are a pure function of the targets
ROW_ORDER = 16

_UNITS_DIR = "units"
_GROUP_DIR = "group"
_STAGING_FILE = "staging.json"


@dataclass
class BuildReport:
    """What a build did (``Dataset.report`` after :func:`extract_dataset`)."""

    path: str
    version: int
    hash: str
    created: bool = True
    count: int = 0
    full: int = 0
    partial: int = 0
    empty: int = 0
    dropped: int = 0
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
            return f"{self.path}: unchanged recipe: version v{self.version} ({self.hash[:12]}) already holds it; nothing written"
        busy = self.tile_seconds + self.kernel_seconds + self.write_seconds
        share = (
            f" (worker time: tiles {100 * self.tile_seconds / busy:.0f}%, kernel {100 * self.kernel_seconds / busy:.0f}%, "
            f"writing {100 * self.write_seconds / busy:.0f}%)"
            if busy > 0 else ""
        )  # fmt: skip
        lines = [
            f"{self.path}: published v{self.version} ({self.hash[:12]}): {self.count:,} cutouts",
            f"  coverage: {self.full:,} fully covered, {self.partial:,} partial, {self.empty:,} empty"
            + (f"; {self.dropped:,} uncovered targets dropped" if self.dropped else ""),
            f"  tiles: {self.tiles_read:,} read into work units, {self.tile_decodes:,} read from the surveys"
            + (f"; {self.reused:,} cutouts reused from the parent version" if self.reused else "")
            + (f"; {self.resumed:,} from an interrupted build" if self.resumed else ""),
            f"  {self.units} work units in {self.seconds:.1f} s: {self.rate:,.0f} cutouts/s{share}",
        ]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


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
        return {k: (z[k] if k == "coverage" else z[k].item()) for k in z.files}


def run_unit(job: _UnitJob) -> dict[str, Any]:
    """Extract one unit into its rows of the staging ``images`` array and leave its done-marker."""
    marker = Path(job.marker)
    if marker.is_file():  # a retried task whose unit is already done
        return {**_read_marker(marker), "skipped": 1}
    stats: dict[str, float] = {}
    block = extract_unit(job.surveys, job.spec, job.unit, stats=stats)
    n = block.shape[0]
    covered = np.count_nonzero(np.isfinite(block.reshape(n, -1)), axis=1)
    coverage = (covered / block[0].size).astype(np.float32)
    t0 = time.perf_counter()
    overflow = 0
    if job.dtype == "float16":
        with np.errstate(invalid="ignore"):
            overflow = int(np.count_nonzero(np.abs(block) > np.finfo(np.float16).max))
        block = block.astype(np.float16)
    write_image_rows(job.images, job.unit.start, block, chunk_rows=job.chunk_rows, compressor=job.compressor)
    write_seconds = time.perf_counter() - t0
    result = {
        "index": job.unit.index,
        "n": len(job.unit),
        "coverage": coverage,
        "tiles_read": int(stats["tiles_read"]),
        "tile_seconds": stats["tile_seconds"],
        "kernel_seconds": stats["kernel_seconds"],
        "write_seconds": write_seconds,
        "float16_overflow": overflow,
    }
    # this process's survey reads so far (its counters start at zero when it opens a survey)
    decoded = sum(open_cached(ref).stats["tile_reads"] for ref in job.surveys)
    with atomic_write(marker) as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in result.items()})
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
    for entry, sv, k in zip(recipe.surveys, surveys, spec.orders):
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


def _parent_rows(targets: TargetTable, parent: Any) -> np.ndarray | None:
    """Rows of an incremental version (the parent's rows in its order, then the new targets sorted),
    or None when ``targets`` does not extend the parent's targets unchanged."""
    old_ids = parent["id"][:]
    if old_ids.size >= len(targets):
        return None
    ids = targets.ids
    if (old_ids.dtype.kind in "iu") != (ids.dtype.kind in "iu"):
        return None
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], old_ids)
    pos = np.minimum(pos, ids.size - 1)
    where = order[pos]
    if not np.array_equal(ids[where], old_ids):
        return None
    if not (np.array_equal(targets.ra[where], parent["ra"][:]) and np.array_equal(targets.dec[where], parent["dec"][:])):
        return None
    rest = np.setdiff1d(np.arange(len(targets)), where, assume_unique=True)
    sub = targets.take(rest)
    return np.concatenate([where, rest[_sorted_rows(sub)]])


def _chunk_rows(recipe: Recipe, channels: int, size: int) -> int:
    per = channels * size * size * (2 if recipe.output.dtype == "float16" else 4)
    return max(1, int(recipe.output.chunk_mb * 2**20 // per))


def _compressors(name: str, itemsize: int) -> Any:
    from zarr.codecs import BloscCodec

    if name == "none":
        return None
    return BloscCodec(cname=name, clevel=1, shuffle="shuffle", typesize=itemsize)


# ----------------------------------------------------------------------------- writing


def _create_arrays(
    group: Any, recipe: Recipe, targets: TargetTable, splits: np.ndarray, healpix: np.ndarray,
    shape: tuple[int, int, int, int], chunk: int, split_names: list[str],
) -> None:  # fmt: skip
    n = shape[0]
    dtype = recipe.output.dtype
    group.create_array(
        "images", shape=shape, chunks=(chunk, *shape[1:]), dtype=dtype, fill_value=np.nan,
        compressors=_compressors(recipe.output.compressor, np.dtype(dtype).itemsize),
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


def _coverage_of(surveys: list[Any], spec: CutoutSpec, targets: TargetTable) -> np.ndarray:
    """True where a target's centre lies in at least one survey's coverage MOC (no MOC: covered)."""
    from hipsml.hips._frames import icrs_to_frame

    covered = np.zeros(len(targets), dtype=bool)
    vec = hp.ang2vec(targets.ra, targets.dec, lonlat=True)
    for sv, k in zip(surveys, spec.orders):
        if sv.moc is None:
            return np.ones(len(targets), dtype=bool)
        v = vec @ icrs_to_frame(sv.frame).T
        npix = hp.vec2pix(1 << k, v[:, 0], v[:, 1], v[:, 2], nest=True)
        covered |= sv.moc.contains_tiles(k, npix)
    return covered


# ----------------------------------------------------------------------------- the job


def extract_dataset(
    recipe: Recipe | str | os.PathLike[str] | dict[str, Any],
    *,
    resume: bool = False,
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
        Continue an interrupted build of the same recipe from its finished units (the result
        is bit-identical to an uninterrupted build). Without it an interrupted build is
        discarded and started again.
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
                {**recipe.model_dump(mode="json", exclude={"base_dir"}), "compute": {**recipe.compute.model_dump(), **compute}},
                source="command line", base_dir=recipe.base_dir,
            )  # fmt: skip
        except RecipeError as exc:
            raise RecipeError(str(exc).replace("command line: compute.", "--")) from None
    root = user_path(output if output is not None else recipe.resolve(recipe.output.path), what="output.path")
    root = Path(os.path.abspath(root))
    check_output_root(root)
    created_root = not root.exists()
    try:
        with dataset_lock(root):
            report = _build(recipe, root, resume=resume, progress=progress)
    except BaseException:
        if created_root and root.is_dir() and not read_versions(root) and not any(root.glob(".staging-*")):
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
    if recipe.targets.drop_uncovered:
        covered = _coverage_of(surveys, spec, targets)
        dropped = int((~covered).sum())
        if dropped == len(targets):
            raise TargetsError(f"targets: none of the {len(targets)} targets lies in the surveys' coverage")
        if dropped:
            targets = targets.take(np.flatnonzero(covered))
    identity = _survey_identity(recipe, surveys, spec)
    channels: list[str] = []
    for entry, sv in zip(recipe.surveys, surveys):
        name = entry.name or sv.name
        channels += [name] if sv.channels == 1 else [f"{name}[{i}]" for i in range(sv.channels)]
    return _Inputs(refs, surveys, spec, targets, dropped, _content_hash(recipe, targets, identity, spec),
                   _lineage_key(recipe, identity, spec), channels)  # fmt: skip


def _order_rows(targets: TargetTable, root: Path, versions: list[dict[str, Any]], lineage: str) -> tuple[TargetTable, Any]:
    """The targets in dataset row order, and the parent ``(entry, group)`` whose rows come first (or None)."""
    if versions:
        import zarr

        latest = versions[-1]
        group = zarr.open_group(root / latest["path"], mode="r")
        if group.attrs.get("hipsml", {}).get("lineage") == lineage:
            rows = _parent_rows(targets, group)
            if rows is not None:
                return targets.take(rows), (latest, group)
    return targets.take(_sorted_rows(targets)), None


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
    per_unit = max(chunk, recipe.compute.targets_per_unit // chunk * chunk)
    units = plan_work_units(
        targets.ra[reused:], targets.dec[reused:], inputs.spec, inputs.surveys,
        rotation=None if targets.rotation is None else targets.rotation[reused:],
        target_per_unit=per_unit, align=chunk, presorted=True,
    )  # fmt: skip
    units = [replace(u, rows=u.rows + reused) for u in units]
    state = {"hash": inputs.digest, "reused_rows": reused, "bounds": [[u.start, u.start + len(u)] for u in units]}
    atomic_write_bytes(staging / _STAGING_FILE, json.dumps(state).encode())
    return units, reused


def _gather_coverage(units: list[WorkUnit], markers: Path, n: int, parent: Any, reused: int) -> np.ndarray:
    """The coverage of every row: from the units' done-markers, and the parent's for reused rows."""
    coverage = np.empty(n, dtype=np.float32)
    if reused:
        coverage[:reused] = parent[1]["coverage"][:reused]
    for u in units:
        coverage[u.start : u.start + len(u)] = _read_marker(markers / f"{u.index:06d}.npz")["coverage"]
    return coverage


def _build(recipe: Recipe, root: Path, *, resume: bool, progress: bool) -> BuildReport:
    t_start = time.perf_counter()
    inputs = _read_inputs(recipe, root)
    versions = read_versions(root)
    for v in versions:
        if v["hash"] == inputs.digest:
            logger.info("unchanged recipe: version v%s holds it", v["version"])
            return BuildReport(os.fspath(root), int(v["version"]), inputs.digest, created=False, count=int(v["count"]))
    version = max((int(v["version"]) for v in versions), default=0) + 1
    targets, parent = _order_rows(inputs.targets, root, versions, inputs.lineage)
    chunk = _chunk_rows(recipe, len(inputs.channels), inputs.spec.size)
    staging = root / f".staging-{inputs.digest[:16]}"
    units, reused = _stage_units(staging, recipe, inputs, targets, parent, chunk, resume)

    report = BuildReport(os.fspath(root), version, inputs.digest, count=len(targets), dropped=inputs.dropped,
                         reused=reused, units=len(units))  # fmt: skip
    markers = staging / _UNITS_DIR
    todo = [u for u in units if not (markers / f"{u.index:06d}.npz").is_file()]
    report.resumed = sum(len(u) for u in units) - sum(len(u) for u in todo)
    jobs = [
        _UnitJob(inputs.refs, inputs.spec, u, os.fspath(staging / _GROUP_DIR / "images"),
                 os.fspath(markers / f"{u.index:06d}.npz"), recipe.output.dtype, chunk, recipe.output.compressor)
        for u in todo
    ]  # fmt: skip
    before = sum(sv.stats["tile_reads"] for sv in inputs.surveys)  # reads of this process before the units
    _run_jobs(jobs, recipe, report, progress, own_reads_before=before)

    coverage = _gather_coverage(units, markers, len(targets), parent, reused)
    report.full = int((coverage >= 1.0).sum())
    report.empty = int((coverage <= 0.0).sum())
    report.partial = len(targets) - report.full - report.empty
    if report.float16_overflow:
        report.notes.append(f"{report.float16_overflow:,} pixel values exceed float16's range and are stored as inf")
    _finish_staging(staging, recipe, targets, coverage, inputs.spec, inputs.surveys, inputs.channels,
                    list(recipe.splits.fractions), inputs.digest, inputs.lineage, version, parent, report)  # fmt: skip
    report.seconds = time.perf_counter() - t_start
    publish_version(root, staging / _GROUP_DIR, recipe.name, _read_attrs(staging / _GROUP_DIR))
    shutil.rmtree(staging)
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
    logger.warning("discarding the interrupted build in %s%s", staging, "" if resume else " (use resume to continue one)")
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
    """Hard-link the parent's whole ``images`` chunks (rows it shares) into the staging folder."""
    entry, group = parent
    images = group["images"]
    if images.chunks[0] != chunk:
        return 0
    full = images.shape[0] // chunk
    src = Path(group.store.root) / "images" / "c" if hasattr(group.store, "root") else None
    if src is None or full == 0:
        return 0
    linked = 0
    for i in range(full):
        rel = Path(str(i), *["0"] * (images.ndim - 1))
        if (src / rel).is_file():
            linked += link_or_copy(src / rel, staging / _GROUP_DIR / "images" / "c" / rel)
    logger.info("reused %d chunks (%d cutouts) of v%s, %d by hard link", full, full * chunk, entry["version"], linked)
    return full * chunk


def _units_from_bounds(bounds: list[list[int]], targets: TargetTable, spec: CutoutSpec) -> list[WorkUnit]:
    units = []
    for i, (a, b) in enumerate(bounds):
        rot = targets.rotation[a:b] if targets.rotation is not None else np.full(b - a, float(spec.rotation))
        units.append(WorkUnit(i, np.arange(a, b), targets.ra[a:b], targets.dec[a:b], rot))
    return units


def _run_jobs(jobs: list[_UnitJob], recipe: Recipe, report: BuildReport, progress: bool, *, own_reads_before: int) -> None:
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
        if "resume=True" in str(exc):
            raise
        hint = "; the finished work units are kept: run again with resume=True to continue"
        try:
            error = type(exc)(f"{exc}{hint}")
        except TypeError:  # an error class with another signature: keep it as it is
            raise exc from None
        raise error from None
    finally:
        if bar is not None:
            bar.close()
    own = os.getpid()
    report.tile_decodes = sum(reads.values()) - (own_reads_before if own in reads else 0)


def _read_attrs(staging: Path) -> dict[str, Any]:
    return json.loads((staging / "zarr.json").read_text())["attributes"]["hipsml"]


def _finish_staging(
    staging: Path, recipe: Recipe, targets: TargetTable, coverage: np.ndarray, spec: CutoutSpec, surveys: list[Any],
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
    src = group.create_array("source_row", shape=(n,), chunks=(max(1, min(n, 1 << 18)),), dtype="int64",
                             dimension_names=["cutout"], overwrite=True)  # fmt: skip
    src[:] = targets.source_row
    attrs = {
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
            {"location": sv.location, "name": entry.name or sv.name, "order": k, "frame": sv.frame,
             "tile_width": sv.tile_width, "channels": sv.channels, "properties": dict(sv.properties)}
            for entry, sv, k in zip(recipe.surveys, surveys, spec.orders)
        ],  # fmt: skip
        "channels": channels,
        "geometry": {
            "size": spec.size, "pixel_scale_arcsec": spec.pixel_scale, "projection": spec.projection,
            "interpolation": spec.interpolation, "rotation": spec.rotation,
            "crpix": [spec.size / 2 + 0.5, spec.size / 2 + 0.5],
            "cd": "pixel_scale/3600 * [[-cos t, sin t], [sin t, cos t]], t = rotation (deg); row 0 south, east left",
        },  # fmt: skip
        "splits": {**recipe.splits.model_dump(mode="json"), "names": split_names},
        "labels": {"column": recipe.targets.columns.label,
                   "names": list(targets.label_names) if targets.label_names else None},  # fmt: skip
        "targets": {"source": targets.source, "hash": targets.content_hash, "count": n, "frame": recipe.targets.frame,
                    "dropped_uncovered": report.dropped, "row_order": f"NESTED order {ROW_ORDER}, ties by id"},  # fmt: skip
        "software": _software(),
        "parent": None if parent is None else {"version": int(parent[0]["version"]), "hash": parent[0]["hash"],
                                               "reused_cutouts": report.reused},  # fmt: skip
        "summary": {"full": report.full, "partial": report.partial, "empty": report.empty},
    }
    group.attrs["hipsml"] = attrs
