"""Which channels a picture shows, and how a cutout's channels become display pixels.

One home for the channel choice of every hipsml picture (the dataset preview, the SOM's
prototype map and outlier grid, the SOM explorer, the report): :func:`select_channels` parses
``"2,1,0"``, ``"r"`` or ``"radio,i,g"`` against a dataset's channel names into a
:class:`ChannelView`, and :func:`display_stretch` turns a cutout into 8-bit pixels with a
per-channel percentile asinh stretch. Pure functions: no files, no drawing library. How blank
(NaN) pixels are painted is not decided here.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hipsml.errors import InvalidInputError

__all__ = ["ChannelView", "channel_labels", "display_stretch", "select_channels"]

#: the most channels the default view shows side by side
MAX_SIDE_BY_SIDE = 4


@dataclass(frozen=True)
class ChannelView:
    """The channels one picture shows, and how.

    Attributes
    ----------
    indices : tuple of int
        Channel indices into the data, in display order (R, G, B for ``rgb``).
    names : tuple of str
        Their names, as the dataset calls them.
    mode : {"grey", "rgb", "side"}
        One grey panel, one RGB panel, or one grey panel per channel side by side.
    """

    indices: tuple[int, ...]
    names: tuple[str, ...]
    mode: Literal["grey", "rgb", "side"]

    @property
    def panels(self) -> list[tuple[tuple[int, ...], str]]:
        """``(channel indices, caption)`` of each panel: one index (grey) or three (RGB).

        Examples
        --------
        >>> select_channels("2,1,0", ["g", "r", "i"]).panels
        [((2, 1, 0), 'R=i G=r B=g')]
        >>> select_channels(None, ["g", "r"]).panels
        [((0,), 'g'), ((1,), 'r')]
        """
        if self.mode == "rgb":
            return [(self.indices, self.label)]
        return [((i,), name) for i, name in zip(self.indices, self.names, strict=True)]

    @property
    def label(self) -> str:
        """The channels in words, for a title: ``"R=i G=r B=g"``, ``"r"`` or ``"g | r | i"``."""
        if self.mode == "rgb":
            return " ".join(f"{c}={n}" for c, n in zip("RGB", self.names, strict=True))
        return " | ".join(self.names)


def channel_labels(names: Sequence[str] | None, count: int) -> list[str]:
    """``names`` when it names ``count`` channels, else ``c0, c1, ...`` (data that records none)."""
    if names is not None and len(names) == count:
        return [str(n) for n in names]
    return [f"c{c}" for c in range(count)]


def _one(token: str | int, names: Sequence[str]) -> int:
    if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
        index = int(token)
    else:
        text = str(token).strip()
        if text in names:
            return list(names).index(text)
        try:
            index = int(text)
        except ValueError:
            close = difflib.get_close_matches(text, list(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidInputError(
                f"unknown channel {text!r}{hint}: the channels are {', '.join(names)} (or indices 0..{len(names) - 1})"
            ) from None
    if not 0 <= index < len(names):
        raise InvalidInputError(
            f"channel {index} out of range: the channels are {', '.join(names)} (indices 0..{len(names) - 1})"
        )
    return index


def select_channels(spec: str | Sequence[str | int] | None, names: Sequence[str]) -> ChannelView:
    """Parse a channel choice against the data's channel ``names``.

    Parameters
    ----------
    spec : str, sequence of str or int, or None
        One channel (grey) or three (R, G, B), by name or index: ``"r"``, ``"2"``, ``"2,1,0"``,
        ``"radio,i,g"`` or ``[2, 1, 0]``. ``None``: every channel side by side (the first
        four when there are more).
    names : sequence of str
        The channel names, in data order (``Dataset.channels``).

    Returns
    -------
    ChannelView

    Raises
    ------
    InvalidInputError
        An unknown name (with "did you mean"), an index out of range, or neither one nor three
        channels; the message lists the channels there are.

    Examples
    --------
    >>> select_channels("radio,i,g", ["g", "i", "radio"])
    ChannelView(indices=(2, 1, 0), names=('radio', 'i', 'g'), mode='rgb')
    >>> select_channels("1", ["g", "i"]).names
    ('i',)
    """
    names = [str(n) for n in names]
    if not names:
        raise InvalidInputError("the data has no channels to show")
    if spec is None:
        shown = tuple(range(min(len(names), MAX_SIDE_BY_SIDE)))
        return ChannelView(shown, tuple(names[i] for i in shown), "grey" if len(shown) == 1 else "side")
    tokens = [t for t in spec.split(",")] if isinstance(spec, str) else list(spec)
    if any(isinstance(t, str) and not t.strip() for t in tokens):
        raise InvalidInputError(f"channels {spec!r} has an empty entry: give names or indices separated by commas")
    picked = tuple(_one(t, names) for t in tokens)
    if len(picked) not in (1, 3):
        raise InvalidInputError(
            f"channels must be one channel (grey) or three (R,G,B), got {len(picked)} in "
            f"{spec!r}: the channels are {', '.join(names)}"
        )
    return ChannelView(picked, tuple(names[i] for i in picked), "grey" if len(picked) == 1 else "rgb")


def display_stretch(
    image: np.ndarray, *, percentiles: tuple[float, float] = (0.5, 100.0), softening: float = 0.005
) -> np.ndarray:
    """8-bit display pixels of one cutout ``(C, S, S)``: a per-channel percentile asinh stretch.

    Each channel is scaled on its own, from its ``percentiles`` (finite pixels) to ``[0, 1]``,
    then by ``asinh(x / softening) / asinh(1 / softening)``. The default upper limit is the
    channel's maximum and the knee low (0.5 % of the range), so the bright cores of an optical plate keep their
    shape instead of saturating while the faint sky stays visible; a radio or microwave
    channel with a different scale is stretched by its own numbers. Row order is kept; NaN
    pixels come out 0 (paint them afterwards if they must stand out).

    Examples
    --------
    >>> img = np.array([[[0.0, 1.0], [10.0, 100.0]]])
    >>> display_stretch(img)[0].tolist()
    [[0, 61], [157, 255]]
    """
    from hipsml.extract import asinh_levels

    return asinh_levels(np.asarray(image, np.float32), percentiles=percentiles, softening=softening)
