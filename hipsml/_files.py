"""File-system helpers shared by every package: user paths, atomic writes, staged folders, file modes.

Files a user reads are written through :func:`atomic_write` / :func:`atomic_write_bytes` (a
temporary file beside the destination, renamed over it only when complete), folders through
:func:`staged_folder` / :func:`replace_folder`, and every path a user types goes through
:func:`user_path` (``~`` expanded, ``~unknownuser`` and NUL bytes refused with a one-line error).
Format-specific writers (Zarr chunks, HiPS tiles) live with their formats and use these.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hipsml.errors import HipsmlError, InputFileError, InvalidInputError, OutputError

__all__ = [
    "check_name_lengths",
    "replace_folder",
    "staged_folder",
    "user_path",
    "atomic_write",
    "atomic_write_bytes",
    "file_mode",
    "check_writable_file",
    "read_regular_file",
]

logger = logging.getLogger(__name__)

_mode_lock = threading.Lock()
_file_mode: int | None = None


def file_mode() -> int:
    """The mode a new file gets under this process's umask (``0o666 & ~umask``).

    The umask is read once, lazily, under a lock: ``os.umask`` can only be read by setting
    it, so reading it at import time or in several threads at once is a race.
    """
    global _file_mode
    if _file_mode is None:
        with _mode_lock:
            if _file_mode is None:
                mask = os.umask(0o022)
                os.umask(mask)
                _file_mode = 0o666 & ~mask
    return _file_mode


def user_path(path: str | os.PathLike[str], *, what: str = "path") -> Path:
    """A path a user gave, with ``~`` expanded.

    Raises
    ------
    InvalidInputError
        ``path`` is not a string or path, holds a NUL byte, or names an unknown user (``~nobody``).

    Examples
    --------
    >>> user_path("data/x.fits").name
    'x.fits'
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"{what} must be a path, got {path!r}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be a text path, got {path!r}")
    if "\x00" in text:
        raise InvalidInputError(f"{what} {text!r} holds a NUL byte")
    if not text:
        raise InvalidInputError(f"{what} is empty")
    try:
        return Path(text).expanduser()
    except RuntimeError:
        user = text[1:].split("/", 1)[0]
        raise InvalidInputError(f"{what} {text!r}: no user named {user!r} to expand '~{user}'") from None


def check_name_lengths(dest: Path, folder: Path) -> int:
    """Refuse a path with a name longer than the file system of ``folder`` allows; return that limit.

    Raises
    ------
    OutputError
        A component of ``dest`` is too long (the message names it).
    """
    try:
        limit = int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        limit = 255
    for part in dest.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputError(f"cannot write {os.fspath(dest)}: the name {part[:40]!r}... is longer than {limit} bytes")
    return limit


