"""Reading a published dataset version: :func:`open_dataset` and :class:`Dataset`."""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import user_path
from hipsml.dataset._store import resolve_version
from hipsml.errors import DatasetNotFoundError, InvalidInputError

__all__ = ["Dataset", "as_dataset", "open_dataset", "parse_dataset_path"]

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
    s = os.fspath(text)
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
    """

    def __init__(self, path: Path, entry: dict[str, Any]) -> None:
        import zarr

        self.path = path
        self.version = int(entry["version"])
        self.hash: str = entry["hash"]
        self.location = path / entry["path"]
        try:
            self.group = zarr.open_group(self.location, mode="r")
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetNotFoundError(f"{self.location}: not a readable Zarr group ({exc})") from None
        self.attrs: dict[str, Any] = dict(self.group.attrs.get("hipsml", {}))
        self.report: Any = None

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
        return list(self.group["split"].attrs.get("names", []))

    @property
    def label_names(self) -> list[str] | None:
        if "label" not in self.group:
            return None
        names = self.group["label"].attrs.get("names")
        return list(names) if names else None

    def column(self, name: str) -> np.ndarray:
        """A 1-D array (``id``, ``ra``, ``dec``, ``label``, ``split``, ``coverage``, a carried column ...)."""
        if name not in self.group or name == "images":
            have = ", ".join(k for k in self.group.array_keys() if k != "images")
            raise InvalidInputError(f"{self.location} has no column {name!r} (it has {have})")
        return np.asarray(self.group[name][:])

    @cached_property
    def table(self) -> Any:
        """The 1-D columns as an astropy Table (one row per cutout, in dataset order)."""
        from astropy.table import Table

        names = [k for k in _CORE_COLUMNS if k in self.group] + sorted(
            k for k in self.group.array_keys() if k not in _CORE_COLUMNS and k != "images" and self.group[k].ndim == 1
        )
        table = Table({k: self.column(k) for k in names})
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
        """The version as an ``xarray.Dataset`` (lazy, dask-backed; dims cutout, channel, y, x)."""
        import xarray as xr

        ds = xr.open_zarr(self.location, zarr_format=3, consolidated=False)
        return ds.assign_coords(channel=("channel", self.channels))

    def wcs(self, index: int) -> Any:
        """The exact astropy WCS of cutout ``index`` (as :func:`hipsml.cutout_wcs` made it)."""
        from hipsml.extract import cutout_wcs

        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= int(index) < n:
            raise InvalidInputError(f"cutout index {index!r} is out of range for {n} cutouts")
        i = int(index) % n
        g = self.attrs["geometry"]
        rotation = g["rotation"]
        if isinstance(rotation, str):
            rotation = float(self.group["rotation"][i])
        return cutout_wcs(
            float(self.group["ra"][i]), float(self.group["dec"][i]), size=int(g["size"]),
            pixel_scale=float(g["pixel_scale_arcsec"]), projection=g["projection"], rotation=float(rotation),
        )  # fmt: skip

    def to_fits(self, indices: Any, folder: str | os.PathLike[str]) -> list[Path]:
        """Write cutouts ``indices`` as FITS files (exact WCS, provenance) named by id; return the paths."""
        from hipsml.extract import CutoutResult, write_cutout_fits

        idx = np.atleast_1d(np.asarray(indices))
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise InvalidInputError("indices must be integer row indices")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise InvalidInputError(f"indices must be within 0..{n - 1}")
        idx = np.mod(idx, n)
        out = user_path(folder, what="folder")
        g = self.attrs["geometry"]
        rot = self.column("rotation")[idx] if isinstance(g["rotation"], str) else np.full(idx.size, float(g["rotation"]))
        order = np.argsort(idx)  # read the rows in storage order
        images = np.empty((idx.size, *self.images.shape[1:]), dtype=np.float32)
        images[order] = self.images.get_orthogonal_selection((idx[order],)).astype(np.float32)
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
            name = re.sub(r"[^A-Za-z0-9._+-]", "_", str(ids[j]))[:100] or f"row{idx[j]}"
            paths.append(write_cutout_fits(out / f"{self.attrs.get('name', 'cutout')}-{name}.fits", result, j))
        return paths


def open_dataset(path: str | os.PathLike[str], _version: int | str | None = None, /, *,
                 version: int | str | None = None) -> Dataset:
    """Open a published version of a hipsml dataset.

    Parameters
    ----------
    path : path
        The dataset folder (``output.path`` of its recipe); ``PATH@vN`` picks a version too.
    version : int, "vN" or "latest", optional
        Keyword only; default: the version named in ``path``, else the latest. (Giving it as the
        second positional argument still works, with a ``DeprecationWarning``.)

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
    if at != "latest":
        if version is not None and version != "latest":
            raise InvalidInputError(f"give the version in the path ({path}) or as version=, not both")
        version = at
    return Dataset(root, resolve_version(root, "latest" if version is None else version))


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
