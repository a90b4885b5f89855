"""The one clock of hipsml's records: when a version, a mapping, a report or a file was written (UTC).

Examples
--------
>>> stamp = now_iso()
>>> stamp.endswith("+00:00") and len(stamp) == 25
True
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["now_iso", "utc_now"]


def utc_now() -> _dt.datetime:
    """The current time in UTC, to the second (what every record of hipsml states)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def now_iso() -> str:
    """:func:`utc_now` as ISO 8601 with its offset, e.g. ``2026-12-06T01:02:03+00:00``."""
    return utc_now().isoformat()
