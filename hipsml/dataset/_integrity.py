"""Integrity of a published version: its manifest, the cheap check at open, and full verification.

At publish every file of the version folder ``vN/`` is listed in ``vN.manifest.json`` beside
it, with its size and sha256, and the sha256 of the manifest itself is recorded in the version's
entry of ``versions.json``, so the index vouches for the manifest and the manifest for every file.
(The manifest sits beside the folder, not in it, so that ``vN/`` stays a plain Zarr group: zarr
warns about any file in a group folder that is not part of the hierarchy.)


- :func:`check_files` (on every :func:`~hipsml.open_dataset`) checks that every listed file
  exists, is a regular file (not a symlink) and has its recorded size, and hashes the small
  ``zarr.json`` metadata documents; versions published before manifests existed get
  :func:`check_image_chunks` instead (every ``images`` chunk the shape implies is a regular file);
- :func:`verify_version` hashes every file (on threads) and names every file that differs,
  is missing, or is not in the manifest;
- :func:`check_metadata` checks the arrays against the index: every array has the version's
  row count, ``images`` has the recorded channels and size, and label and split codes lie
  within their names.

The manifest is generic: it lists whatever files the version folder holds, hard links to a
parent version's chunks included.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hipsml._files import atomic_write_bytes
from hipsml.errors import DatasetError

__all__ = [
    "MANIFEST_SUFFIX",
    "VerifyReport",
    "build_manifest",
    "check_files",
    "check_image_chunks",
    "check_metadata",
    "file_sha256",
    "load_manifest",
    "manifest_digest",
    "manifest_path",
    "verify_version",
    "write_manifest",
]

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "hipsml-manifest"
_SHOWN = 5  # problems named in one error message


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_version` checked: every file of the version matched its manifest."""

    location: str
    version: int
    files: int
    bytes: int
    seconds: float

    @property
    def rate(self) -> float:
        """Bytes hashed per second."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.location}: v{self.version} verified: {self.files:,} files, {self.bytes / 1e6:,.1f} MB match "
            f"its manifest ({self.rate / 1e6:,.0f} MB/s)"
        )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (hashlib releases the GIL: threads scale)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _in_batches(items: list[Any], threads: int) -> list[list[Any]]:
    """``items`` in about ``8 * threads`` batches: one pool task per batch, not per file (10,000 tiny
    tasks cost more than hashing their files)."""
    size = max(1, -(-len(items) // (8 * threads)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def manifest_path(folder: str | os.PathLike[str]) -> Path:
    """Where the manifest of version folder ``DATASET/vN`` lives: ``DATASET/vN.manifest.json``."""
    folder = Path(folder)
    return folder.with_name(folder.name + MANIFEST_SUFFIX)


def _list_files(folder: Path) -> list[str]:
    """Relative POSIX paths of every non-folder entry under ``folder`` (symlinks included, not followed), sorted.

    One ``scandir`` per folder and no ``stat`` calls (the entry types come with the listing):
    about three times faster than ``os.walk`` on a version's thousands of one-chunk folders.
    """
    out: list[str] = []
    stack = [(os.fspath(folder), "")]
    while stack:
        path, prefix = stack.pop()
        with os.scandir(path) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, f"{prefix}{e.name}/"))
                else:  # a file, a symlink (to a file or a folder), or anything else
                    out.append(prefix + e.name)
    return sorted(out)


def _threads(threads: int | None) -> int:
    return max(1, min(16, os.cpu_count() or 1)) if threads is None else max(1, int(threads))


def build_manifest(folder: str | os.PathLike[str], *, threads: int | None = None) -> dict[str, Any]:
    """The manifest of ``folder``: every file with its size and sha256 (hashed on ``threads`` threads)."""
    folder = Path(folder)
    rels = _list_files(folder)
    n = _threads(threads)
    with ThreadPoolExecutor(n) as pool:
        parts = pool.map(lambda batch: [file_sha256(folder / r) for r in batch], _in_batches(rels, n))
        digests = [d for part in parts for d in part]
    files = {r: {"size": os.lstat(folder / r).st_size, "sha256": d} for r, d in zip(rels, digests, strict=True)}
    return {"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}


def write_manifest(folder: str | os.PathLike[str], dest: str | os.PathLike[str], *, threads: int | None = None) -> str:
    """Write the manifest of every file of ``folder`` to ``dest`` (atomically); return its sha256."""
    data = json.dumps(build_manifest(folder, threads=threads), sort_keys=True, separators=(",", ":")).encode()
    atomic_write_bytes(Path(dest), data)
    return hashlib.sha256(data).hexdigest()


def manifest_digest(folder: str | os.PathLike[str]) -> str | None:
    """The sha256 of the manifest of version folder ``folder`` (None when there is none)."""
    path = manifest_path(folder)
    return file_sha256(path) if path.is_file() and not path.is_symlink() else None


def load_manifest(folder: Path, digest: str | None, *, where: str) -> dict[str, dict[str, Any]] | None:
    """The files of the manifest of ``folder`` (``{path: {"size", "sha256"}}``), checked against ``digest``,
    the sha256 that ``versions.json`` records for it; None for a version published without a manifest."""
    path = manifest_path(folder)
    if digest is None:
        if os.path.lexists(path):
            raise DatasetError(f"{where}: {path} exists but versions.json records no manifest for this version; "
                               "the index was rewritten: restore it from a good copy")  # fmt: skip
        return None
    if not path.is_file() or path.is_symlink():
        raise DatasetError(
            f"{where}: {path} is missing (versions.json records one); restore the version from a good copy"
        )
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != digest:
        raise DatasetError(f"{where}: {path} does not match the sha256 versions.json records for it; "
                           "restore the version from a good copy")  # fmt: skip
    try:
        data = json.loads(raw)
        files = data["files"]
        if data.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("not a hipsml manifest")
        for rel, rec in files.items():
            if not (isinstance(rec, dict) and isinstance(rec.get("size"), int) and isinstance(rec.get("sha256"), str)):
                raise ValueError(f"bad entry {rel!r}")
            if rel.startswith("/") or ".." in rel.split("/"):
                raise ValueError(f"entry {rel!r} leaves the version folder")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{where}: {path} is malformed ({exc}); restore the version from a good copy") from None
    return files


def _describe(problems: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{rel} ({why})" for rel, why in problems[:_SHOWN])
    more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return f"{len(problems)} file{'s' if len(problems) != 1 else ''} differ{'s' if len(problems) == 1 else ''} " \
           f"from the manifest: {shown}{more}"  # fmt: skip


def _stat_problem(path: str, size: int | None) -> str | None:
    """Why the file at ``path`` is not what was published (missing, a symlink, another size), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink, not a regular file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if size is not None and st.st_size != size:
        return f"{st.st_size} bytes, published {size}"
    return None


