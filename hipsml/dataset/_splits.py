"""Reproducible splits: a pure function of (salt, key), identical on every machine.

The key of a target is its id (scheme ``id``) or the NESTED HEALPix cell at ``order``
that holds it (scheme ``healpix``: neighbouring and overlapping cutouts never straddle
splits). The recipe for the split of one key, which anyone can reimplement:

1. ``k`` = the key as an unsigned 64-bit integer: an integer key as it is (two's
   complement for negatives); a text key as the first 8 bytes, little-endian, of
   ``blake2b(utf8(key), digest_size=8)``;
2. ``s`` = the first 8 bytes, little-endian, of ``blake2b(utf8(salt), digest_size=8)``;
3. ``u`` = ``splitmix64(k XOR s) >> 11`` times ``2**-53``, a number in ``[0, 1)``;
4. the split is the first name whose cumulative fraction (in the recipe's order) exceeds ``u``.

So a split never depends on the other targets: adding targets changes no old split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import healpy as hp
import numpy as np

from hipsml.errors import InvalidInputError

__all__ = ["split_keys", "assign_splits", "splitmix64"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of uint64 values (wrapping arithmetic).

    Examples
    --------
    >>> hex(int(splitmix64(np.array([0], dtype=np.uint64))[0]))
    '0xe220a8397b1dcdaf'
    """
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def split_keys(scheme: str, *, ids: np.ndarray, ra: np.ndarray, dec: np.ndarray, order: int = 8) -> np.ndarray:
    """The uint64 split key of each target (see the module docstring)."""
    if scheme == "healpix":
        cells = hp.ang2pix(1 << int(order), np.asarray(ra, float), np.asarray(dec, float), nest=True, lonlat=True)
        return np.asarray(cells, dtype=np.int64).astype(np.uint64)
    if scheme == "id":
        ids = np.asarray(ids)
        if ids.dtype.kind in "iu":
            return ids.astype(np.int64).astype(np.uint64)
        return np.fromiter((_text_hash(str(v)) for v in ids), dtype=np.uint64, count=ids.size)
    raise InvalidInputError(f"unknown split scheme {scheme!r}; choose healpix or id")


def assign_splits(keys: np.ndarray, *, salt: str, fractions: Mapping[str, float]) -> np.ndarray:
    """The split code (int8 index into ``fractions``' names) of each uint64 key.

    Examples
    --------
    >>> codes = assign_splits(np.arange(100_000, dtype=np.uint64), salt="s", fractions={"train": 0.8, "test": 0.2})
    >>> round(float((codes == 0).mean()), 2)
    0.8
    """
    names = list(fractions)
    if not names or len(names) > 127:
        raise InvalidInputError("splits need 1 to 127 names")
    cum = np.cumsum(np.array([float(fractions[n]) for n in names], dtype=np.float64))
    salt_key = np.uint64(_text_hash(str(salt)))
    mixed = splitmix64(np.asarray(keys, dtype=np.uint64) ^ salt_key)
    u = (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53
    codes = np.searchsorted(cum, u, side="right")
    return np.minimum(codes, len(names) - 1).astype(np.int8)
