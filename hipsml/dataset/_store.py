"""The on-disk layout of a dataset: ``versions.json``, one Zarr v3 group per version, staging, publishing.

::

    DATASET/
      versions.json          index of the published versions (written atomically)
      v1/ v2/ ...            each an ordinary Zarr v3 group (images, id, ra, dec, split, ...)
      v1.manifest.json ...   every file of v1/ with its size and sha256 (the manifest's own
                             sha256 is in the version's entry of versions.json)
      queries/               saved results of online target queries (VizieR, TAP)
      .staging-<hash>/       a version being built: group/ (published by rename), units/ (done-markers)
      .lock                  held while a build runs

A version is built in its staging folder and published by one ``rename`` to ``vN``,
after which ``versions.json`` is rewritten (temporary file + rename). A reader therefore
never sees half a version; a version renamed but not yet indexed (a crash between the two
steps) is indexed by the next build.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hipsml._files import atomic_write_bytes, check_name_lengths
from hipsml.errors import DatasetError, DatasetNotFoundError, OutputError

if TYPE_CHECKING:
    import zarr

__all__ = [
    "VERSIONS_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "read_versions",
    "parse_versions",
    "dataset_versions",
    "resolve_version",
    "version_problem",
    "write_versions",
    "check_output_root",
    "dataset_lock",
    "publish_version",
    "zarr_compressors",
    "folder_bytes",
    "link_or_copy",
    "write_image_rows",
    "hipsml_attrs",
]

logger = logging.getLogger(__name__)

VERSIONS_FILE = "versions.json"
FORMAT_NAME = "hipsml-dataset"
FORMAT_VERSION = 1
_VERSION_DIR = re.compile(r"^v(\d+)$")


def hipsml_attrs(group: zarr.Group) -> dict[str, Any]:
    """A copy of the ``hipsml`` attributes of a Zarr group (empty when it has none).

    hipsml writes them as one JSON object; zarr types an attribute as any JSON value.

    Examples
    --------
    >>> import tempfile, zarr
    >>> group = zarr.open_group(tempfile.mkdtemp(), mode="w", zarr_format=3)
    >>> hipsml_attrs(group)
    {}
    >>> group.attrs["hipsml"] = {"kind": "som-mapping", "count": 3}
    >>> hipsml_attrs(group)
    {'kind': 'som-mapping', 'count': 3}
    """
    return dict(cast(Mapping[str, Any], group.attrs.get("hipsml", {})))


def _version_attrs(folder: Path) -> dict[str, Any] | None:
    """The ``hipsml`` attributes of a complete version folder, or None."""
    try:
        meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    attrs = (meta.get("attributes") or {}).get("hipsml")
    return attrs if isinstance(attrs, dict) and attrs.get("complete") else None


class _VersionEntry(BaseModel):
    """One entry of ``versions.json``, as hipsml writes it (unknown keys are kept)."""

    model_config = ConfigDict(extra="allow")

    version: int = Field(ge=1)
    path: str = Field(pattern=r"^v[0-9]+$")  # a folder inside the dataset: never ../x or /abs
    hash: str = Field(min_length=1)
    count: int = Field(ge=0)
    created: str = ""
    bytes: int = Field(default=0, ge=0)
    parent: int | None = None
    hipsml: str = ""
    manifest: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class _VersionIndex(BaseModel):
    """``versions.json``: the entries are validated one by one, to name the bad one."""

    model_config = ConfigDict(extra="allow")

    format: Literal["hipsml-dataset"]
    format_version: int
    name: str = ""
    versions: list[Any]


def _validation_text(exc: ValidationError, prefix: str) -> str:
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    return f"{prefix}{loc}: {err['msg']}"


def parse_versions(data: Any, *, source: str) -> list[dict[str, Any]]:
    """The validated entries of a ``versions.json`` document (``source`` names it in errors).

    Raises
    ------
    DatasetError
        The document, or one of its entries, is not what hipsml writes; the message names the entry.
    """
    try:
        index = _VersionIndex.model_validate(data)
    except ValidationError as exc:
        raise DatasetError(f"{source}: {_validation_text(exc, 'index')}; repair or remove it") from None
    entries: list[dict[str, Any]] = []
    seen: set[int] = set()
    for i, raw in enumerate(index.versions):
        try:
            entry = _VersionEntry.model_validate(raw).model_dump()
        except ValidationError as exc:
            raise DatasetError(f"{source}: {_validation_text(exc, f'versions[{i}]')}; repair or remove it") from None
        if entry["version"] in seen:
            raise DatasetError(
                f"{source}: versions[{i}]: version {entry['version']} is listed twice; repair or remove it"
            )
        seen.add(entry["version"])
        entries.append(entry)
    return entries


def read_versions(root: Path) -> list[dict[str, Any]]:
    """The published versions of the dataset at ``root``, oldest first ([] when there are none).

    Versions renamed into place but missing from ``versions.json`` (a crash between
    the two steps of :func:`publish_version`) are included.

    Raises
    ------
    DatasetError
        ``versions.json`` is unreadable or not what hipsml writes (the message names the entry).
    """
    index = root / VERSIONS_FILE
    versions: list[dict[str, Any]] = []
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{index}: unreadable dataset index ({exc}); repair or remove it") from None
        versions = parse_versions(data, source=os.fspath(index))
    known = {v["path"] for v in versions}
    numbers = {v["version"] for v in versions}
    for folder in sorted(root.glob("v*")) if root.is_dir() else []:
        if _VERSION_DIR.match(folder.name) and folder.name not in known:
            attrs = _version_attrs(folder)
            if attrs is not None and int(attrs["version"]) not in numbers:
                versions.append(_entry(folder, attrs))
    return sorted(versions, key=lambda v: int(v["version"]))


def version_problem(root: Path, entry: dict[str, Any]) -> str | None:
    """Why the folder of index entry ``entry`` cannot hold its version (missing, a symlink), or None."""
    folder = root / entry["path"]
    if folder.is_symlink():
        return f"{folder} is a symlink; versions live inside the dataset folder"
    if not folder.is_dir():
        return f"its folder {folder} is missing"
    return None


def _entry(folder: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    from hipsml.dataset._integrity import manifest_digest

    return {
        "version": int(attrs["version"]),
        "path": folder.name,
        "hash": attrs["hash"],
        "created": attrs.get("created", ""),
        "count": int(attrs.get("count", 0)),
        "bytes": folder_bytes(folder),
        "parent": attrs.get("parent", {}).get("version") if isinstance(attrs.get("parent"), dict) else None,
        "hipsml": attrs.get("software", {}).get("hipsml", ""),
        "manifest": manifest_digest(folder),
    }


def write_versions(root: Path, name: str, versions: list[dict[str, Any]]) -> None:
    """Rewrite ``versions.json`` atomically."""
    data = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": name, "versions": versions}
    atomic_write_bytes(root / VERSIONS_FILE, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def check_output_root(root: Path) -> None:
    """Refuse an output path that exists and is not a hipsml dataset (or is a file), or has a name
    longer than the file system allows."""
    nearest = next((p for p in (root, *root.parents) if os.path.isdir(p)), Path("/"))
    check_name_lengths(root, nearest)
    if root.is_file() or (root.exists() and not root.is_dir()):
        raise OutputError(f"output.path {root} is a file, not a dataset folder")
    if root.is_dir() and not (root / VERSIONS_FILE).exists():
        building = (".staging-", ".coverage-")  # an interrupted build's staging folder or coverage pass
        entries = [p.name for p in root.iterdir() if p.name not in (".lock",) and not p.name.startswith(building)]
        if entries and not all(_VERSION_DIR.match(e.removesuffix(".manifest.json")) or e == "queries" for e in entries):
            raise OutputError(
                f"output.path {root} exists and is not a hipsml dataset (no {VERSIONS_FILE}); "
                "choose a new or empty folder"
            )


@contextlib.contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` for the duration of a build (one writer per dataset)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot create the dataset folder {root}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(f"another hipsml extract is writing {root}; wait for it to finish") from None
            raise
        yield
    finally:
        os.close(fd)


def folder_bytes(folder: Path) -> int:
    """Bytes in the files under ``folder`` (hard links to older versions counted in full)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` to ``dst`` (copy when links are not possible); True when linked."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        dst.unlink()
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


def publish_version(root: Path, staging: Path, name: str, attrs: dict[str, Any], *,
                    manifest: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Rename the finished ``staging`` folder to ``root/vN`` and index it; return its entry.

    ``manifest`` (the staged manifest of the folder) is renamed to ``root/vN.manifest.json``
    first, so a published folder never lacks its manifest.
    """
    from hipsml.dataset._integrity import manifest_path

    version = int(attrs["version"])
    target = root / f"v{version}"
    if target.exists():
        raise OutputError(f"{target} already exists; the dataset index and its folders disagree")
    try:
        if manifest is not None:
            os.replace(manifest, manifest_path(target))
        os.rename(staging, target)
    except OSError as exc:
        raise OutputError(f"cannot publish {target}: {exc.strerror or exc}") from None
    versions = [v for v in read_versions(root) if int(v["version"]) != version]
    entry = _entry(target, attrs)
    versions.append(entry)
    write_versions(root, name, sorted(versions, key=lambda v: int(v["version"])))
    logger.info("published %s", target)
    return entry


def dataset_versions(root: Path) -> list[dict[str, Any]]:
    """The published versions of the dataset at ``root``; a one-line error when there is no dataset."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"no dataset at {root}")
    if not (root / VERSIONS_FILE).is_file() and not any(_VERSION_DIR.match(p.name) for p in root.iterdir()):
        raise DatasetNotFoundError(f"{root} is not a hipsml dataset (no {VERSIONS_FILE})")
    versions = read_versions(root)
    if not versions:
        raise DatasetNotFoundError(f"{root} has no published version yet")
    return versions


def resolve_version(root: Path, version: int | str) -> dict[str, Any]:
    """The index entry of ``version`` (``"latest"``, ``N`` or ``"vN"``) of the dataset at ``root``.

    Raises
    ------
    DatasetNotFoundError
        No dataset at ``root``, or no such version.
    DatasetError
        The index lists the version but its folder is missing (or a symlink).
    """
    versions = dataset_versions(root)
    entry = None
    if version == "latest":
        entry = versions[-1]
    else:
        text = str(version)
        m = re.fullmatch(r"v?(\d+)", text)
        if m is None:
            raise DatasetNotFoundError(f"version must be 'latest', N or vN, got {version!r}")
        entry = next((v for v in versions if int(v["version"]) == int(m.group(1))), None)
        if entry is None:
            have = ", ".join(f"v{v['version']}" for v in versions)
            raise DatasetNotFoundError(f"{root} has no version {text} (it has {have})")
    problem = version_problem(root, entry)
    if problem is not None:
        raise DatasetError(f"{root / VERSIONS_FILE}: v{entry['version']} is listed but {problem}; "
                           "restore it or remove its entry")  # fmt: skip
    return entry


#: the images' compression: blosc at this level with byte shuffle, codec lz4 or zstd (``output.compressor``)
BLOSC_LEVEL = 1


def zarr_compressors(compressor: Literal["lz4", "zstd", "none"], itemsize: int) -> Any:
    """The zarr codec of the images for ``output.compressor`` (``none``: no compression)."""
    if compressor == "none":
        return None
    from zarr.codecs import BloscCodec

    return BloscCodec(cname=compressor, clevel=BLOSC_LEVEL, shuffle="shuffle", typesize=itemsize)


def _chunk_codec(compressor: str, itemsize: int) -> Any:
    """The numcodecs codec that encodes chunks byte for byte as :func:`zarr_compressors`' codec does."""
    if compressor == "none":
        return None
    from numcodecs import Blosc

    return Blosc(cname=compressor, clevel=BLOSC_LEVEL, shuffle=Blosc.SHUFFLE, blocksize=0, typesize=itemsize)


def write_image_rows(images_dir: str | os.PathLike[str], start: int, block: np.ndarray, *, chunk_rows: int,
                     compressor: str) -> None:  # fmt: skip
    """Write rows ``start .. start + len(block)`` of an ``images`` array, whole chunks at a time.

    The chunks are encoded as the array's Zarr v3 codecs encode them (``bytes`` little-endian,
    then blosc ``compressor`` level 1 with shuffle: byte for byte what zarr writes, edge chunks
    padded with the NaN fill value) and written straight to ``c/<k>/0/0/0``, each through a
    temporary file and a rename. This skips zarr's per-call machinery, which costs more than
    the compression itself on this hot path. ``start`` must be a multiple of ``chunk_rows``.
    """
    if start % chunk_rows:
        raise ValueError(f"rows must start on a chunk boundary ({start} % {chunk_rows})")
    block = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<"))
    codec = _chunk_codec(compressor, block.dtype.itemsize)
    root = Path(images_dir) / "c"
    tail = ["0"] * (block.ndim - 1)
    for first in range(0, block.shape[0], chunk_rows):
        part = block[first : first + chunk_rows]
        if part.shape[0] < chunk_rows:  # the array's last chunk: stored at full shape, padded
            padded = np.full((chunk_rows, *block.shape[1:]), np.nan, dtype=block.dtype)
            padded[: part.shape[0]] = part
            part = padded
        data = part.tobytes() if codec is None else codec.encode(part)
        folder = root.joinpath(str((start + first) // chunk_rows), *tail[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".chunk-", suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, folder / tail[-1])
