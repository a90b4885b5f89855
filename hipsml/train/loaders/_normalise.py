"""Normalisations of cutout batches, as pure numpy functions, and the loaders' last step.

Every function takes a batch ``(B, C, H, W)`` and works per cutout and per channel (the
statistics of :func:`standardise` excepted: one mean and one standard deviation per channel,
from the training split). NaN (blank or uncovered pixels) are ignored by the statistics and
stay NaN; :func:`fill_nan` replaces them afterwards and can append the coverage mask as an
extra channel. :func:`parse_normalisation` turns a name or a config mapping into a
:class:`Normalisation`, the callable the loaders apply.

==============  ==========================================================================
name            what it does (per cutout and channel)
==============  ==========================================================================
``minmax``      ``(x - min) / (max - min)`` to [0, 1] (PINK's convention); constant -> 0
``asinh``       min-max, then ``asinh(y / a) / asinh(1 / a)`` (astropy's ``AsinhStretch``)
``percentile``  clip to the ``lower``..``upper`` percentiles, then to [0, 1]
``standardise`` ``(x - mean[c]) / std[c]`` with the training split's channel statistics
==============  ==========================================================================
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from hipsml._suggest import did_you_mean
from hipsml.errors import InvalidInputError

__all__ = [
    "NORMALISATIONS",
    "ChannelStats",
    "Normalisation",
    "asinh_stretch",
    "channel_stats",
    "fill_nan",
    "minmax",
    "parse_normalisation",
    "percentile_clip",
    "prepare_batch",
    "standardise",
]

#: the normalisations by name, with their options and defaults
NORMALISATIONS: dict[str, dict[str, Any]] = {
    "minmax": {},
    "asinh": {"a": 0.1},
    "percentile": {"lower": 1.0, "upper": 99.0},
    "standardise": {"split": "train", "sample": 4096, "seed": 0},
}
_ALIASES = {"standardize": "standardise", "min-max": "minmax", "min_max": "minmax"}


def _did_you_mean(word: str, choices: Any) -> str:
    return did_you_mean(word, choices, otherwise="; choose one of {names}")


def _check_batch(x: Any, name: str = "batch") -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise InvalidInputError(f"{name} must be (B, C, H, W), got shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise InvalidInputError(f"{name} must hold floats, got {arr.dtype}")
    return arr


def _target(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """A float32 array to write the result into: ``out`` (which may be ``x``), else a new one."""
    if out is None:
        return np.array(x, dtype=np.float32, copy=True)
    if out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise InvalidInputError(f"out must be a C-contiguous float32 array of shape {x.shape}")
    if out is not x:
        np.copyto(out, x, casting="same_kind")
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _affine_rows(flat: np.ndarray, lo: np.ndarray, scale: np.ndarray, value: np.float32, fill: bool) -> None:
    """``flat[b, c] = (flat[b, c] - lo[b, c]) * scale[b, c]`` in float32, in place, one pass;
    with ``fill``, a NaN result becomes ``value`` (what :func:`fill_nan` does after it)."""
    nb, nc, npx = flat.shape
    for b in range(nb):
        for c in range(nc):
            lo_bc = lo[b, c]
            s = scale[b, c]
            row = flat[b, c]
            if fill:
                for p in range(npx):
                    y = (row[p] - lo_bc) * s
                    row[p] = value if y != y else y
            else:
                for p in range(npx):
                    row[p] = (row[p] - lo_bc) * s


def _rescale(flat: np.ndarray, lo: np.ndarray, hi: np.ndarray, nan_to: float | None = None) -> None:
    """``flat`` (B, C, P) float32 to ``(flat - lo) / (hi - lo)`` in place (``lo``, ``hi``: (B, C)
    float32); 0 where ``hi == lo``.

    With ``nan_to``, NaN in the result are replaced by it in the same pass (as a later
    ``fill_nan(flat, nan_to)`` would)."""
    span = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(span > 0, 1.0 / span, 0.0).astype(np.float32)
    fill = nan_to is not None
    _affine_rows(flat, lo, scale, np.float32(nan_to if fill else 0.0), fill)


def minmax(x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Each channel of each cutout to [0, 1]: ``(x - min) / (max - min)`` (PINK's convention).

    NaN pixels are ignored and stay NaN; a constant channel becomes 0.

    Parameters
    ----------
    x : numpy.ndarray
        ``(B, C, H, W)`` floats.
    out : numpy.ndarray, optional
        C-contiguous float32 array of the same shape to write into (``x`` itself for in place).

    Returns
    -------
    numpy.ndarray
        ``(B, C, H, W)`` float32.

    Examples
    --------
    >>> minmax(np.array([[[[2.0, 4.0], [6.0, np.nan]]]])).tolist()
    [[[[0.0, 0.5], [1.0, nan]]]]
    """
    x = _check_batch(x)
    return _minmax(_target(x, out))


