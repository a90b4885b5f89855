"""Coverage per channel, and dropping targets by coverage (``targets.drop_uncovered``, ``targets.min_coverage``).

Two ways to know a target's coverage, cheapest first:

* **before extraction**, from where the surveys hold data: the target's centre lies in a tile
  inside a survey's ``Moc.fits`` or, for a local survey without one, in a tile present on disk
  (:func:`centre_covered`; ``drop_uncovered``);
* **by extraction**, exactly: a coverage pass cuts every candidate, keeps only the fraction of
  each channel's pixels holding data (:func:`channel_coverage`) and drops the targets below
  ``min_coverage`` (or, with ``drop_uncovered`` and a remote survey without a MOC, those with no
  data in any channel) *before* the rows are fixed. The version is then built from the kept
  targets as usual, so rows stay a pure function of the targets, units own whole chunks, and
  resume and incremental versions work unchanged; the price is a second extraction of the
  candidates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import healpy as hp
import numpy as np

from hipsml.errors import RecipeError

__all__ = [
    "ProbeJob",
    "centre_covered",
    "channel_coverage",
    "coverage_drops",
    "coverage_thresholds",
    "probe_unit",
]

logger = logging.getLogger(__name__)


def channel_coverage(block: np.ndarray) -> np.ndarray:
    """The fraction of each channel's pixels holding data (not NaN): ``(N, C)`` float32.

    Parameters
    ----------
    block : numpy.ndarray
        Cutouts ``(N, C, size, size)``.

    Examples
    --------
    >>> block = np.ones((1, 2, 2, 2), dtype=np.float32); block[0, 1, 0] = np.nan
    >>> channel_coverage(block).tolist()
    [[1.0, 0.5]]
    """
    n, c = block.shape[:2]
    finite = np.count_nonzero(np.isfinite(block.reshape(n, c, -1)), axis=2)
    return (finite / (block.shape[2] * block.shape[3])).astype(np.float32)


def centre_covered(surveys: list[Any], orders: tuple[int, ...], ra: np.ndarray, dec: np.ndarray) -> np.ndarray | None:
    """True where a target's centre lies in a tile holding data in at least one survey.

    A survey's tiles holding data are those inside its ``Moc.fits``, else (a local survey) the
    tile files present. None when a survey has neither (a remote survey without a MOC): its
    footprint is unknown before extraction.
    """
    from hipsml.hips import icrs_to_frame

    covered = np.zeros(ra.size, dtype=bool)
    vec = hp.ang2vec(ra, dec, lonlat=True)
    for sv, k in zip(surveys, orders, strict=True):
        v = vec @ icrs_to_frame(sv.frame).T
        npix = hp.vec2pix(1 << k, v[:, 0], v[:, 1], v[:, 2], nest=True)
        if sv.moc is not None:
            covered |= sv.moc.contains_tiles(k, npix)
            continue
        present = sv.tiles_present(k)
        if present is None:
            return None
        covered |= np.isin(npix, present)
    return covered


def coverage_thresholds(
    min_coverage: float | dict[str, float] | None,
    channels: list[str],
    groups: dict[str, list[int]],
    *,
    source: str,
) -> np.ndarray:
    """``targets.min_coverage`` as one threshold per channel (0 where none applies).

    Parameters
    ----------
    min_coverage : float, mapping or None
        One number for every channel, or a mapping from a channel name (``r``, ``DSS2[0]``) or a
        survey name (all its channels) to a number.
    channels : list of str
        The dataset's channel names.
    groups : dict of str to list of int
        Each survey name and the indices of its channels.
    source : str
        The recipe, named in errors.

    Examples
    --------
    >>> coverage_thresholds({"b": 0.5}, ["a", "b"], {"a": [0], "b": [1]}, source="r.yaml").tolist()
    [0.0, 0.5]
    """
    out = np.zeros(len(channels), dtype=np.float64)
    if min_coverage is None:
        return out
    if not isinstance(min_coverage, dict):
        out[:] = float(min_coverage)
        return out
    from hipsml.dataset._recipe import did_you_mean

    for name, value in min_coverage.items():
        if name in channels:
            out[channels.index(name)] = max(out[channels.index(name)], float(value))
        elif name in groups:
            out[groups[name]] = np.maximum(out[groups[name]], float(value))
        else:
            known = list(dict.fromkeys([*channels, *groups]))
            raise RecipeError(
                f"{source}: targets.min_coverage: no channel or survey named {name!r} (they are {', '.join(known)})"
                + did_you_mean(name, known)
            )
    return out


@dataclass(frozen=True)
class CoverageDrops:
    """Which targets a coverage pass keeps, and how many it drops for each reason."""

    keep: np.ndarray
    no_data: int
    min_coverage: int
    by_channel: dict[str, int]


def coverage_drops(cc: np.ndarray, thresholds: np.ndarray, channels: list[str], *, drop_empty: bool) -> CoverageDrops:
    """Targets to keep given their channel coverage ``cc`` (N, C): none below a channel's threshold and,
    with ``drop_empty``, none without data in every channel. A target without any data counts as
    ``no_data`` when ``drop_empty``, else under ``min_coverage``; ``by_channel`` counts each channel below
    its threshold (a target may count in several).

    Examples
    --------
    >>> cc = np.array([[1.0, 0.2], [0.0, 0.0], [0.9, 0.9]], dtype=np.float32)
    >>> d = coverage_drops(cc, np.array([0.0, 0.5]), ["a", "b"], drop_empty=True)
    >>> d.keep.tolist(), d.no_data, d.min_coverage, d.by_channel
    ([False, False, True], 1, 1, {'b': 1})
    """
    empty = cast(np.ndarray, (cc <= 0.0).all(axis=1)) if drop_empty else np.zeros(cc.shape[0], dtype=bool)
    below = cc < thresholds[None, :].astype(np.float32)
    low = below.any(axis=1) & ~empty
    by_channel = {name: int(below[low, i].sum()) for i, name in enumerate(channels) if below[low, i].any()}
    return CoverageDrops(~(empty | low), int(empty.sum()), int(low.sum()), by_channel)


@dataclass(frozen=True)
class ProbeJob:
    """One Dask task of a coverage pass: cut one unit of candidates, keep only their channel coverage."""

    surveys: tuple[Any, ...]
    spec: Any
    unit: Any
    chunk_rows: int


def probe_unit(job: ProbeJob) -> dict[str, Any]:
    """The channel coverage ``(n, C)`` of one unit's cutouts, with their rows among the candidates.

    The unit is cut ``chunk_rows`` cutouts at a time into one reused buffer, as the build cuts it,
    so the pass needs no more memory than the build (the decoded tiles are kept between pieces).
    """
    from hipsml.extract import UnitExtractor

    unit = job.unit
    extractor = UnitExtractor(job.surveys, job.spec)
    per_channel = np.empty((len(unit), extractor.nch), dtype=np.float32)
    for part, block in extractor.extract_in_pieces(job.spec, unit, job.chunk_rows):
        per_channel[part] = channel_coverage(block)
    return {"rows": np.asarray(unit.rows), "channel_coverage": per_channel, "n": len(unit)}
