"""Reading a published dataset version: :func:`open_dataset` and :class:`Dataset`."""

from __future__ import annotations

import logging
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from hipsml._files import atomic_write_bytes, check_writable_file, user_path
from hipsml.dataset._integrity import (
    VerifyReport,
    check_files,
    check_image_chunks,
    check_metadata,
    load_manifest,
    verify_version,
)
from hipsml.dataset._store import hipsml_attrs, resolve_version
from hipsml.errors import DatasetError, DatasetNotFoundError, IndexOutOfRangeError, InvalidInputError

if TYPE_CHECKING:
    import zarr

__all__ = ["Dataset", "as_dataset", "open_dataset", "parse_dataset_path", "verify_dataset"]

logger = logging.getLogger(__name__)

_CORE_COLUMNS = ("id", "ra", "dec", "label", "split", "healpix", "coverage", "source_row", "rotation")


def parse_dataset_path(text: str | os.PathLike[str]) -> tuple[Path, str]:
    """``PATH[@vN]`` -> (path, version): ``datasets/demo@v2`` -> (datasets/demo, "v2").

    Examples
    --------
    >>> parse_dataset_path("datasets/demo@v2")
    (PosixPath('datasets/demo'), 'v2')
    >>> parse_dataset_path("datasets/demo")
    (PosixPath('datasets/demo'), 'latest')
    """
    s = os.fspath(user_path(text, what="dataset"))
    m = re.fullmatch(r"(.+)@(v?\d+|latest)", s)
    if m:
        return user_path(m.group(1), what="dataset"), m.group(2)
    return user_path(s, what="dataset"), "latest"


