"""What a CNN run may ask for: a stem that fits the images, memory within the budget, readable run records.

All of these run before a run folder is created (or, for a resume, before a weight is loaded), so
a refused run leaves nothing behind and the corrected rerun starts cleanly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hipsml._memory import check_memory
from hipsml.errors import InvalidInputError
from hipsml.train.cnn._model import ModelSpec

__all__ = ["check_cnn_memory", "check_record", "check_stem_fits", "cnn_memory_estimate"]


def check_stem_fits(spec: ModelSpec, image_side: int, *, where: str) -> None:
    """Refuse a ``stem_stride`` larger than the images (the stem would see no pixel: NaN losses).

    Examples
    --------
    >>> check_stem_fits(ModelSpec(1, 2, stem_stride=1000), 16, where="ds v1")
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: stem_stride 1000 is larger than the 16-pixel images of ds v1; choose ...
    """
    if spec.stem_stride > image_side:
        raise InvalidInputError(f"stem_stride {spec.stem_stride} is larger than the {image_side}-pixel images "
                                f"of {where}; "
                                f"choose stem_stride <= {image_side}")  # fmt: skip


def _stem_side(spec: ModelSpec, side: int) -> int:
    if spec.stem_stride <= 2:  # 3x3, padding 1
        return (side - 1) // spec.stem_stride + 1
    return max((side - spec.stem_stride) // spec.stem_stride + 1, 1)


def cnn_memory_estimate(spec: ModelSpec, image_side: int, batch_size: int) -> float:
    """Bytes a training step of ``spec`` on ``batch_size`` cutouts of ``image_side`` pixels needs, roughly.

    Parameters count 24 bytes each (weights, gradients, two Adam moments, the update and the best
    model kept aside); activations 8 bytes per value (forward, kept for the backward pass) with six
    values per channel and pixel in each residual block. A float, so huge widths never overflow.

    Examples
    --------
    >>> small = cnn_memory_estimate(ModelSpec(1, 2, widths=(4, 8)), 16, 8)
    >>> huge = cnn_memory_estimate(ModelSpec(1, 2, widths=(100000, 100000)), 16, 8)
    >>> small < 2**20 < 2**40 < huge
    True
    """
    kernel = 3 if spec.stem_stride <= 2 else spec.stem_stride
    params = float(spec.in_channels) * spec.stem_channels * kernel * kernel
    side = float(_stem_side(spec, image_side))
    activations = float(spec.stem_channels) * side * side * 3
    cin = float(spec.stem_channels)
    for s, width in enumerate(spec.widths):
        w = float(width)
        for b in range(spec.blocks):
            if s > 0 and b == 0:
                side = math.floor((side - 1) / 2) + 1
            params += cin * w * 9 + w * w * 9 + (cin * w if cin != w or (s > 0 and b == 0) else 0.0)
            activations += 6 * w * side * side
            cin = w
    params += cin * spec.num_classes
    return params * 24 + float(batch_size) * activations * 8


def check_cnn_memory(spec: ModelSpec, image_side: int, batch_size: int) -> float:
    """Refuse a CNN whose :func:`cnn_memory_estimate` exceeds the memory budget; return the estimate.

    Raises
    ------
    ResourceLimitError
        One line with the estimate and the budget (``HIPSML_MEMORY_BUDGET`` raises it).
    """
    estimate = cnn_memory_estimate(spec, image_side, batch_size)
    widths = ", ".join(str(w) for w in spec.widths)
    check_memory(estimate, what=f"a CNN of widths [{widths}] on batches of {batch_size} {image_side}-pixel cutouts",
                 shrink="widths, stem_channels or batch_size")  # fmt: skip
    return estimate


def check_record(record: Any, path: Path, what: str, keys: Sequence[str]) -> dict[str, Any]:
    """``record`` (a parsed JSON file) as a dict holding ``keys``, or a one-line error naming ``path``.

    Examples
    --------
    >>> check_record([], Path("run/run.json"), "CNN run", ["model"])
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: run/run.json is not a CNN run record (a list, not an object); the run ...
    """
    if not isinstance(record, dict):
        raise InvalidInputError(f"{path} is not a {what} record (a {type(record).__name__}, not an object); "
                                "the run folder is damaged")  # fmt: skip
    missing = [key for key in keys if key not in record]
    if missing:
        raise InvalidInputError(f"{path} lacks {', '.join(repr(k) for k in missing)}; the run folder is damaged "
                                "(train it again in a new folder)")  # fmt: skip
    return record
