"""Targets of a recipe: a table file, a VizieR or TAP query (saved for offline reruns), or a grid.

:func:`load_targets` turns the recipe's ``targets`` section into a :class:`TargetTable`
of ICRS positions, ids, labels, rotations and carried columns, checking every row. Its
:attr:`TargetTable.content_hash` covers exactly what enters the dataset, so a rerun with
the same content gives the same dataset version whatever the file format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np

from hipsml._files import atomic_write_bytes
from hipsml._suggest import did_you_mean, name_list
from hipsml.dataset._limits import check_grid_cells, grid_cell_count
from hipsml.dataset._recipe import GridTargets, Recipe, TapQuery, Targets, VizierQuery
from hipsml.errors import HipsmlError, TargetsError

__all__ = ["TargetTable", "load_targets", "TABLE_FORMATS", "query_file_name"]

logger = logging.getLogger(__name__)

#: file suffix -> astropy Table format
TABLE_FORMATS = {
    ".csv": "ascii.csv",
    ".ecsv": "ascii.ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".xml": "votable",
    ".vot": "votable",
    ".votable": "votable",
    ".parquet": "parquet",
}

_MAX_TABLE_BYTES = 8 * 2**30


@dataclass(frozen=True, eq=False)
class TargetTable:
    """Checked targets, in the order of their source table.

    Attributes
    ----------
    ra, dec : numpy.ndarray
        ICRS degrees.
    ids : numpy.ndarray
        int64, or unicode strings; unique.
    labels : numpy.ndarray or None
        int64 labels (class codes when the source labels are text: see ``label_names``).
    label_names : tuple of str or None
        The class name of each code when the source labels are text (sorted).
    rotation : numpy.ndarray or None
        Per-target rotation, degrees, when the recipe names a rotation column.
    carry : dict of str to numpy.ndarray
        Extra columns copied into the dataset.
    source_row : numpy.ndarray
        Row of each target in its source table (0-based).
    source : str
        What the targets were read from (a path, or the saved query file).
    """

    ra: np.ndarray
    dec: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] | None = None
    rotation: np.ndarray | None = None
    carry: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    source_row: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.source_row is None:
            object.__setattr__(self, "source_row", np.arange(self.ra.size, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.ra.size)

    @property
    def content_hash(self) -> str:
        """sha256 of every value that enters the dataset (positions, ids, labels, rotation, carried columns)."""
        h = hashlib.sha256()

        def add(name: str, arr: np.ndarray | None) -> None:
            h.update(name.encode() + b"\0")
            if arr is None:
                h.update(b"none")
            elif arr.dtype.kind in "USO":
                h.update(json.dumps([str(v) for v in arr.tolist()]).encode())
            else:
                h.update(str(arr.dtype.str).encode() + np.ascontiguousarray(arr).tobytes())

        add("ra", self.ra)
        add("dec", self.dec)
        add("id", self.ids)
        add("label", self.labels)
        h.update(json.dumps(self.label_names).encode())
        add("rotation", self.rotation)
        add("source_row", self.source_row)
        for name in sorted(self.carry):
            add("carry:" + name, self.carry[name])
        return h.hexdigest()

    def take(self, index: np.ndarray) -> TargetTable:
        """The targets at ``index`` (a permutation or subset)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return TargetTable(
            ra=self.ra[index], dec=self.dec[index], ids=self.ids[index], labels=pick(self.labels),
            label_names=self.label_names, rotation=pick(self.rotation),
            carry={k: v[index] for k, v in self.carry.items()}, source=self.source,
            source_row=self.source_row[index],  # type: ignore[index]
        )  # fmt: skip