def _minmax(y: np.ndarray, nan_to: float | None = None) -> np.ndarray:
    """:func:`minmax` of the float32 batch ``y`` in place, then NaN to ``nan_to`` (None: kept), in one pass."""
    flat = y.reshape(y.shape[0], y.shape[1], -1)
    if flat.shape[-1] == 0 or flat.shape[0] == 0:
        return y
    lo = np.fmin.reduce(flat, axis=2)  # fmin/fmax skip NaN (NaN only when all are)
    hi = np.fmax.reduce(flat, axis=2)
    _rescale(flat, lo, hi, nan_to)
    return y


def asinh_stretch(x: np.ndarray, *, a: float = 0.1, out: np.ndarray | None = None) -> np.ndarray:
    """Min-max to [0, 1], then ``asinh(y / a) / asinh(1 / a)`` (astropy's ``AsinhStretch(a)``).

    Small ``a`` lifts faint structure (``a`` -> inf is the identity on [0, 1]).

    Examples
    --------
    >>> y = asinh_stretch(np.array([[[[0.0, 0.5, 1.0]]]]), a=0.1)
    >>> [round(v, 4) for v in y.ravel().tolist()]
    [0.0, 0.7713, 1.0]
    """
    a = _positive(a, "asinh option a")
    y = minmax(x, out=out)
    np.multiply(y, np.float32(1.0 / a), out=y)
    np.arcsinh(y, out=y)
    np.multiply(y, np.float32(1.0 / math.asinh(1.0 / a)), out=y)
    return y


