"""Read and write PINK 2's four binary file formats (``FILE_FORMATS.md`` of ``HITS-AIN/PINK``).

Every file may start with text lines beginning with ``#`` (a header, ended by the first line not
starting with ``#``, or by ``# END OF HEADER``). Then little-endian 32-bit integers::

    data:     2 0 <dtype> <N> <data layout> <N * values>
    SOM:      2 1 <dtype> <SOM layout> <neuron layout> <neurons * values>
    mapping:  2 2 <dtype> <N> <SOM layout> <N * neurons float32 distances>
    rot/flip: 2 3 <N> <SOM layout> <N * neurons * (uint8 flipped, float32 angle in radians)>

A layout is ``<0 cartesian | 1 hexagonal> <ndim> <dims...>``; only float32 (``dtype`` 0) is
used. Image data is ``0 2 H W`` or ``0 3 C H W``; a hexagonal SOM of side ``d`` is ``1 2 d d``
and holds ``d*d - r*(r+1)`` neurons. PINK 2.5 itself writes the SOM layout of hexagonal maps
(and of every mapping file) as cartesian (``0``); the readers recognise a hexagonal map from the
number of values that follow.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from hipsml._files import atomic_write, user_path
from hipsml.errors import InvalidInputError

__all__ = [
    "PinkMapping",
    "PinkRotFlip",
    "pink_options",
    "PinkSom",
    "read_pink_file",
    "read_pink_som_file",
    "read_pink_data",
    "read_pink_mapping",
    "read_pink_rot_flip",
    "write_pink_data",
    "write_pink_som",
    "write_pink_mapping",
    "write_pink_rot_flip",
]

_VERSION = 2
_DATA, _SOM, _MAPPING, _ROT_FLIP = 0, 1, 2, 3
_KIND_NAMES = {_DATA: "data", _SOM: "SOM", _MAPPING: "mapping", _ROT_FLIP: "rot/flip"}
_ROT_FLIP_DTYPE = np.dtype([("flipped", "u1"), ("angle", "<f4")])  # packed, 5 bytes


@dataclass(frozen=True)
class PinkMapping:
    """A PINK mapping file: euclidean distance of each image to each neuron."""

    distances: np.ndarray  # (N, n) float32
    layout: str
    width: int
    height: int


@dataclass(frozen=True)
class PinkRotFlip:
    """A PINK rot/flip file: each image's best transform for each neuron."""

    angle: np.ndarray  # (N, n) float32 radians, PINK's value
    flipped: np.ndarray  # (N, n) bool
    layout: str
    width: int
    height: int

    @property
    def angle_degrees(self) -> np.ndarray:
        """The angles in degrees (float64)."""
        return np.rad2deg(self.angle.astype(np.float64))


def _hex_count(side: int) -> int:
    radius = (side - 1) // 2
    return side * side - radius * (radius + 1)


def _som_layout_ints(layout: str, width: int, height: int) -> list[int]:
    if layout == "hexagonal":
        return [1, 2, width, width]
    return [0, 2, height, width]  # row-major: [row, column]


def _neuron_count(
    layout_code: int, dims: list[int], total_values: int | None, per_neuron: int
) -> tuple[str, int, int, int]:
    """(layout, width, height, neurons) of a SOM layout; a square 'cartesian' one of a hexagon's count is hexagonal."""
    if len(dims) != 2:
        raise InvalidInputError(f"PINK SOM layout with {len(dims)} dimensions: hipsml reads 2-D maps only")
    d0, d1 = dims
    if layout_code == 1:
        return "hexagonal", d0, d0, _hex_count(d0)
    if (
        total_values is not None
        and d0 == d1
        and d0 % 2 == 1
        and d0 > 1
        and total_values == _hex_count(d0) * per_neuron
        and total_values != d0 * d1 * per_neuron
    ):
        return "hexagonal", d0, d0, _hex_count(d0)
    return "cartesian", d1, d0, d0 * d1


