"""The on-disk layout of a dataset: ``versions.json``, one Zarr v3 group per version, staging, publishing.

::

    DATASET/
      versions.json          index of the published versions (written atomically)
      v1/ v2/ ...            each an ordinary Zarr v3 group (images, id, ra, dec, split, ...)
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
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import atomic_write_bytes, check_name_lengths
from hipsml.errors import DatasetNotFoundError, OutputError

__all__ = [
    "VERSIONS_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "read_versions",
    "write_versions",
    "check_output_root",
    "dataset_lock",
    "publish_version",
    "folder_bytes",
    "link_or_copy",
    "write_image_rows",
]

logger = logging.getLogger(__name__)

VERSIONS_FILE = "versions.json"
FORMAT_NAME = "hipsml-dataset"
FORMAT_VERSION = 1
_VERSION_DIR = re.compile(r"^v(\d+)$")


def _version_attrs(folder: Path) -> dict[str, Any] | None:
    """The ``hipsml`` attributes of a complete version folder, or None."""
    try:
        meta = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    attrs = (meta.get("attributes") or {}).get("hipsml")
    return attrs if isinstance(attrs, dict) and attrs.get("complete") else None


def read_versions(root: Path) -> list[dict[str, Any]]:
    """The published versions of the dataset at ``root``, oldest first ([] when there are none).

    Versions renamed into place but missing from ``versions.json`` (a crash between
    the two steps of :func:`publish_version`) are included.
    """
    index = root / VERSIONS_FILE
    versions: list[dict[str, Any]] = []
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
            versions = list(data["versions"])
            if data.get("format") != FORMAT_NAME:
                raise ValueError("not a hipsml dataset index")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"{index}: unreadable dataset index ({exc}); repair or remove it") from None
    known = {v.get("path") for v in versions}
    for folder in sorted(root.glob("v*")) if root.is_dir() else []:
        if _VERSION_DIR.match(folder.name) and folder.name not in known:
            attrs = _version_attrs(folder)
            if attrs is not None:
                versions.append(_entry(folder, attrs))
    return sorted(versions, key=lambda v: int(v["version"]))


def _entry(folder: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": int(attrs["version"]),
        "path": folder.name,
        "hash": attrs["hash"],
        "created": attrs.get("created", ""),
        "count": int(attrs.get("count", 0)),
        "bytes": folder_bytes(folder),
        "parent": attrs.get("parent", {}).get("version") if isinstance(attrs.get("parent"), dict) else None,
        "hipsml": attrs.get("software", {}).get("hipsml", ""),
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
        if entries and not all(_VERSION_DIR.match(e) or e == "queries" for e in entries):
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


def publish_version(root: Path, staging: Path, name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Rename the finished ``staging`` folder to ``root/vN`` and index it; return its entry."""
    version = int(attrs["version"])
    target = root / f"v{version}"
    if target.exists():
        raise OutputError(f"{target} already exists; the dataset index and its folders disagree")
    try:
        os.rename(staging, target)
    except OSError as exc:
        raise OutputError(f"cannot publish {target}: {exc.strerror or exc}") from None
    versions = [v for v in read_versions(root) if int(v["version"]) != version]
    entry = _entry(target, attrs)
    versions.append(entry)
    write_versions(root, name, sorted(versions, key=lambda v: int(v["version"])))
    logger.info("published %s", target)
    return entry


def resolve_version(root: Path, version: int | str) -> dict[str, Any]:
    """The index entry of ``version`` (``"latest"``, ``N`` or ``"vN"``) of the dataset at ``root``."""
    if not root.is_dir():
        raise DatasetNotFoundError(f"no dataset at {root}")
    if not (root / VERSIONS_FILE).is_file() and not any(_VERSION_DIR.match(p.name) for p in root.iterdir()):
        raise DatasetNotFoundError(f"{root} is not a hipsml dataset (no {VERSIONS_FILE})")
    versions = read_versions(root)
    if not versions:
        raise DatasetNotFoundError(f"{root} has no published version yet")
    if version == "latest":
        return versions[-1]
    text = str(version)
    m = re.fullmatch(r"v?(\d+)", text)
    if m is None:
        raise DatasetNotFoundError(f"version must be 'latest', N or vN, got {version!r}")
    for v in versions:
        if int(v["version"]) == int(m.group(1)):
            return v
    have = ", ".join(f"v{v['version']}" for v in versions)
    raise DatasetNotFoundError(f"{root} has no version {text} (it has {have})")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _chunk_codec(compressor: str, itemsize: int) -> Any:
    """The numcodecs codec that encodes chunks exactly as the array's zarr codecs do."""
    if compressor == "none":
        return None
    from numcodecs import Blosc

    return Blosc(cname=compressor, clevel=1, shuffle=Blosc.SHUFFLE, blocksize=0, typesize=itemsize)


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