def query_file_name(query: VizierQuery | TapQuery) -> str:
    """The file (under ``DATASET/queries/``) that holds the saved result of ``query``."""
    kind = "vizier" if isinstance(query, VizierQuery) else "tap"
    digest = hashlib.sha256(json.dumps(query.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]
    return f"{kind}-{digest}.xml"


def _read_table(path: Path, shown: str) -> Any:
    from astropy.table import Table

    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TargetsError(
            f"targets.file: {shown}: unknown table extension {path.suffix or '(none)'!r}; use one of "
            + ", ".join(TABLE_FORMATS)
        )
    try:
        if not path.is_file():
            raise TargetsError(f"targets.file: {shown}: no such file")
        size = path.stat().st_size
    except OSError as exc:
        raise TargetsError(f"targets.file: {shown}: cannot read it ({exc.strerror or exc})") from None
    if size == 0:
        raise TargetsError(f"targets.file: {shown} is empty")
    if size > _MAX_TABLE_BYTES:
        raise TargetsError(f"targets.file: {shown} is larger than 8 GiB; split the targets")
    try:
        table = _read_parquet(path) if fmt == "parquet" else Table.read(path, format=fmt)
    except HipsmlError:
        raise
    except ImportError as exc:
        raise TargetsError(f"targets.file: {shown}: reading {fmt} needs a package that is missing ({exc})") from None
    except Exception as exc:  # astropy raises many types for malformed tables
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise TargetsError(f"targets.file: {shown}: not a readable {fmt} table ({first})") from None
    if len(table) == 0:
        raise TargetsError(f"targets.file: {shown} has no rows")
    return table


def _read_parquet(path: Path) -> Any:
    """A Parquet file as an astropy Table, with pyarrow alone (astropy's reader needs pandas);
    null cells are masked."""
    import pyarrow.parquet as pq
    from astropy.table import MaskedColumn, Table

    data = pq.read_table(path)
    columns = {}
    for name in data.column_names:
        col = data.column(name)
        values = np.asarray(col.to_numpy(zero_copy_only=False))
        if values.dtype.kind == "O":
            values = np.array(["" if v is None else str(v) for v in values.tolist()], dtype=str)
        mask = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        columns[name] = MaskedColumn(values, mask=mask) if mask.any() else values
    return Table(columns)


def _column(table: Any, name: str, field_name: str, shown: str) -> Any:
    if name not in table.colnames:
        raise TargetsError(
            f"{field_name}: column {name!r} not in {shown} (its columns: {name_list(table.colnames)})"
            f"{did_you_mean(name, table.colnames)}"
        )
    return table[name]


def _float_column(table: Any, name: str, field_name: str, shown: str) -> np.ndarray:
    """A column as float64 (angles in degrees when the column has a unit); masked values are NaN."""
    col = _column(table, name, field_name, shown)
    if getattr(col, "unit", None) is not None:
        from astropy import units as u

        try:
            col = np.ma.MaskedArray(col.quantity.to_value(u.deg), mask=np.ma.getmaskarray(col))
        except (u.UnitConversionError, AttributeError):
            pass  # not an angle: the numbers as they are
    try:
        return np.asarray(np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan), dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise TargetsError(f"{field_name}: column {name!r} of {shown} is not numeric") from None


def _plain(col: Any, field_name: str, name: str, shown: str) -> np.ndarray:
    """A column as a plain numpy array (no mask: a masked value is an error naming the row)."""
    mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else np.zeros(len(col), bool)
    if np.any(mask):
        row = int(np.flatnonzero(mask)[0])
        raise TargetsError(f"{field_name}: column {name!r} of {shown} is empty in data row {row + 1}")
    arr = np.asarray(col)
    if arr.ndim != 1:
        raise TargetsError(f"{field_name}: column {name!r} of {shown} is not a 1-D column (shape {arr.shape})")
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8")
    if arr.dtype.kind == "O":
        arr = arr.astype(str)
    if arr.dtype.kind == "U":  # an empty text cell (VOTable, Parquet) is not masked but is as empty
        blank = np.char.str_len(np.char.strip(arr)) == 0
        if blank.any():
            row = int(np.flatnonzero(blank)[0])
            raise TargetsError(f"{field_name}: column {name!r} of {shown} is empty in data row {row + 1}")
    return arr


def _to_icrs(ra: np.ndarray, dec: np.ndarray, frame: str) -> tuple[np.ndarray, np.ndarray]:
    if frame == "icrs":
        return np.mod(ra, 360.0), dec
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    if frame == "fk5":
        c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="fk5", equinox="J2000").icrs
    else:
        c = SkyCoord(l=ra * u.deg, b=dec * u.deg, frame="galactic").icrs
    return np.mod(c.ra.deg, 360.0), c.dec.deg


