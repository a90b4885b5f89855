"""What a SOM job may allocate: its memory estimate from the options, and safe reads of saved weights.

Both run before anything large is allocated and refuse through :func:`hipsml._memory.check_memory`,
so a ``10000 x 10000`` map, a ``neuron_dim`` of 100000, ``numrot`` of a million or a
``weights.npz`` whose header claims 2**40 floats ends as one line naming the estimate and the budget.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from hipsml._memory import check_memory
from hipsml.errors import InvalidInputError
from hipsml.train.som._config import SOMConfig

__all__ = ["check_som_memory", "read_npz_array", "som_memory_estimate"]


def som_memory_estimate(config: SOMConfig, channels: int, image_side: int, *, chunk: int = 64, count: int = 0) -> float:
    """Bytes a SOM of ``config`` on ``channels x image_side^2`` images needs at its peak, roughly.

    The sum of its largest arrays: the neurons (three copies: host, device, update), the grid
    distance and neighbourhood tables (``n^2``, float64 while built), the transform tables (the 8
    exact turns and flips are index permutations; the ``numrot/4`` interpolated angles have 4
    bilinear taps per pixel) and, per chunk of ``chunk`` images, each image resampled at every
    interpolated angle and every neuron's distance in every transform; and the ``count`` training
    images held in memory (as read, and normalised: two float32 copies). A float, so that products of
    huge options never overflow. For PINK's Radio Galaxy Zoo setup (331 neurons of 176 x 176,
    360 rotations and flips) it gives about 1 GiB, against 0.6-0.8 GiB measured.

    Examples
    --------
    >>> small = som_memory_estimate(SOMConfig(width=2, height=2, numrot=4, neuron_dim=8), 1, 8)
    >>> huge = som_memory_estimate(SOMConfig(width=10000, height=10000, numrot=4, neuron_dim=8), 1, 8)
    >>> small < 2**20 < 2**50 < huge
    True
    """
    from hipsml.train.som._config import default_neuron_dim

    n = float(config.neuron_count)
    nd = float(config.neuron_dim if config.neuron_dim is not None else default_neuron_dim(image_side, config.numrot))
    pixels = float(channels) * nd * nd  # one neuron
    transforms = float(config.transform_count)
    angles = float(config.rotations_per_quarter)
    neurons = 3 * n * pixels * 4
    grid = n * n * (5 * 8 + 4 + 1)
    tables = 3 * 8 * pixels * 4 + angles * nd * nd * 4 * 8
    search = float(chunk) * (angles * pixels + n * transforms) * 4
    images = float(chunk + 2 * count) * channels * float(image_side) ** 2 * 4
    return neurons + grid + tables + search + images


def check_som_memory(config: SOMConfig, channels: int, image_side: int, *, chunk: int = 64, count: int = 0) -> float:
    """Refuse a SOM whose :func:`som_memory_estimate` exceeds the memory budget; return the estimate.

    Raises
    ------
    ResourceLimitError
        One line with the estimate and the budget (``HIPSML_MEMORY_BUDGET`` raises it).
    """
    estimate = som_memory_estimate(config, channels, image_side, chunk=chunk, count=count)
    nd = config.neuron_dim if config.neuron_dim is not None else "auto"
    data = f", trained on {count:,} images" if count else ""
    check_memory(estimate, what=(f"a {config.layout} {config.width}x{config.height} SOM of {nd}-pixel neurons, "
                                 f"{channels} channel(s), numrot {config.numrot}{data}"),
                 shrink="width, height, neuron_dim, numrot or the training split")  # fmt: skip
    return estimate


def read_npz_array(path: Path, name: str) -> np.ndarray:
    """Array ``name`` of the ``.npz`` archive ``path``, its header checked before anything is allocated.

    The header's shape is compared with the memory budget and with the member's stored size, so
    a forged or damaged header is refused instead of allocating what it claims.

    Raises
    ------
    InvalidInputError
        The archive is unreadable, truncated, lacks ``name``, or its header disagrees with its size.
    ResourceLimitError
        The header claims an array larger than the memory budget.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{name}.npy")
            with archive.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in readers:
                    raise InvalidInputError(
                        f"{path}: array {name!r} has .npy format {version}; hipsml reads 1.0 and 2.0"
                    )
                shape, fortran, dtype = readers[version](fh)
                if dtype.hasobject:
                    raise InvalidInputError(
                        f"{path}: array {name!r} holds Python objects; hipsml reads numeric arrays only"
                    )
                count = float(np.prod([float(s) for s in shape])) if shape else 1.0
                check_memory(count * dtype.itemsize, what=f"{path} array {name!r} of shape {shape}",
                             shrink="")  # fmt: skip
                body = info.file_size - fh.tell()
                if body != count * dtype.itemsize:
                    raise InvalidInputError(f"{path}: array {name!r} claims shape {shape} "
                                            f"({count * dtype.itemsize:.0f} "
                                            f"bytes) but stores {body}; the file is damaged")  # fmt: skip
                data = np.frombuffer(bytearray(fh.read()), dtype=dtype)  # writable, no copy
    except KeyError:
        raise InvalidInputError(f"{path} holds no array {name!r}; the file is damaged or not a hipsml SOM") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(
            f"cannot read {path}: {exc}; the file is damaged (train or save the SOM again)"
        ) from None
    return data.reshape(shape, order="F" if fortran else "C")