class Dataset:
    """One published version of a hipsml dataset (a Zarr v3 group), opened for reading.

    Attributes
    ----------
    path : pathlib.Path
        The dataset folder (holding ``versions.json``).
    version : int
    hash : str
        Content hash of the version (recipe, targets, surveys, hipsml version).
    group : zarr.Group
        The version's Zarr group (``images``, ``id``, ``ra``, ``dec``, ``split``, ...).
    attrs : dict
        The group's ``hipsml`` attributes: recipe, surveys' properties, geometry, software.
    report : BuildReport or None
        What :func:`hipsml.extract_dataset` did, when it returned this object.

    Opening checks the version cheaply (see :func:`open_dataset`); :meth:`verify` hashes it.
    """

    def __init__(self, path: Path, entry: dict[str, Any], *, verify: bool = False) -> None:
        import zarr

        self.path = path
        self.version = int(entry["version"])
        self.hash: str = entry["hash"]
        self.location = path / entry["path"]
        self._entry = dict(entry)
        where = self._where
        files = load_manifest(self.location, entry.get("manifest"), where=where)
        if verify:
            verify_version(self.location, files, version=self.version, where=where)
        elif files is not None:
            check_files(self.location, files, where=where)
        try:
            self.group = zarr.open_group(self.location, mode="r")
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetNotFoundError(f"{self.location}: not a readable Zarr group ({exc})") from None
        self.attrs: dict[str, Any] = hipsml_attrs(self.group)
        check_metadata(self.group, self.attrs, int(entry["count"]), where=where)  # shapes first: bounded work below
        if files is None:
            check_image_chunks(self.location, self.group["images"], where=where)
        self.report: Any = None

    @property
    def _where(self) -> str:
        return f"{self.path} v{self.version}"

    def _array(self, name: str) -> zarr.Array:
        """The array ``name`` of the version's group (zarr types a member as an array or a group)."""
        return cast("zarr.Array", self.group[name])

    def _value(self, name: str, row: int) -> Any:
        """Row ``row`` of the 1-D array ``name``: a numpy scalar (zarr types it as any array-like)."""
        return self._array(name)[row]

    def verify(self, *, threads: int | None = None) -> VerifyReport:
        """Hash every file of this version against its manifest (on ``threads`` threads).

        Returns
        -------
        VerifyReport
            Files and bytes checked, and the time taken.

        Raises
        ------
        DatasetError
            A file is missing, a symlink, of another size or content, or not in the manifest (every
            one is named), or the version was published without a manifest.

        Examples
        --------
        >>> import hipsml
        >>> report = hipsml.open_dataset("demo-output/datasets/demo").verify()
        >>> report.files > 10 and report.bytes > 0  # every file of the version, hashed
        True
        """
        files = load_manifest(self.location, self._entry.get("manifest"), where=self._where)
        return verify_version(self.location, files, version=self.version, where=self._where, threads=threads)

    def read_images(self, indices: Any) -> np.ndarray:
        """The images of rows ``indices`` (any order, repeats allowed), as stored (float32 or float16).

        Unlike ``ds.images[...]``, a chunk that cannot be decoded is a :class:`~hipsml.errors.DatasetError`
        naming the array, the chunk and the version.
        """
        idx = np.atleast_1d(np.asarray(indices))
        n = len(self)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise InvalidInputError("indices must be a 1-D array of integer row indices")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise InvalidInputError(f"indices must be within 0..{n - 1}")
        idx = np.mod(idx, n) if idx.size else idx.astype(np.int64)
        rows, inverse = np.unique(idx, return_inverse=True)  # read in storage order, once each
        try:
            block = np.asarray(self.images.get_orthogonal_selection((rows,)))
        except Exception as exc:
            raise self._chunk_error("images", rows, exc) from exc
        return block[inverse.reshape(-1)]

    def read_image_slice(self, start: int, stop: int) -> np.ndarray:
        """The images of rows ``start:stop`` (whole chunks read at once), as stored.

        Like :meth:`read_images`, a chunk that cannot be decoded is a
        :class:`~hipsml.errors.DatasetError` naming the array, the chunk and the version.
        """
        try:
            return np.asarray(self.images[start:stop])
        except Exception as exc:
            raise self._chunk_error("images", np.arange(start, stop), exc) from exc

    def _chunk_error(self, name: str, rows: np.ndarray, exc: BaseException) -> DatasetError:
        """The error naming the first chunk of array ``name`` among ``rows`` that fails to decode."""
        arr = self._array(name)
        chunk, n = int(arr.chunks[0]), int(arr.shape[0])
        for k in np.unique(np.asarray(rows) // chunk).tolist():
            lo, hi = k * chunk, min((k + 1) * chunk, n)
            try:
                arr[lo:hi]
            except Exception as inner:  # this chunk is a bad one
                return DatasetError(f"{self._where}: array {name!r} chunk {k} (rows {lo}..{hi - 1}) cannot be "
                                    f"read ({type(inner).__name__}: {inner}); "
                                    "restore the version from a good copy")  # fmt: skip
        return DatasetError(f"{self._where}: array {name!r} cannot be read ({type(exc).__name__}: {exc})")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return f"<hipsml Dataset {self.attrs.get('name', '')!r} v{self.version} ({len(self)} cutouts) at {self.path}>"

    @property
    def images(self) -> Any:
        """The ``(N, C, size, size)`` Zarr array (read slices: ``ds.images[0:256]``)."""
        return self.group["images"]

    @property
    def recipe(self) -> dict[str, Any]:
        """The recipe this version was built from."""
        return dict(self.attrs.get("recipe", {}))

    @property
    def channels(self) -> list[str]:
        return list(self.attrs.get("channels", []))

    @property
    def split_names(self) -> list[str]:
        return list(cast("list[str]", self._array("split").attrs.get("names", [])))

    @property
    def label_names(self) -> list[str] | None:
        if "label" not in self.group:
            return None
        names = cast("list[str] | None", self._array("label").attrs.get("names"))
        return list(names) if names else None

    @property
    def class_names(self) -> list[str] | None:
        """The classes' names by code: the label names, or ``"0", "1", ...`` for integer labels; None unlabelled.

        What a classifier and its scores call the classes, whatever the labels were stored as.
        """
        if "label" not in self.group:
            return None
        if self.label_names:
            return self.label_names
        codes = np.asarray(self.column("label"))
        return [str(i) for i in range(int(codes.max()) + 1 if codes.size else 1)]

    def column(self, name: str) -> np.ndarray:
        """An array other than ``images``: a 1-D column (``id``, ``ra``, ``dec``, ``label``, ``split``, ``coverage``,
        a carried column ...) or ``channel_coverage`` ``(N, C)``, the fraction of each channel's pixels holding data."""
        if name not in self.group or name == "images":
            have = ", ".join(k for k in self.group.array_keys() if k != "images")
            raise InvalidInputError(f"{self.location} has no column {name!r} (it has {have})")
        return np.asarray(self._array(name)[:])

    def label_values(self, codes: Any) -> np.ndarray:
        """The class names of label ``codes`` (the codes themselves when the labels are integers).

        Examples
        --------
        >>> import hipsml
        >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
        >>> names = ds.label_names
        >>> ds.label_values([0, len(names) - 1, 0]).tolist() == [names[0], names[-1], names[0]]
        True
        """
        codes = np.asarray(codes)
        names = self.label_names
        return np.asarray(names, dtype=str)[codes] if names else codes

    @cached_property
    def table(self) -> Any:
        """The 1-D columns as an astropy Table (one row per cutout, in dataset order).

        ``label`` holds the class names (the integers themselves when the targets' labels were
        integers) and ``label_code`` the stored codes (``ds.label_names[code]`` is the name);
        ``split`` holds codes into :attr:`split_names`.
        """
        from astropy.table import Table

        names = [k for k in _CORE_COLUMNS if k in self.group] + sorted(
            k for k in self.group.array_keys() if k not in _CORE_COLUMNS and k != "images" and self._array(k).ndim == 1
        )
        columns: dict[str, np.ndarray] = {}
        for k in names:
            columns[k] = self.column(k)
            if k == "label":
                columns["label_code"] = columns["label"]
                columns["label"] = self.label_values(columns["label_code"])
        table = Table(columns)
        table.meta["hipsml"] = {"dataset": os.fspath(self.path), "version": self.version, "hash": self.hash}
        if self.label_names:
            table.meta["label_names"] = self.label_names
        table.meta["split_names"] = self.split_names
        return table

    def split(self, name: str | None) -> np.ndarray:
        """Sorted row indices of the cutouts in split ``name`` (None: every row, as ``split=None`` in the loaders).

        Read their images with ``ds.images.oindex[rows]``, or batch by batch, whole chunks at a
        time, with :func:`hipsml.train.zarr_batches`.
        """
        if name is None:
            return np.arange(len(self), dtype=np.int64)
        names = self.split_names
        if name not in names:
            raise InvalidInputError(f"no split {name!r} in this dataset (it has {', '.join(names)})")
        return np.flatnonzero(self.column("split") == names.index(name))

    def to_xarray(self) -> Any:
        """The version as an ``xarray.Dataset`` (lazy, dask-backed; dims cutout, channel, y, x).

        ``id``, ``ra``, ``dec`` and ``label`` (the class names, as in :attr:`table`) are
        coordinates on ``cutout`` (in memory), ``channel`` names the channels; the label codes are the
        variable ``label_code``. Select a class with ``xds.where(xds.label == "double", drop=True)``.
        """
        import xarray as xr

        ds = xr.open_zarr(self.location, zarr_format=3, consolidated=False)
        coords: dict[str, Any] = {"channel": ("channel", self.channels)}
        if "label" in ds:
            ds = ds.rename_vars({"label": "label_code"})
            coords["label"] = ("cutout", self.label_values(self.column("label")))
        for name in ("id", "ra", "dec"):  # 1-D and small: read now, so that .item() and plots work
            if name in ds.data_vars:
                coords[name] = ("cutout", self.column(name))
        return ds.drop_vars([k for k in ("id", "ra", "dec") if k in ds.data_vars]).assign_coords(coords)

    def _geometry(self) -> dict[str, Any] | None:
        """The cutout geometry of the version's attributes (size, pixel scale, projection, ...); None without one."""
        g = self.attrs.get("geometry")
        return g if isinstance(g, dict) else None

    def wcs(self, index: int) -> Any:
        """The exact astropy WCS of cutout ``index`` (as :func:`hipsml.cutout_wcs` made it).

        Raises
        ------
        IndexOutOfRangeError
            ``index`` is not a cutout of this version (an ``IndexError`` too).
        InvalidInputError
            The version records no cutout geometry (it was not written by ``hipsml extract``).
        """
        from hipsml.extract import cutout_wcs

        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise InvalidInputError(f"cutout index must be an integer, got {index!r}")
        if not -n <= int(index) < n:
            raise IndexOutOfRangeError(f"cutout index {index!r} is out of range for {n} cutouts")
        i = int(index) % n
        g = self._geometry()
        if g is None:
            raise InvalidInputError(
                f"{self.location} records no cutout geometry (attribute 'geometry'), so its "
                "cutouts have no WCS; write it with hipsml extract to have one"
            )
        rotation = g["rotation"]
        if isinstance(rotation, str):
            rotation = float(self._value("rotation", i))
        return cutout_wcs(
            float(self._value("ra", i)), float(self._value("dec", i)), size=int(g["size"]),
            pixel_scale=float(g["pixel_scale_arcsec"]), projection=g["projection"], rotation=float(rotation),
        )  # fmt: skip

    def fits_cards(self, index: int) -> list[tuple[str, Any, str]]:
        """The FITS cards that tie cutout ``index`` to this dataset (written by :meth:`to_fits`).

        ``OBJECT`` (target id), ``LABEL`` (class name) and ``LABELCOD`` (its code) when the
        dataset is labelled, ``DSROW`` (row in the version), ``DSNAME``, ``DSVER`` and ``DSHASH``
        (the version's content hash).
        """
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= int(index) < n:
            raise IndexOutOfRangeError(f"cutout index {index!r} is out of range for {n} cutouts")
        i = int(index) % n
        cards: list[tuple[str, Any, str]] = [("OBJECT", str(self._value("id", i)), "target id")]
        if "label" in self.group:
            code = int(self._value("label", i))
            cards += [("LABEL", str(self.label_values(code)), "class label"), ("LABELCOD", code, "class label code")]
        cards += [
            ("DSROW", i, "row in the dataset version"),
            ("DSNAME", str(self.attrs.get("name", "")), "hipsml dataset name"),
            ("DSVER", self.version, "hipsml dataset version"),
            ("DSHASH", self.hash, ""),  # 64 hex digits: no room left for a comment on the card
        ]
        return cards

    def to_fits(self, indices: Any, folder: str | os.PathLike[str]) -> list[Path]:
        """Write cutouts ``indices`` as FITS files named by id; return the paths.

        Each header holds the exact WCS and provenance of :func:`hipsml.extract.cutout_header`
        and the cards of :meth:`fits_cards`: target id, label, row, and the dataset's name,
        version and content hash. A version that records no cutout geometry (not written by
        ``hipsml extract``) gets its pixels written without a WCS, with a ``COMMENT`` card saying so.
        """
        from hipsml.extract import CutoutResult, write_cutout_fits

        idx = np.atleast_1d(np.asarray(indices))
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise InvalidInputError("indices must be integer row indices")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise InvalidInputError(f"indices must be within 0..{n - 1}")
        idx = np.mod(idx, n)
        out = user_path(folder, what="folder")
        g = self._geometry()
        if g is None:
            return self._to_fits_without_wcs(idx, out)
        rot = (
            self.column("rotation")[idx] if isinstance(g["rotation"], str) else np.full(idx.size, float(g["rotation"]))
        )
        images = self.read_images(idx).astype(np.float32)
        surveys = self.attrs.get("surveys", [])
        result = CutoutResult(
            images=images, ra=self.column("ra")[idx], dec=self.column("dec")[idx], rotation=rot, size=int(g["size"]),
            pixel_scale=float(g["pixel_scale_arcsec"]), projection=g["projection"], interpolation=g["interpolation"],
            orders=tuple(int(s["order"]) for s in surveys), channels=tuple(self.channels),
            surveys=tuple(s["location"] for s in surveys),
        )  # fmt: skip
        ids = self.column("id")[idx]
        paths = []
        for j in range(idx.size):
            dest = self._fits_path(out, int(idx[j]), ids[j])
            paths.append(write_cutout_fits(dest, result, j, cards=self.fits_cards(int(idx[j]))))
        return paths

    def _fits_path(self, folder: Path, row: int, target: Any) -> Path:
        """``folder/NAME-ID.fits``, the id made safe for a file name (the row when nothing of it is left)."""
        name = re.sub(r"[^A-Za-z0-9._+-]", "_", str(target))[:100] or f"row{row}"
        return folder / f"{self.attrs.get('name', 'cutout')}-{name}.fits"

    def _to_fits_without_wcs(self, idx: np.ndarray, out: Path) -> list[Path]:
        """:meth:`to_fits` for a version without cutout geometry: the pixels, channel names and dataset cards."""
        import io

        from astropy.io import fits

        logger.info("%s records no cutout geometry: writing FITS cutouts without a WCS", self.location)
        ids = self.column("id")[idx]
        paths = []
        for j, row in enumerate(idx.tolist()):
            data = np.asarray(self.images[row], dtype=np.float32)
            header = fits.Header()
            header["COMMENT"] = "no WCS: the dataset records no cutout geometry (not written by hipsml extract)"
            header["NCHAN"] = (int(data.shape[0]), "number of channels (image planes)")
            for k, channel in enumerate(self.channels, start=1):
                header[f"CHANNEL{k}"] = (
                    "".join(c if 32 <= ord(c) < 127 else " " for c in str(channel)),
                    f"name of channel {k}",
                )
            for keyword, value, comment in self.fits_cards(row):
                header[keyword] = (value, comment)
            hdu = fits.PrimaryHDU(data=data[0] if data.shape[0] == 1 else data, header=header)
            buf = io.BytesIO()
            hdu.writeto(buf)
            dest = check_writable_file(self._fits_path(out, row, ids[j]))
            paths.append(atomic_write_bytes(dest, buf.getvalue()))
        return paths


def open_dataset(
    path: str | os.PathLike[str],
    _version: int | str | None = None,
    /,
    *,
    version: int | str | None = None,
    verify: bool = False,
) -> Dataset:
    """Open a published version of a hipsml dataset, checking it.

    Every open checks cheaply (about 0.1 s for 10,000 chunks) that every file the version's
    manifest lists is a regular file of its recorded size, that its ``zarr.json`` documents are
    unchanged, that every array has the version's row count and that label and split codes
    lie within their names. ``verify=True`` hashes every file as well (:meth:`Dataset.verify`).

    Parameters
    ----------
    path : path
        The dataset folder (``output.path`` of its recipe); ``PATH@vN`` picks a version too.
    version : int, "vN" or "latest", optional
        Keyword only; default: the version named in ``path``, else the latest. (Giving it as the
        second positional argument still works, with a ``DeprecationWarning``.)
    verify : bool
        Hash every file against the manifest before opening.

    Raises
    ------
    DatasetNotFoundError
        No dataset, or no such version, at ``path``.
    DatasetError
        The version is damaged or contradicts itself (the message names the file, array or entry).

    Examples
    --------
    >>> import hipsml
    >>> ds = hipsml.open_dataset("demo-output/datasets/demo")
    >>> ds.images.shape, ds.split_names
    ((120, 4, 64, 64), ['train', 'val', 'test'])
    """
    if _version is not None:
        import warnings

        warnings.warn("open_dataset(path, VERSION) is deprecated; write open_dataset(path, version=VERSION) "
                      "or open_dataset('PATH@vN')", DeprecationWarning, stacklevel=2)  # fmt: skip
        if version is not None:
            raise InvalidInputError("give the version once (version=), not also as the second argument")
        version = _version
    root, at = parse_dataset_path(path)
    version = "latest" if version is None else _check_version_arg(version)
    if at != "latest":
        if version != "latest":
            raise InvalidInputError(f"give the version in the path ({path}) or as version=, not both")
        version = at
    if not isinstance(verify, bool):
        raise InvalidInputError(f"verify must be True or False, got {verify!r}")
    return Dataset(root, resolve_version(root, version), verify=verify)


def _check_version_arg(version: Any) -> int | str:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer, str)):
        raise InvalidInputError(f"version must be 'latest', N or 'vN', got {version!r}")
    return int(version) if isinstance(version, np.integer) else version