def _check_positions(ra: np.ndarray, dec: np.ndarray, ids: np.ndarray, spec: Targets, shown: str) -> None:
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0) & (np.abs(ra) <= 1e6))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TargetsError(
            f"{shown}: data row {i + 1} (id {ids[i].item()!r}) has an invalid position "
            f"({spec.columns.ra}={ra[i].item()!r}, {spec.columns.dec}={dec[i].item()!r}); "
            f"{int(bad.sum())} bad row(s) in all"
        )


def _check_unique(ids: np.ndarray, field_name: str, shown: str) -> None:
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        first, second = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise TargetsError(
            f"{field_name}: {shown} has duplicate id {ids[first].item()!r} in data rows {first + 1} and {second + 1}"
        )


def _labels(col: np.ndarray, name: str, shown: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    if col.dtype.kind in "iu":
        return col.astype(np.int64), None
    if col.dtype.kind == "b":
        return col.astype(np.int64), None
    if col.dtype.kind == "U":
        names, codes = np.unique(col, return_inverse=True)
        return codes.astype(np.int64), tuple(str(n) for n in names)
    if col.dtype.kind == "f" and np.all(np.isfinite(col)) and np.all(col == np.round(col)):
        return col.astype(np.int64), None
    raise TargetsError(
        f"targets.columns.label: column {name!r} of {shown} holds {col.dtype} values; labels must be integers or text"
    )


def _from_table(table: Any, spec: Targets, recipe: Recipe, shown: str) -> TargetTable:
    cols = spec.columns
    ra = _float_column(table, cols.ra, "targets.columns.ra", shown)
    dec = _float_column(table, cols.dec, "targets.columns.dec", shown)
    if cols.id is not None:
        ids = _plain(_column(table, cols.id, "targets.columns.id", shown), "targets.columns.id", cols.id, shown)
        if ids.dtype.kind not in "iuU":
            raise TargetsError(
                f"targets.columns.id: column {cols.id!r} of {shown} holds {ids.dtype} values; "
                "ids must be integers or text"
            )
        ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids
    else:
        ids = np.arange(len(table), dtype=np.int64)
    _check_positions(ra, dec, ids, spec, shown)
    _check_unique(ids, "targets.columns.id", shown)
    labels, label_names = None, None
    if cols.label is not None:
        raw = _plain(
            _column(table, cols.label, "targets.columns.label", shown), "targets.columns.label", cols.label, shown
        )
        labels, label_names = _labels(raw, cols.label, shown)
    rotation = None
    if isinstance(recipe.cutout.rotation, str):
        rotation = _float_column(table, recipe.cutout.rotation, "cutout.rotation", shown)
        bad = ~(np.isfinite(rotation) & (np.abs(rotation) <= 1e6))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TargetsError(
                f"cutout.rotation: column {recipe.cutout.rotation!r} of {shown} is not finite in data row {i + 1}"
            )
    carry = {}
    reserved = {
        "images",
        "id",
        "ra",
        "dec",
        "label",
        "split",
        "healpix",
        "coverage",
        "channel_coverage",
        "source_row",
        "rotation",
    }
    for name in spec.carry:
        if name in reserved:
            raise TargetsError(f"targets.carry: {name!r} is a dataset array name; rename the column")
        col = _column(table, name, "targets.carry", shown)
        arr = np.asarray(col.filled(np.nan) if hasattr(col, "filled") and np.asarray(col).dtype.kind == "f" else col)
        if hasattr(col, "mask") and np.any(np.ma.getmaskarray(col)) and arr.dtype.kind != "f":
            arr = _plain(col, "targets.carry", name, shown)
        if arr.dtype.kind == "S":
            arr = np.char.decode(arr, "utf-8")
        if arr.ndim != 1 or arr.dtype.kind not in "biufU":
            raise TargetsError(f"targets.carry: column {name!r} of {shown} must be a 1-D number or text column")
        if arr.dtype.kind != "U":
            arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)  # FITS columns are big-endian
        carry[name] = arr
    ra, dec = _to_icrs(ra, dec, spec.frame)
    return TargetTable(ra, dec, ids, labels, label_names, rotation, carry, shown)