def check_writable_file(path: str | os.PathLike[str], *, what: str = "output", probe: bool = False) -> Path:
    """Check, before any work, that a file can be created at ``path``; return it expanded.

    The nearest existing parent must be a writable folder, and no name may exceed the file
    system's limit. Any operating-system error met while looking (a name too long, a path
    through a file, a folder that cannot be searched) is an :class:`OutputError` naming the
    path. With ``probe=True`` an empty file is also created and removed in the nearest
    existing folder, which finds read-only mounts (and ``/sys``) that grant root every
    permission bit: for a command about to do minutes of work, not for each of many files.

    Raises
    ------
    InvalidInputError
        ``path`` is not a path (``None``, a number, text holding NUL, ``~nouser``).
    OutputError
        The file cannot be created there (the message names the path and the reason).

    Examples
    --------
    >>> check_writable_file("cutouts/m31.fits").name
    'm31.fits'
    """
    dest = user_path(path, what=what)
    try:
        for part in dest.parts:
            if len(os.fsencode(part)) > 255:
                raise OutputError(f"cannot write {os.fspath(dest)}: the name {part[:40]!r}... is longer than 255 bytes")
        if dest.is_dir():
            raise OutputError(f"cannot write {os.fspath(dest)}: it is a folder; give a file name")
        blocker = next((p for p in dest.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise OutputError(f"cannot write {os.fspath(dest)}: {os.fspath(blocker)} is a file, not a folder")
        folder = blocker if blocker is not None else Path(".")
        check_name_lengths(dest, folder)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {os.fspath(dest)}: {os.fspath(folder)} is not writable")
        if probe:
            fd, tmp = tempfile.mkstemp(prefix=".hipsml-probe-", dir=folder)
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write {os.fspath(dest)}: {exc.strerror or exc}") from None
    return dest


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, mode: int | None = None) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for binary writing; rename it to ``path`` on success.

    Missing parent folders are created. On any error the temporary file is removed and
    ``path`` is left as it was. The file gets ``mode`` (default: the umask-based mode).

    Raises
    ------
    OutputError
        ``path`` cannot be written (the message names it and the reason).

    Examples
    --------
    >>> import tempfile, os
    >>> dest = os.path.join(tempfile.mkdtemp(), "a", "b.txt")
    >>> with atomic_write(dest) as fh:
    ...     _ = fh.write(b"hello")
    >>> open(dest, "rb").read()
    b'hello'
    """
    dest = user_path(path, what="output")
    try:
        if dest.is_dir():
            raise OutputError(f"cannot write {os.fspath(dest)}: it is a folder; give a file name")
        blocker = next((p for p in dest.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise OutputError(f"cannot write {os.fspath(dest)}: {os.fspath(blocker)} is a file, not a folder")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name[:64]}.", suffix=".part", dir=dest.parent)
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {os.fspath(dest)}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, file_mode() if mode is None else mode)  # mkstemp makes 0600
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, HipsmlError):
            raise OutputError(f"cannot write {os.fspath(dest)}: {exc.strerror or exc}") from None
        raise
    logger.debug("wrote %s", dest)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); return the path."""
    with atomic_write(path, mode=mode) as fh:
        fh.write(data)
    return user_path(path, what="output")


def read_regular_file(path: str | os.PathLike[str], *, limit: int, what: str = "file") -> bytes:
    """Read a whole regular file of at most ``limit`` bytes.

    The file is opened without blocking (``O_NONBLOCK``) and checked with ``fstat`` on the
    open descriptor, so a FIFO, a socket or a device (a symlink to ``/dev/zero``) is refused
    at once instead of hanging or reading forever, and nothing can swap the file between
    the check and the read. At most ``limit + 1`` bytes are ever read.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        The file does not exist (left to the caller: absence is often normal).
    InputFileError
        Not a regular file, larger than ``limit`` bytes, or another OS error; the one-line
        message names the path.

    Examples
    --------
    >>> import tempfile, os
    >>> name = os.path.join(tempfile.mkdtemp(), "p.txt")
    >>> _ = open(name, "wb").write(b"hips_order = 3")
    >>> read_regular_file(name, limit=100)
    b'hips_order = 3'
    >>> read_regular_file("/dev/zero", limit=100)
    Traceback (most recent call last):
    ...
    hipsml.errors.InputFileError: cannot read /dev/zero: it is a character device, not a regular file; ...
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise InputFileError(f"cannot read {name}: {exc.strerror or exc}; check the {what}'s permissions") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _file_kind(st.st_mode)
            raise InputFileError(
                f"cannot read {name}: it is {kind}, not a regular file; replace it with the real {what}"
            )
        if st.st_size > limit:
            raise InputFileError(
                f"cannot read {name}: {st.st_size} bytes is more than the {limit} bytes accepted for a {what};"
                " is this the right file?"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # the file grew while being read
                raise InputFileError(f"cannot read {name}: more than the {limit} bytes accepted for a {what}")
        return b"".join(chunks)
    except OSError as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"cannot read {name}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((label for test, label in kinds if test(mode)), "not a regular file")


def replace_folder(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    import shutil

    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{target.name[:64]}-", dir=target.parent))
        os.rename(target, old / "previous")
    try:
        os.rename(staging, target)
    except OSError:
        if old is not None:
            os.rename(old / "previous", target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A staging folder beside ``target``, renamed to ``target`` when the block succeeds.

    An existing ``target`` is moved aside first and removed after the rename, so a reader sees
    the old folder or the new one, never half of either. On any error the staging folder is
    removed and ``target`` is left as it was; operating-system errors become
    :class:`OutputError` naming ``target``.
    """
    import shutil

    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{target.name[:64]}-", dir=parent))
        mode = file_mode()
        os.chmod(staging, mode | (mode & 0o444) >> 2)  # mkdtemp makes 0700; a folder readable as files are
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        yield staging
        replace_folder(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, HipsmlError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise


def write_figure_png(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Render a matplotlib ``Figure`` to PNG (Agg, at the figure's dpi) and write it atomically; return the path.

    The one way hipsml saves a picture: no pyplot state, no display, and a reader never sees a
    half-written PNG.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return atomic_write_bytes(path, buffer.getvalue())