def percentile_clip(
    x: np.ndarray, *, lower: float = 1.0, upper: float = 99.0, out: np.ndarray | None = None
) -> np.ndarray:
    """Clip each channel of each cutout to its ``lower``..``upper`` percentiles, then map to [0, 1].

    Percentiles are numpy's (linear interpolation) over the finite pixels; NaN stay NaN.

    Examples
    --------
    >>> x = np.arange(101, dtype=np.float32).reshape(1, 1, 1, 101)
    >>> y = percentile_clip(x, lower=10, upper=90)
    >>> float(y[0, 0, 0, 5]), float(y[0, 0, 0, 50]), float(y[0, 0, 0, 95])
    (0.0, 0.5, 1.0)
    """
    lower, upper = float(lower), float(upper)
    if not 0.0 <= lower < upper <= 100.0:
        raise InvalidInputError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {lower}, {upper}")
    x = _check_batch(x)
    y = _target(x, out)
    flat = y.reshape(y.shape[0], y.shape[1], -1)
    if flat.size == 0:
        return y
    finite = np.isfinite(flat)
    whole = finite.all(axis=2)
    lo = np.full(flat.shape[:2], np.nan, dtype=np.float64)
    hi = np.full(flat.shape[:2], np.nan, dtype=np.float64)
    if whole.any():
        q = np.percentile(flat[whole], [lower, upper], axis=-1)
        lo[whole], hi[whole] = q[0], q[1]
    for b, c in zip(*np.nonzero(~whole), strict=True):  # cutouts with blank pixels: rare
        values = flat[b, c][finite[b, c]]
        if values.size:
            lo[b, c], hi[b, c] = np.percentile(values, [lower, upper])
    lo32, hi32 = lo.astype(np.float32), hi.astype(np.float32)
    np.clip(flat, lo32[..., None], hi32[..., None], out=flat)
    _rescale(flat, lo32, hi32)
    return y


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of a training split (for :func:`standardise`).

    Attributes
    ----------
    mean, std : tuple of float
        One per channel (``std`` is 1.0 for a constant channel); NaN pixels ignored.
    pixels : tuple of int
        Finite pixels counted per channel.
    rows : int
        Cutouts sampled.
    source : dict
        Where they come from: dataset path, version, hash, split, sample, seed.

    Save them with the model (:meth:`save`, :meth:`load`) so that validation, test and
    inference use the training statistics.

    Examples
    --------
    >>> stats = ChannelStats(mean=(1.0,), std=(2.0,), pixels=(4,), rows=1)
    >>> ChannelStats.from_dict(stats.to_dict()) == stats
    True
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixels: tuple[int, ...] = ()
    rows: int = 0
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        if len(mean) != len(std) or not mean:
            raise InvalidInputError(f"channel statistics need one mean and one std per channel, got {mean}, {std}")
        if not all(math.isfinite(m) for m in mean) or not all(math.isfinite(s) and s > 0 for s in std):
            raise InvalidInputError(f"channel statistics must be finite with std > 0, got mean {mean}, std {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "pixels", tuple(int(p) for p in self.pixels))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "pixels": list(self.pixels), "rows": self.rows,
                "source": dict(self.source)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelStats:
        try:
            return cls(mean=tuple(data["mean"]), std=tuple(data["std"]), pixels=tuple(data.get("pixels", ())),
                       rows=int(data.get("rows", 0)), source=dict(data.get("source", {})))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not channel statistics (need 'mean' and 'std' lists): {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the statistics as JSON; return the path."""
        from hipsml._files import atomic_write_bytes

        return atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ChannelStats:
        """Read statistics written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: cannot read channel statistics ({exc})") from None
        return cls.from_dict(data)


def standardise(x: np.ndarray, stats: ChannelStats, *, out: np.ndarray | None = None) -> np.ndarray:
    """``(x - mean[c]) / std[c]`` for each channel ``c``, with training-split statistics.

    Examples
    --------
    >>> stats = ChannelStats(mean=(1.0, 10.0), std=(2.0, 5.0))
    >>> standardise(np.array([[[[3.0]], [[0.0]]]]), stats).ravel().tolist()
    [1.0, -2.0]
    """
    x = _check_batch(x)
    if not isinstance(stats, ChannelStats):
        raise InvalidInputError(f"standardise needs ChannelStats, got {type(stats).__name__}")
    if len(stats.mean) != x.shape[1]:
        raise InvalidInputError(f"the statistics have {len(stats.mean)} channels, the batch {x.shape[1]}")
    y = _target(x, out)
    mean = np.asarray(stats.mean, dtype=np.float32)[None, :, None, None]
    inv = (1.0 / np.asarray(stats.std, dtype=np.float64)).astype(np.float32)[None, :, None, None]
    np.subtract(y, mean, out=y)
    np.multiply(y, inv, out=y)
    return y


def fill_nan(x: np.ndarray, value: float | None = 0.0, *, mask_channel: bool = False) -> np.ndarray:
    """Replace NaN by ``value`` (None keeps them); optionally append the coverage mask channel.

    The mask channel is 1.0 where every channel of the pixel holds data (is finite) and 0.0
    elsewhere, computed before the NaN are replaced.

    Parameters
    ----------
    x : numpy.ndarray
        ``(B, C, H, W)`` float32, modified in place when no mask channel is asked for.
    value : float or None
    mask_channel : bool

    Returns
    -------
    numpy.ndarray
        ``(B, C, H, W)`` or, with the mask, a new ``(B, C + 1, H, W)`` float32 array.

    Examples
    --------
    >>> y = fill_nan(np.array([[[[1.0, np.nan]]]], dtype=np.float32), mask_channel=True)
    >>> y.tolist()
    [[[[1.0, 0.0]], [[1.0, 0.0]]]]
    """
    x = _check_batch(x)
    if mask_channel:
        b, c, h, w = x.shape
        y = np.empty((b, c + 1, h, w), dtype=np.float32)
        finite = np.isfinite(x)
        np.copyto(y[:, :c], x)
        if value is not None:
            np.copyto(y[:, :c], np.float32(value), where=~finite)
        np.all(finite, axis=1, out=finite[:, 0])
        y[:, c] = finite[:, 0]
        return y
    if value is not None:
        bad = np.isnan(x)
        if bad.any():
            np.copyto(x, np.float32(value), where=bad)
    return x


@dataclass(frozen=True)
class Normalisation:
    """A normalisation chosen by name, with its options (and statistics for ``standardise``).

    Call it on a batch: ``normalisation(x)`` returns a new float32 batch;
    ``normalisation(x, out=x)`` works in place.

    Examples
    --------
    >>> norm = parse_normalisation({"name": "asinh", "a": 0.5})
    >>> norm.name, norm.options
    ('asinh', {'a': 0.5})
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    stats: ChannelStats | None = None

    def __call__(self, x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        if self.name == "minmax":
            return minmax(x, out=out)
        if self.name == "asinh":
            return asinh_stretch(x, a=self.options["a"], out=out)
        if self.name == "percentile":
            return percentile_clip(x, lower=self.options["lower"], upper=self.options["upper"], out=out)
        if self.stats is None:
            raise InvalidInputError("standardise needs channel statistics: parse it with a dataset, or pass stats")
        return standardise(x, self.stats, out=out)


def _positive(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(value, bool) or not (math.isfinite(out) and out > 0):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return out


def parse_normalisation(spec: Any, *, dataset: Any = None) -> Normalisation | None:
    """A :class:`Normalisation` from a name, a config mapping, statistics or one already built.

    Parameters
    ----------
    spec : None, str, mapping, ChannelStats or Normalisation
        ``None`` or ``"none"``: no normalisation. A name (``minmax``, ``asinh``,
        ``percentile``, ``standardise``) takes the default options; a mapping
        ``{"name": ..., option: value}`` sets them (``asinh``: ``a``; ``percentile``:
        ``lower``, ``upper``; ``standardise``: ``split``, ``sample``, ``seed``, or ``stats``
        as a mapping or a JSON path). ``ChannelStats`` means ``standardise`` with them.
    dataset : Dataset, optional
        Where ``standardise`` computes its statistics (from its ``split`` option, the training
        split by default, whatever split is being loaded), unless they are given.

    Raises
    ------
    InvalidInputError
        Unknown name or option (with "did you mean"), bad option value, or ``standardise``
        with neither statistics nor a dataset.

    Examples
    --------
    >>> parse_normalisation("minmax")
    Normalisation(name='minmax', options={}, stats=None)
    >>> parse_normalisation("minmx")
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: unknown normalisation 'minmx'; did you mean 'minmax'?
    """
    if spec is None or isinstance(spec, Normalisation):
        return spec
    if isinstance(spec, ChannelStats):
        return Normalisation("standardise", dict(NORMALISATIONS["standardise"]), spec)
    if isinstance(spec, str):
        config: dict[str, Any] = {"name": spec}
    elif isinstance(spec, Mapping):
        config = dict(spec)
    else:
        raise InvalidInputError(f"normalise must be a name, a mapping or None, got {type(spec).__name__}")
    name = config.pop("name", None)
    if not isinstance(name, str):
        raise InvalidInputError(f"a normalisation mapping needs a 'name' (one of {', '.join(NORMALISATIONS)})")
    if name.lower() == "none":
        return None
    name = _ALIASES.get(name.lower(), name.lower())
    if name not in NORMALISATIONS:
        raise InvalidInputError(f"unknown normalisation {name!r}" + _did_you_mean(name, NORMALISATIONS))
    known = dict(NORMALISATIONS[name])
    stats = config.pop("stats", None) if name == "standardise" else None
    for key in config:
        if key not in known:
            if not known:
                raise InvalidInputError(f"normalisation {name!r} takes no options, got {key!r}")
            raise InvalidInputError(f"normalisation {name!r} has no option {key!r}" + _did_you_mean(key, known))
    options = {**known, **config}
    if name == "asinh":
        options["a"] = _positive(options["a"], "asinh option a")
    elif name == "percentile":
        lower, upper = float(options["lower"]), float(options["upper"])
        if not 0.0 <= lower < upper <= 100.0:
            raise InvalidInputError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {lower}, {upper}")
        options.update(lower=lower, upper=upper)
    elif name == "standardise":
        if isinstance(stats, (str, os.PathLike)):
            stats = ChannelStats.load(stats)
        elif isinstance(stats, Mapping):
            stats = ChannelStats.from_dict(stats)
        elif stats is None and dataset is not None:
            stats = channel_stats(dataset, split=options["split"], sample=options["sample"], seed=options["seed"])
        elif stats is None:
            raise InvalidInputError(
                "standardise needs statistics: give a dataset or stats (ChannelStats, mapping, path)"
            )
    return Normalisation(name, options, stats)


_STATS_CACHE: dict[tuple[Any, ...], ChannelStats] = {}
_STATS_LOCK = threading.Lock()


def channel_stats(dataset: Any, *, split: str = "train", sample: int = 4096, seed: int = 0) -> ChannelStats:
    """Per-channel mean and standard deviation of a split, from a seeded sample of whole chunks.

    Chunks holding rows of the split are visited in a seeded random order and their rows
    taken until ``sample`` cutouts are read (so each chunk is decoded once); NaN pixels are
    ignored. The result is deterministic for (dataset version, split, sample, seed) and
    computed once per process.

    Parameters
    ----------
    dataset : Dataset
    split : str
        The split the statistics come from (the training split, also for val and test).
    sample : int
        Cutouts to sample, at most (all of the split when it is smaller).
    seed : int

    Examples
    --------
    >>> stats = channel_stats(hipsml.open_dataset("demo-output/datasets/demo"))  # doctest: +SKIP
    >>> len(stats.mean) == len(ds.channels)  # doctest: +SKIP
    True
    """
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 1:
        raise InvalidInputError(f"sample must be a positive integer, got {sample!r}")
    key = (str(getattr(dataset, "location", id(dataset))), getattr(dataset, "hash", None), split, int(sample), seed)
    with _STATS_LOCK:
        if key in _STATS_CACHE:
            return _STATS_CACHE[key]
    rows = dataset.split(split)
    if rows.size == 0:
        raise InvalidInputError(f"split {split!r} is empty: no statistics to compute")
    images = dataset.images
    chunk = int(images.chunks[0])
    chunks = np.unique(rows // chunk)
    rng = np.random.default_rng([int(seed), 0x5747])
    taken = 0
    blocks = []
    for c in rng.permutation(chunks):
        lo = int(c) * chunk
        a, b = np.searchsorted(rows, [lo, lo + chunk])
        local = rows[a : min(b, a + int(sample) - taken)] - lo
        blocks.append(np.asarray(images[lo : lo + chunk])[local])
        taken += local.size
        if taken >= sample:
            break
    data = np.concatenate(blocks)
    nch = int(images.shape[1])
    mean, std, count = np.zeros(nch), np.ones(nch), np.zeros(nch, dtype=np.int64)
    for c in range(nch):
        values = data[:, c][np.isfinite(data[:, c])].astype(np.float64)
        count[c] = values.size
        if values.size:
            mean[c] = values.mean()
            sd = values.std()
            std[c] = sd if sd > 0 else 1.0
    stats = ChannelStats(
        mean=tuple(mean), std=tuple(std), pixels=tuple(count), rows=taken,
        source={"dataset": key[0], "version": getattr(dataset, "version", None), "hash": key[1], "split": split,
                "sample": int(sample), "seed": seed},
    )  # fmt: skip
    with _STATS_LOCK:
        _STATS_CACHE[key] = stats
    return stats


def prepare_batch(
    x: np.ndarray, normalisation: Normalisation | None, *, nan_to: float | None = 0.0, mask_channel: bool = False
) -> np.ndarray:
    """What the loaders do to each block they read: float32, normalise, then NaN and mask.

    ``x`` is modified in place when it is already float32 (the loaders own their blocks).

    Examples
    --------
    >>> y = prepare_batch(np.array([[[[1.0, 3.0, np.nan]]]]), parse_normalisation("minmax"), mask_channel=True)
    >>> y.tolist()
    [[[[0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0]]]]
    """
    x = _check_batch(x)
    if x.dtype != np.float32 or not x.flags.c_contiguous or not x.flags.writeable:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not x.flags.writeable:
            x = x.copy()
    if normalisation is not None and normalisation.name == "minmax" and not mask_channel:
        return _minmax(x, nan_to)  # normalised and NaN filled in one pass
    if normalisation is not None:
        x = normalisation(x, out=x)
    return fill_nan(x, nan_to, mask_channel=mask_channel)