def verify_dataset(
    path: str | os.PathLike[str], version: int | str = "latest", *, threads: int | None = None
) -> VerifyReport:
    """Hash every file of a published version against its manifest; name every file that differs.

    Unlike :func:`open_dataset` this does not open the Zarr group first, so even a damaged
    ``zarr.json`` is named rather than failing the open.

    Parameters
    ----------
    path : path
        The dataset folder; ``PATH@vN`` picks a version.
    version : "latest", int or "vN"
    threads : int, optional
        Hashing threads (default: the CPU count, at most 16).

    Returns
    -------
    VerifyReport
        ``files``, ``bytes``, ``seconds`` and ``rate`` (bytes/s) of the check.

    Raises
    ------
    DatasetError
        A file is missing, a symlink, of another size or content, or not in the manifest; the
        version has no manifest (published before hipsml wrote them); or the index is damaged.

    Examples
    --------
    >>> import hipsml
    >>> hipsml.verify_dataset("demo-output/datasets/demo@v1").summary()
    '... v1 verified: ... files, ... MB match ...'
    """
    root, at = parse_dataset_path(path)
    version = _check_version_arg(version)
    if at != "latest":
        if version != "latest":
            raise InvalidInputError(f"give the version in the path ({path}) or as version=, not both")
        version = at
    entry = resolve_version(root, version)
    where = f"{root} v{entry['version']}"
    location = root / entry["path"]
    files = load_manifest(location, entry.get("manifest"), where=where)
    return verify_version(location, files, version=int(entry["version"]), where=where, threads=threads)


def as_dataset(data: Any) -> Dataset:
    """``data`` as a :class:`Dataset`: a Dataset is returned as it is, a ``"PATH[@vN]"`` (str or path) is opened.

    The one place where every training and prediction entry point turns "a Dataset or a path"
    into a Dataset.

    Raises
    ------
    InvalidInputError
        ``data`` is neither a Dataset nor a path.
    DatasetNotFoundError
        No dataset (or no such version) at the path.

    Examples
    --------
    >>> import hipsml
    >>> as_dataset("demo-output/datasets/demo@v1").version
    1
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return open_dataset(data)
    raise InvalidInputError(f"expected a hipsml Dataset or a dataset path 'PATH[@vN]', got {type(data).__name__}")


def is_dataset_like(data: Any) -> bool:
    """True for a :class:`Dataset`, a ``str`` or an ``os.PathLike`` (what :func:`as_dataset` accepts)."""
    return isinstance(data, (Dataset, str, os.PathLike))