def _grid(grid: GridTargets, spec: Targets, recipe: Recipe) -> TargetTable:
    nside = 1 << grid.order
    if grid.moc is not None:
        from hipsml.hips import Moc

        path = Path(recipe.resolve(grid.moc))
        try:
            moc = Moc.from_fits(path.read_bytes(), source=os.fspath(path))
        except OSError as exc:
            raise TargetsError(f"targets.grid.moc: cannot read {path} ({exc.strerror or exc})") from None
        check_grid_cells(
            grid_cell_count(grid.order, ranges=(moc.starts, moc.ends)), f"order {grid.order} in {path.name}"
        )
        shift = 2 * (29 - grid.order)
        # cells wholly inside the MOC: [c << shift, (c + 1) << shift) within one [start, end)
        lo = -(-moc.starts // (1 << shift))
        hi = moc.ends >> shift
        cells = np.concatenate(
            [np.arange(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True) if b > a] or [np.zeros(0, np.int64)]
        )
        cells = np.unique(cells.astype(np.int64))
    else:
        assert grid.center is not None and grid.radius is not None
        check_grid_cells(
            grid_cell_count(grid.order, radius=grid.radius), f"order {grid.order} over a {grid.radius:g}° disc"
        )
        ra0, dec0 = _to_icrs(np.array([grid.center[0]]), np.array([grid.center[1]]), spec.frame)
        vec = hp.ang2vec(float(ra0[0]), float(dec0[0]), lonlat=True)
        cells = np.sort(hp.query_disc(nside, vec, np.radians(grid.radius), nest=True)).astype(np.int64)
    if cells.size == 0:
        raise TargetsError("targets.grid: the region holds no cell centre at this order; raise the order")
    check_grid_cells(cells.size, f"order {grid.order}")
    ra, dec = hp.pix2ang(nside, cells, nest=True, lonlat=True)
    return TargetTable(np.mod(ra, 360.0), dec, cells, source=f"grid order {grid.order}")


def _run_query(query: VizierQuery | TapQuery) -> Any:
    """Run an online query with astroquery (needs the internet)."""
    try:
        if isinstance(query, VizierQuery):
            from astroquery.vizier import Vizier

            viz = Vizier(columns=query.columns or ["**"], column_filters=dict(query.filters), row_limit=query.row_limit)
            tables = viz.get_catalogs(query.catalog)
            if len(tables) == 0:
                raise TargetsError(f"targets.vizier: catalogue {query.catalog!r} returned no table")
            return tables[0]
        from astroquery.utils.tap.core import TapPlus

        return TapPlus(url=query.url, verbose=False).launch_job_async(query.query, verbose=False).get_results()
    except HipsmlError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        kind = "vizier" if isinstance(query, VizierQuery) else "tap"
        raise TargetsError(
            f"targets.{kind}: the query failed ({first}); it needs the internet the first time"
        ) from None


def _query_table(query: VizierQuery | TapQuery, dataset_root: Path) -> tuple[Any, str]:
    """The query's table: the copy saved beside the dataset (VOTable), or run online and saved."""
    saved = dataset_root / "queries" / query_file_name(query)
    if not saved.is_file():
        table = _run_query(query)
        for name in table.colnames:  # object columns do not round-trip through VOTable
            if table[name].dtype.kind == "O":
                table[name] = table[name].astype(str)
        import io

        buf = io.BytesIO()
        table.write(buf, format="votable")
        atomic_write_bytes(saved, buf.getvalue())
        logger.info("saved the query result (%d rows) to %s", len(table), saved)
    else:
        logger.info("targets from the saved query result %s", saved)
    return _read_table(saved, os.path.basename(saved)), os.fspath(saved)


def load_targets(recipe: Recipe, *, dataset_root: str | os.PathLike[str]) -> TargetTable:
    """The recipe's targets, checked: positions finite and in range, ids unique, columns present.

    Online queries (``vizier``, ``tap``) are run once and saved under
    ``DATASET/queries/``; later runs read the saved table, offline and identical.
    """
    spec = recipe.targets
    if spec.grid is not None:
        return _grid(spec.grid, spec, recipe)
    if spec.file is not None:
        path = Path(recipe.resolve(spec.file))
        table, shown = _read_table(path, spec.file), spec.file
    else:
        query = spec.vizier if spec.vizier is not None else spec.tap
        assert query is not None
        table, saved = _query_table(query, Path(dataset_root))
        shown = os.path.basename(saved)
    return _from_table(table, spec, recipe, shown)