class _Reader:
    """Sequential little-endian reads from a PINK file, naming the file in every error."""

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path, self.fh = path, fh
        self.header = _skip_header(fh)

    def ints(self, count: int, what: str) -> list[int]:
        raw = self.fh.read(4 * count)
        if len(raw) != 4 * count:
            raise InvalidInputError(f"{self.path}: file ends inside the {what}; it is not a complete PINK file")
        return list(struct.unpack(f"<{count}i", raw))

    def layout(self, what: str) -> tuple[int, list[int]]:
        code, ndim = self.ints(2, what)
        if code not in (0, 1) or not 1 <= ndim <= 3:
            raise InvalidInputError(f"{self.path}: bad {what} (layout {code}, {ndim} dimensions)")
        dims = self.ints(ndim, what)
        if min(dims) < 1:
            raise InvalidInputError(
                f"{self.path}: bad {what} (dimensions {dims}; each must be >= 1); the file is damaged"
            )
        return code, dims

    def count(self, what: str) -> int:
        """A non-negative count (``what``: its name in the error)."""
        (value,) = self.ints(1, what)
        if value < 0:
            raise InvalidInputError(f"{self.path}: negative {what} ({value}); the file is damaged")
        return value

    def rest(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        raw = self.fh.read()
        need = count * dtype.itemsize
        if len(raw) != need:
            raise InvalidInputError(f"{self.path}: {what} holds {len(raw)} bytes, the header announces {need}")
        return np.frombuffer(raw, dtype=dtype).copy()


def _skip_header(fh: BinaryIO) -> str:
    """Skip the ``#`` comment lines at the start; return them."""
    lines = []
    while True:
        position = fh.tell()
        first = fh.read(1)
        if first != b"#":
            fh.seek(position)
            break
        line = first + fh.readline()
        lines.append(line.decode("utf-8", "replace"))
        if line.rstrip(b"\r\n") == b"# END OF HEADER":
            break
    return "".join(lines)


def _open(path: str | os.PathLike[str]) -> tuple[Path, BinaryIO]:
    source = user_path(path, what="PINK file")
    try:
        return source, open(source, "rb")
    except OSError as exc:
        raise InvalidInputError(f"cannot read PINK file {source}: {exc.strerror or exc}") from None


def _kind(reader: _Reader) -> int:
    version, kind = reader.ints(2, "file header")
    if version != _VERSION or kind not in _KIND_NAMES:
        raise InvalidInputError(
            f"{reader.path}: not a PINK 2 binary file (version {version}, type {kind}); PINK 1 files need "
            "PINK's convert_data_binary_file.py first"
        )
    return kind


def _expect(reader: _Reader, kind: int, want: int) -> None:
    if kind != want:
        raise InvalidInputError(f"{reader.path} is a PINK {_KIND_NAMES[kind]} file, not a {_KIND_NAMES[want]} file")


def _float32(reader: _Reader) -> None:
    (dtype,) = reader.ints(1, "data type")
    if dtype != 0:
        raise InvalidInputError(f"{reader.path}: data type {dtype}; PINK and hipsml use float32 (0) only")


def _read_data(reader: _Reader) -> np.ndarray:
    _float32(reader)
    count = reader.count("number of entries")
    code, dims = reader.layout("data layout")
    if code != 0 or len(dims) not in (2, 3):
        raise InvalidInputError(f"{reader.path}: data layout {code} {dims}: hipsml reads 2-D or 3-D cartesian images")
    shape = (1, *dims) if len(dims) == 2 else tuple(dims)
    values = reader.rest(np.dtype("<f4"), count * int(np.prod(shape)), "the image data")
    return values.reshape((count, *shape)).astype(np.float32)


def read_pink_data(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PINK data file as float32 images ``(N, C, H, W)`` (``C = 1`` for 2-D images).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> path = tempfile.mkdtemp() + "/images.bin"
    >>> _ = write_pink_data(path, np.ones((3, 1, 4, 4), np.float32))
    >>> read_pink_data(path).shape
    (3, 1, 4, 4)
    """
    source, fh = _open(path)
    with fh:
        reader = _Reader(source, fh)
        _expect(reader, _kind(reader), _DATA)
        return _read_data(reader)


@dataclass(frozen=True)
class PinkSom:
    """A PINK SOM file's content: its map's ``layout``, ``width`` and ``height``, and the neurons.

    ``weights`` is ``(n, C, side, side)`` float32 in storage order. :func:`hipsml.train.read_pink_som`
    turns it into a :class:`~hipsml.train.SOM`.
    """

    layout: str
    width: int
    height: int
    weights: np.ndarray


def _read_som(reader: _Reader) -> PinkSom:
    _float32(reader)
    code, som_dims = reader.layout("SOM layout")
    neuron_code, neuron_dims = reader.layout("neuron layout")
    if neuron_code != 0 or len(neuron_dims) not in (2, 3) or neuron_dims[-1] != neuron_dims[-2]:
        raise InvalidInputError(
            f"{reader.path}: neuron layout {neuron_code} {neuron_dims}: need square 2-D or 3-D neurons"
        )
    neuron_shape = (1, *neuron_dims) if len(neuron_dims) == 2 else tuple(neuron_dims)
    per_neuron = int(np.prod(neuron_shape))
    values = np.frombuffer(reader.fh.read(), dtype="<f4")
    layout, width, height, count = _neuron_count(code, som_dims, values.size, per_neuron)
    if values.size != count * per_neuron:
        raise InvalidInputError(
            f"{reader.path}: {values.size} values for a {layout} {width}x{height} SOM of {per_neuron}-value "
            f"neurons ({count * per_neuron} expected)"
        )
    return PinkSom(layout, width, height, values.reshape((count, *neuron_shape)).astype(np.float32))


def read_pink_som_file(path: str | os.PathLike[str]) -> PinkSom:
    """Read a PINK SOM file's layout and neurons (arrays; :func:`hipsml.train.read_pink_som` makes a SOM).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> path = tempfile.mkdtemp() + "/som.bin"
    >>> _ = write_pink_som(path, np.zeros((7, 1, 4, 4), np.float32), layout="hexagonal", width=3, height=3)
    >>> som = read_pink_som_file(path)
    >>> som.layout, som.width, som.weights.shape
    ('hexagonal', 3, (7, 1, 4, 4))
    """
    source, fh = _open(path)
    with fh:
        reader = _Reader(source, fh)
        _expect(reader, _kind(reader), _SOM)
        return _read_som(reader)


def _read_mapping(reader: _Reader) -> PinkMapping:
    _float32(reader)
    count = reader.count("number of entries")
    code, dims = reader.layout("SOM layout")
    values = np.frombuffer(reader.fh.read(), dtype="<f4")
    layout, width, height, neurons = _neuron_count(code, dims, values.size, count)
    if values.size != count * neurons:
        raise InvalidInputError(f"{reader.path}: {values.size} distances, {count} x {neurons} expected")
    return PinkMapping(values.reshape(count, neurons).astype(np.float32), layout, width, height)


def read_pink_mapping(path: str | os.PathLike[str]) -> PinkMapping:
    """Read a PINK mapping file (distances ``(N, neurons)``)."""
    source, fh = _open(path)
    with fh:
        reader = _Reader(source, fh)
        _expect(reader, _kind(reader), _MAPPING)
        return _read_mapping(reader)


def _read_rot_flip(reader: _Reader) -> PinkRotFlip:
    count = reader.count("number of entries")
    code, dims = reader.layout("SOM layout")
    raw = reader.fh.read()
    if len(raw) % _ROT_FLIP_DTYPE.itemsize:
        raise InvalidInputError(f"{reader.path}: {len(raw)} bytes is not a whole number of (flip, angle) pairs")
    records = np.frombuffer(raw, dtype=_ROT_FLIP_DTYPE)
    layout, width, height, neurons = _neuron_count(code, dims, records.size, count)
    if records.size != count * neurons:
        raise InvalidInputError(f"{reader.path}: {records.size} (flip, angle) pairs, {count} x {neurons} expected")
    return PinkRotFlip(
        records["angle"].reshape(count, neurons).astype(np.float32),
        records["flipped"].reshape(count, neurons).astype(bool),
        layout,
        width,
        height,
    )


def read_pink_rot_flip(path: str | os.PathLike[str]) -> PinkRotFlip:
    """Read a PINK rot/flip file (best angle in radians and flip ``(N, neurons)``)."""
    source, fh = _open(path)
    with fh:
        reader = _Reader(source, fh)
        _expect(reader, _kind(reader), _ROT_FLIP)
        return _read_rot_flip(reader)


def read_pink_file(path: str | os.PathLike[str]) -> np.ndarray | PinkSom | PinkMapping | PinkRotFlip:
    """Read any PINK binary file, by the type its header announces, as arrays.

    Returns
    -------
    ndarray (data file: images ``(N, C, H, W)``), PinkSom (SOM file), PinkMapping (mapping file) or
    PinkRotFlip (rot/flip file). :func:`hipsml.train.read_pink` gives a SOM file as a SOM.
    """
    source, fh = _open(path)
    with fh:
        reader = _Reader(source, fh)
        kind = _kind(reader)
        if kind == _DATA:
            return _read_data(reader)
        if kind == _SOM:
            return _read_som(reader)
        if kind == _MAPPING:
            return _read_mapping(reader)
        return _read_rot_flip(reader)


def _header_bytes(header: str | None) -> bytes:
    if not header:
        return b""
    lines = [line if line.startswith("#") else f"# {line}" for line in header.splitlines()]
    return ("\n".join(lines) + "\n# END OF HEADER\n").encode()


def pink_options(config: Any) -> list[str]:
    """The PINK 2.5 command-line options that train the same map as ``config``.

    PINK's ``CartesianLayout`` stores rows of length ``--som-height``; a hipsml cartesian map
    stores rows of length ``width``. So ``--som-width`` is ``config.height`` (the number of rows)
    and ``--som-height`` is ``config.width``, and the neurons are then in the same order in both.
    Options PINK lacks (``mode``, ``schedule``, ``precision``, ``pbc``, ``init='samples'``,
    ``normalise``) are not translated; ``neuron_dim`` must be resolved (not None) to be included.

    Examples
    --------
    >>> from hipsml.train.som._config import SOMConfig
    >>> " ".join(pink_options(SOMConfig(width=3, height=2, numrot=4, neuron_dim=8))[:4])
    '--som-width 2 --som-height 3'
    """
    options = ["--som-width", str(config.height), "--som-height", str(config.width),
               "--layout", config.layout, "--numrot", str(config.numrot),
               "--interpolation", config.interpolation, "--dist-func", config.neighbourhood,
               str(config.sigma), str(config.damping), "--max-update-distance", str(config.max_update_distance),
               "--num-iter", str(config.epochs), "--seed", str(config.seed),
               "--euclidean-distance-shape", config.distance_shape]  # fmt: skip
    if config.neuron_dim is not None:
        options += ["--neuron-dimension", str(config.neuron_dim)]
    if config.distance_dim is not None:
        options += ["--euclidean-distance-dimension", str(config.distance_dim)]
    if config.init in ("zero", "random", "random_with_preferred_direction"):
        options += ["--init", config.init]
    elif config.init == "file_init":
        options += ["--init", str(config.init_file)]
    if not config.flip:
        options.append("--flip-off")
    if not config.shuffle:
        options.append("--input-shuffle-off")
    return options


def _pack(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def write_pink_data(path: str | os.PathLike[str], images: np.ndarray, *, header: str | None = None) -> Path:
    """Write images ``(N, C, H, W)`` or ``(N, H, W)`` as a PINK data file (``C == 1`` as 2-D images).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> path = write_pink_data(tempfile.mkdtemp() + "/d.bin", np.zeros((2, 5, 5), np.float32))
    >>> path.stat().st_size == 4 * (8 + 2 * 25)  # 8 header integers, then the floats
    True
    """
    array = np.asarray(images, dtype="<f4")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim not in (3, 4):
        raise InvalidInputError(f"images must be (N, C, H, W) or (N, H, W), got {array.shape}")
    dims = list(array.shape[1:])
    with atomic_write(path) as fh:
        fh.write(_header_bytes(header))
        fh.write(_pack(_VERSION, _DATA, 0, array.shape[0], 0, len(dims), *dims))
        fh.write(np.ascontiguousarray(array).tobytes())
    return user_path(path, what="output")


def write_pink_som(
    path: str | os.PathLike[str],
    weights: np.ndarray,
    *,
    layout: str,
    width: int,
    height: int,
    header: str | None = None,
) -> Path:
    """Write neurons ``(n, C, side, side)`` as a PINK SOM file (layout code 1 for hexagonal maps)."""
    array = np.asarray(weights, dtype="<f4")
    if array.ndim == 3:
        array = array[:, None]
    expected = _hex_count(width) if layout == "hexagonal" else width * height
    if array.ndim != 4 or array.shape[0] != expected:
        raise InvalidInputError(f"a {layout} {width}x{height} SOM has {expected} neurons; got weights {array.shape}")
    neuron_dims = list(array.shape[2:]) if array.shape[1] == 1 else list(array.shape[1:])
    with atomic_write(path) as fh:
        fh.write(_header_bytes(header))
        fh.write(_pack(_VERSION, _SOM, 0, *_som_layout_ints(layout, width, height), 0, len(neuron_dims), *neuron_dims))
        fh.write(np.ascontiguousarray(array).tobytes())
    return user_path(path, what="output")


def write_pink_mapping(
    path: str | os.PathLike[str],
    distances: np.ndarray,
    *,
    layout: str,
    width: int,
    height: int,
    header: str | None = None,
) -> Path:
    """Write distances ``(N, neurons)`` as a PINK mapping file."""
    array = np.asarray(distances, dtype="<f4")
    expected = _hex_count(width) if layout == "hexagonal" else width * height
    if array.ndim != 2 or array.shape[1] != expected:
        raise InvalidInputError(f"mapping distances must be (N, {expected}), got {array.shape}")
    with atomic_write(path) as fh:
        fh.write(_header_bytes(header))
        fh.write(_pack(_VERSION, _MAPPING, 0, array.shape[0], *_som_layout_ints(layout, width, height)))
        fh.write(np.ascontiguousarray(array).tobytes())
    return user_path(path, what="output")


def write_pink_rot_flip(
    path: str | os.PathLike[str],
    angle_radians: np.ndarray,
    flipped: np.ndarray,
    *,
    layout: str,
    width: int,
    height: int,
    header: str | None = None,
) -> Path:
    """Write best angles (radians) and flips ``(N, neurons)`` as a PINK rot/flip file."""
    angles = np.asarray(angle_radians, dtype=np.float32)
    flips = np.asarray(flipped, dtype=bool)
    expected = _hex_count(width) if layout == "hexagonal" else width * height
    if angles.ndim != 2 or angles.shape[1] != expected or flips.shape != angles.shape:
        raise InvalidInputError(f"angles and flips must both be (N, {expected}), got {angles.shape} and {flips.shape}")
    records = np.empty(angles.shape, dtype=_ROT_FLIP_DTYPE)
    records["flipped"] = flips
    records["angle"] = angles
    with atomic_write(path) as fh:
        fh.write(_header_bytes(header))
        fh.write(_pack(_VERSION, _ROT_FLIP, angles.shape[0], *_som_layout_ints(layout, width, height)))
        fh.write(records.tobytes())
    return user_path(path, what="output")