def check_files(folder: Path, files: dict[str, dict[str, Any]], *, where: str) -> None:
    """The cheap check at open: every file of the manifest is a regular file of its recorded size,
    and every ``zarr.json`` has its recorded sha256."""
    base = os.fspath(folder)
    problems = []
    for rel, rec in files.items():
        path = os.path.join(base, rel)
        why = _stat_problem(path, rec["size"])
        if why is None and rel.endswith("zarr.json") and file_sha256(path) != rec["sha256"]:
            why = "sha256 differs"
        if why is not None:
            problems.append((rel, why))
    if problems:
        raise DatasetError(f"{where}: {_describe(problems)}; restore the version from a good copy")


def check_image_chunks(folder: Path, images: Any, *, where: str) -> None:
    """The check at open of a version without a manifest: every ``images`` chunk its shape implies
    is a regular file (hipsml writes every one of them)."""
    meta = images.metadata
    rows = int(meta.chunk_grid.chunk_shape[0])
    rest = (0,) * (images.ndim - 1)
    base = os.fspath(folder / "images")
    problems = []
    for k in range(-(-int(images.shape[0]) // rows)):
        rel = meta.encode_chunk_key((k, *rest))
        why = _stat_problem(os.path.join(base, rel), None)
        if why is not None:
            problems.append((f"images/{rel}", why))
    if problems:
        shown = ", ".join(f"{rel} ({why})" for rel, why in problems[:_SHOWN])
        more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise DatasetError(f"{where}: {len(problems)} images chunk file(s) damaged: {shown}{more}; "
                           "restore the version from a good copy")  # fmt: skip


def verify_version(folder: Path, files: dict[str, dict[str, Any]] | None, *, version: int, where: str,
                   threads: int | None = None) -> VerifyReport:  # fmt: skip
    """Hash every file of the version folder against its manifest; raise naming every difference.

    Raises
    ------
    DatasetError
        The version has no manifest (published before hipsml wrote them), or a file is missing,
        a symlink, of another size or content, or not listed in the manifest.
    """
    if files is None:
        raise DatasetError(f"{where}: published without a manifest (before hipsml wrote them): "
                           "there is nothing to verify it against")  # fmt: skip
    t0 = time.perf_counter()
    base = os.fspath(folder)

    def check(batch: list[str]) -> list[tuple[str, str]]:
        out = []
        for rel in batch:
            path = os.path.join(base, rel)
            why = _stat_problem(path, files[rel]["size"])
            if why is None:
                try:
                    why = None if file_sha256(path) == files[rel]["sha256"] else "sha256 differs"
                except OSError as exc:
                    why = f"unreadable: {exc.strerror or exc}"
            if why is not None:
                out.append((rel, why))
        return out

    n = _threads(threads)
    with ThreadPoolExecutor(n + 1) as pool:
        listing = pool.submit(_list_files, folder)  # runs beside the hashing
        problems = [p for part in pool.map(check, _in_batches(list(files), n)) for p in part]
        problems += [(rel, "not in the manifest") for rel in listing.result() if rel not in files]
    if problems:
        problems.sort()
        raise DatasetError(f"{where}: {_describe(problems)}; restore the version from a good copy")
    nbytes = sum(int(rec["size"]) for rec in files.values())
    return VerifyReport(base, version, len(files), nbytes, time.perf_counter() - t0)


def check_metadata(group: Any, attrs: dict[str, Any], count: int, *, where: str) -> None:
    """Check the arrays of a version against its index entry's row ``count`` and its own attributes.

    Every array has ``count`` rows; ``images`` has one plane per recorded channel at the recorded
    size; ``label`` and ``split`` codes lie within their names, which match the version's record.
    """
    if "count" in attrs and attrs["count"] != count:
        raise DatasetError(f"{where}: zarr.json records {attrs['count']!r} cutouts but versions.json {count}")
    arrays = dict(group.arrays())
    if "images" not in arrays:
        raise DatasetError(f"{where}: the version has no images array")
    for name, arr in sorted(arrays.items()):
        if arr.ndim == 0 or int(arr.shape[0]) != count:
            raise DatasetError(
                f"{where}: array {name!r} has shape {tuple(arr.shape)} but the version holds {count} cutouts"
            )
    images = arrays["images"]
    channels = attrs.get("channels")
    size = (attrs.get("geometry") or {}).get("size")
    if (
        images.ndim != 4
        or (channels and images.shape[1] != len(channels))
        or (size and images.shape[2:] != (size, size))
    ):
        raise DatasetError(f"{where}: array 'images' has shape {tuple(images.shape)}, not "
                           f"({count}, {len(channels or [])}, {size}, {size}) as the version records")  # fmt: skip
    recorded: dict[str, Any] = {
        "label": (attrs.get("labels") or {}).get("names"),
        "split": (attrs.get("splits") or {}).get("names"),
    }
    for name in ("label", "split"):
        if name not in arrays:
            continue
        names = arrays[name].attrs.get("names")
        if names is None:
            continue
        if recorded[name] is not None and list(names) != list(recorded[name]):
            raise DatasetError(
                f"{where}: array {name!r} names {list(names)} but the version records {list(recorded[name])}"
            )
        codes = np.asarray(arrays[name][:])
        if codes.size and codes.dtype.kind in "iu" and (codes.min() < 0 or codes.max() >= len(names)):
            bad = int(np.flatnonzero((codes < 0) | (codes >= len(names)))[0])
            raise DatasetError(f"{where}: array {name!r} row {bad} holds code {int(codes[bad])}, "
                               f"beyond its {len(names)} names")  # fmt: skip
