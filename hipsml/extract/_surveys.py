"""Surveys in worker processes: a hashable description and a per-process cache of opened surveys.

A :class:`SurveyRef` is what travels to a Dask task (a location and the options of
:func:`hipsml.open_survey`). :func:`open_cached` opens each description once per process,
so every task a worker runs shares that survey's decoded-tile cache and HTTP session; a
forked child starts with an empty cache (its counters start at zero and it never shares
sockets with its parent).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hipsml.errors import InvalidInputError

__all__ = ["SurveyRef", "open_cached", "resolve_surveys", "clear_survey_cache"]

_cache: dict[SurveyRef, Any] = {}
_cache_lock = threading.Lock()


def clear_survey_cache() -> None:
    """Forget every survey opened by :func:`open_cached` in this process (closing none)."""
    with _cache_lock:
        _cache.clear()


os.register_at_fork(after_in_child=_cache.clear)


@dataclass(frozen=True)
class SurveyRef:
    """A hashable description of a survey: its location and :func:`hipsml.open_survey` options.

    Examples
    --------
    >>> ref = SurveyRef("sky/r", {"memory_cache_bytes": 2**28})
    >>> same = SurveyRef("sky/r", {"memory_cache_bytes": 2**28})
    >>> ref == same, hash(ref) == hash(same)
    (True, True)
    """

    location: str
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __init__(self, location: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> None:
        if not isinstance(location, (str, os.PathLike)):
            raise InvalidInputError(f"survey location must be a path or URL, got {location!r}")
        items = tuple(sorted((options or {}).items()))
        try:
            hash(items)
        except TypeError:
            raise InvalidInputError(f"survey options must be hashable values, got {dict(items)!r}") from None
        object.__setattr__(self, "location", os.fspath(location))
        object.__setattr__(self, "options", items)

    def open(self) -> Any:
        """This survey, opened once per process (see :func:`open_cached`)."""
        return open_cached(self)


def open_cached(ref: SurveyRef) -> Any:
    """The survey ``ref`` describes, opened once in this process and shared by its threads."""
    survey = _cache.get(ref)
    if survey is not None:
        return survey
    from hipsml.hips import open_survey

    with _cache_lock:
        survey = _cache.get(ref)
        if survey is None:
            survey = open_survey(ref.location, **dict(ref.options))
            _cache[ref] = survey
    return survey


def resolve_surveys(surveys: Any) -> list[Any]:
    """A list of opened surveys from one survey, a SurveyRef, a location (str or path), or a sequence of them.

    The one place where :func:`hipsml.cutouts` and :func:`hipsml.train.sky_batches` turn what
    they are given into opened surveys (a location goes through :func:`hipsml.open_survey`).
    """
    from hipsml.hips import open_survey

    items = list(surveys) if isinstance(surveys, (list, tuple)) else [surveys]
    return [open_cached(s) if isinstance(s, SurveyRef) else open_survey(s) if isinstance(s, (str, os.PathLike)) else s
            for s in items]  # fmt: skip
