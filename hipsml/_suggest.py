"""The one home of "did you mean" hints and of name lists in error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest_name", "did_you_mean", "name_list"]


def closest_name(word: str, choices: Iterable[object]) -> str | None:
    """The choice ``word`` most likely meant, or ``None``.

    In order: the same name in another case; the closest by :func:`difflib.get_close_matches`
    (ignoring case); the first choice that starts with ``word`` (``RA`` -> ``RAJ2000``).

    Examples
    --------
    >>> closest_name("RA", ["ID", "RAJ2000", "DEJ2000"])
    'RAJ2000'
    >>> closest_name("widht", ["width", "height"])
    'width'
    >>> closest_name("zzz", ["width", "height"]) is None
    True
    """
    names = [str(c) for c in choices]
    text = str(word)
    lowered: dict[str, str] = {}
    for name in names:
        lowered.setdefault(name.lower(), name)
    if text.lower() in lowered:
        return lowered[text.lower()]
    close = difflib.get_close_matches(text.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return lowered[close[0]]
    if text:
        for name in names:
            if name.lower().startswith(text.lower()):
                return name
    return None


def did_you_mean(word: str, choices: Iterable[object], *, otherwise: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (see :func:`closest_name`).

    When none is close: ``otherwise`` with ``{names}`` replaced by the choices (e.g.
    ``otherwise="; choose one of {names}"``), or ``""``.

    Examples
    --------
    >>> did_you_mean("RAJ2000x", ["RAJ2000", "DEJ2000"])
    "; did you mean 'RAJ2000'?"
    >>> did_you_mean("zzz", ["a", "b"], otherwise="; choose one of {names}")
    '; choose one of a, b'
    """
    names = [str(c) for c in choices]
    close = closest_name(word, names)
    if close is not None:
        return f"; did you mean {close!r}?"
    return otherwise.replace("{names}", ", ".join(names))


def name_list(names: Iterable[object], *, limit: int = 20) -> str:
    """``"a, b, c"``; beyond ``limit`` names the first ``limit`` and how many in all.

    Examples
    --------
    >>> name_list(["ra", "dec", "id"])
    'ra, dec, id'
    >>> name_list([f"c{i}" for i in range(30)], limit=3)
    'c0, c1, c2, ... (30 in all)'
    """
    items = [str(n) for n in names]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])}, ... ({len(items)} in all)"
