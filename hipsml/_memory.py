"""The one home for memory budgets: estimate a job's memory, compare it with a budget, refuse early.

A job (a SOM, a CNN, a cutout batch) works out how many bytes its arrays will take from its
parameters alone and calls :func:`check_memory` before allocating anything. The budget is, in
order of precedence: the ``budget`` argument, the ``HIPSML_MEMORY_BUDGET`` environment variable
(``"8GiB"``, ``"512MB"``, ``"1e9"``), or :data:`DEFAULT_FRACTION` of the machine's physical memory.
"""

from __future__ import annotations

import logging
import math
import os
import re

from hipsml.errors import InvalidInputError, ResourceLimitError

__all__ = [
    "DEFAULT_FRACTION",
    "ENV_VAR",
    "check_memory",
    "format_bytes",
    "memory_budget",
    "parse_bytes",
    "physical_memory",
]

logger = logging.getLogger(__name__)

#: Share of physical memory a single job may plan to use when no budget is given.
DEFAULT_FRACTION = 0.5
#: Environment variable that overrides the default budget (e.g. ``8GiB``).
ENV_VAR = "HIPSML_MEMORY_BUDGET"

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def physical_memory() -> int:
    """Bytes of physical memory on this machine (``os.sysconf``; 8 GiB where that is unavailable)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def parse_bytes(text: str | float, *, what: str = ENV_VAR) -> int:
    """A byte count from ``text`` such as ``"8GiB"``, ``"512 MB"``, ``"1e9"`` or a number.

    Raises
    ------
    InvalidInputError
        ``text`` is not a positive size; the message names ``what``.

    Examples
    --------
    >>> parse_bytes("8GiB")
    8589934592
    >>> parse_bytes("1.5 kB")
    1500
    """
    if isinstance(text, bool):
        raise InvalidInputError(f"{what} must be a size such as 8GiB, not {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = _SIZE.match(str(text))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise InvalidInputError(f"{what} must be a size such as 8GiB or 512MB, not {text!r}")
        value = float(match.group(1)) * _UNITS[unit]
    if not (value >= 1 and value < float("inf")):
        raise InvalidInputError(f"{what} must be a positive size such as 8GiB, not {text!r}")
    return int(value)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with one decimal (``"1.5 GiB"``).

    Examples
    --------
    >>> format_bytes(3 * 2**29)
    '1.5 GiB'
    """
    if not math.isfinite(n):
        return "an unbounded amount"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def memory_budget(budget: str | float | None = None) -> int:
    """The memory budget in bytes of one job.

    Parameters
    ----------
    budget
        Bytes, or a size string such as ``"8GiB"``. ``None`` reads ``HIPSML_MEMORY_BUDGET``, and
        without it takes :data:`DEFAULT_FRACTION` of :func:`physical_memory`.

    Raises
    ------
    InvalidInputError
        ``budget`` (or the environment variable) is not a positive size.

    Examples
    --------
    >>> memory_budget("2GiB")
    2147483648
    """
    if budget is not None:
        return parse_bytes(budget, what="memory budget")
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return parse_bytes(env, what=ENV_VAR)
    return int(physical_memory() * DEFAULT_FRACTION)


def check_memory(estimate_bytes: float, *, what: str, shrink: str = "", budget: str | float | None = None) -> int:
    """Refuse a job whose estimated memory exceeds the budget, before anything is allocated.

    Parameters
    ----------
    estimate_bytes
        The job's estimated peak memory in bytes (a float, so that products of huge parameters
        never overflow).
    what
        The job, for the message (``"a 10000 x 10000 SOM of 64 x 64 x 1 neurons"``).
    shrink
        Which parameters to make smaller, for the message (``"width, height or neuron_dim"``).
    budget
        Overrides :func:`memory_budget`'s default.

    Returns
    -------
    int
        The budget that was applied, in bytes.

    Raises
    ------
    ResourceLimitError
        The estimate exceeds the budget; the one-line message gives both figures.

    Examples
    --------
    >>> check_memory(2**20, what="a tiny job", budget="1GiB")
    1073741824
    """
    limit = memory_budget(budget)
    if not estimate_bytes <= limit:  # also refuses a NaN estimate
        hint = f"make {shrink} smaller, or " if shrink else ""
        raise ResourceLimitError(
            f"{what} needs about {format_bytes(estimate_bytes)}, more than the memory budget of "
            f"{format_bytes(limit)}; {hint}raise the budget with {ENV_VAR} (e.g. {ENV_VAR}=64GiB)"
        )
    logger.debug("%s: about %s of a %s budget", what, format_bytes(estimate_bytes), format_bytes(limit))
    return limit
