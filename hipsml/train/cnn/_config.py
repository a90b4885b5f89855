"""The CNN's options: :class:`CNNConfig`, validated (unknown keys get a "did you mean")."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from hipsml._suggest import did_you_mean as _did_you_mean
from hipsml.errors import InvalidInputError
from hipsml.train.cnn._model import (
    ModelSpec,
)
from hipsml.train.loaders import parse_normalisation

__all__ = ["CNNConfig"]

logger = logging.getLogger(__name__)

_MODEL_KEYS = ("stem_channels", "stem_stride", "widths", "blocks", "groups")
_PRECISIONS = ("auto", "float32", "bfloat16")
_SOURCES = ("dataset", "sky")


def did_you_mean(word: str, choices: Any) -> str:
    return _did_you_mean(word, choices, otherwise="; known options: {names}")


@dataclass(frozen=True)
class CNNConfig:
    """Options of :func:`train_cnn` (validated; unknown keys get a "did you mean").

    Attributes
    ----------
    epochs : int
        Epochs at most (early stopping may end sooner).
    batch_size : int
    learning_rate, weight_decay : float
        AdamW; the rate warms up linearly over ``warmup_epochs`` then decays (cosine) to 1 %.
    warmup_epochs : float
    patience : int or None
        Stop when the validation loss has not improved for this many epochs (None: never).
    class_weights : "balanced", None or list of float
        ``balanced``: ``n / (K n_k)`` from the training split's label counts.
    augment : bool
        Random exact 90-degree turns and flips per cutout, on the device.
    pixel_rotation : bool
        With ``augment``: also turn each cutout by a random angle in [0, 90) by bilinear
        interpolation on the device (corners filled with 0; :func:`hipsml.train.rotate_pixels`),
        so stored cutouts are seen at any angle. An approximation kept for comparison with
        ``source="sky"``, which cuts the sky again at the angle instead.
    source : "dataset" or "sky"
        Where the training batches come from. ``dataset``: the stored cutouts
        (:func:`hipsml.train.zarr_batches`). ``sky``: every training target cut afresh each
        epoch from the dataset's surveys at a random angle, exact by reprojection
        (:func:`hipsml.train.sky_batches`, a pure function of ``(seed, epoch)``); normalised
        like the stored cutouts (``standardise``: statistics of the stored training split).
        Validation and test always read the stored dataset.
    sky_shift_pixels : float
        ``source="sky"``: move each centre by up to this many pixels along the rotated axes.
    sky_scale_jitter : float
        ``source="sky"``: multiply the pixel scale by a factor in ``[1 - j, 1 + j]`` (``j < 1``).
    normalise : str or mapping
        A :func:`hipsml.train.parse_normalisation` spec; ``standardise`` uses training statistics.
    mask_channel : bool
        Add the coverage mask as an input channel (NaN are 0 either way).
    precision : "auto", "float32" or "bfloat16"
        Compute dtype (master weights stay float32); ``auto``: bfloat16 on a GPU, float32 elsewhere.
    stem_channels, stem_stride, widths, blocks, groups
        The architecture (:class:`hipsml.train.ModelSpec`); taken from ``init`` when fine-tuning.
    train_split, val_split, test_split : str
        Split names (val/test are skipped when the dataset lacks them).
    seed : int
    threads : int
        Loader reader threads.

    Examples
    --------
    >>> CNNConfig.from_mapping({"epochs": 3}).epochs
    3
    >>> CNNConfig.from_mapping({"epoch": 3})
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: unknown CNN option 'epoch'; did you mean 'epochs'?
    >>> CNNConfig.from_mapping({"source": "sky", "sky_shift_pixels": 0.5}).source
    'sky'
    """

    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    patience: int | None = 8
    class_weights: str | tuple[float, ...] | None = "balanced"
    augment: bool = True
    pixel_rotation: bool = False
    source: str = "dataset"
    sky_shift_pixels: float = 0.0
    sky_scale_jitter: float = 0.0
    normalise: Any = "standardise"
    mask_channel: bool = False
    precision: str = "auto"
    stem_channels: int = 16
    stem_stride: int = 4
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    groups: int = 4
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "stem_channels", "stem_stride", "blocks", "groups", "threads"):
            _check_int(getattr(self, name), name, 1)
        _check_int(self.seed, "seed", 0)
        if self.patience is not None:
            _check_int(self.patience, "patience", 1)
        for name in ("learning_rate", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidInputError(f"CNN option {name} must be a finite number >= 0, got {value!r}")
        if not self.learning_rate > 0:
            raise InvalidInputError(f"CNN option learning_rate must be > 0, got {self.learning_rate!r}")
        if self.precision not in _PRECISIONS:
            raise InvalidInputError(f"CNN option precision must be one of {', '.join(_PRECISIONS)}, got "
                                    f"{self.precision!r}" + did_you_mean(str(self.precision), _PRECISIONS))  # fmt: skip
        weights = self.class_weights
        if isinstance(weights, str):
            if weights != "balanced":
                raise InvalidInputError(f"CNN option class_weights must be 'balanced', null or a list, got {weights!r}")
        elif weights is not None:
            try:
                weights = tuple(float(w) for w in weights)
            except (TypeError, ValueError):
                raise InvalidInputError(f"CNN option class_weights must be 'balanced', null or a list of numbers, "
                                        f"got {weights!r}") from None  # fmt: skip
            if not weights or not all(math.isfinite(w) and w >= 0 for w in weights):
                raise InvalidInputError(f"class_weights must be finite and >= 0, got {weights!r}")
            object.__setattr__(self, "class_weights", weights)
        try:
            widths = tuple(int(w) for w in self.widths)
        except (TypeError, ValueError):
            raise InvalidInputError(f"CNN option widths must be a list of integers, got {self.widths!r}") from None
        object.__setattr__(self, "widths", widths)
        ModelSpec(1, 1, self.stem_channels, self.stem_stride, widths, self.blocks, self.groups)  # checks
        self._check_augmentation()
        parse_normalisation(self.normalise if not _needs_stats(self.normalise) else "minmax")  # name, options

    def _check_augmentation(self) -> None:
        for name in ("augment", "pixel_rotation"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InvalidInputError(f"CNN option {name} must be true or false, got {getattr(self, name)!r}")
        if self.source not in _SOURCES:
            raise InvalidInputError(f"CNN option source must be one of {', '.join(_SOURCES)}, got {self.source!r}"
                                    + did_you_mean(str(self.source), _SOURCES))  # fmt: skip
        for name, below in (("sky_shift_pixels", math.inf), ("sky_scale_jitter", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < below:
                raise InvalidInputError(f"CNN option {name} must be a number in [0, {below:g}), got {value!r}")
            if value and self.source != "sky":
                raise InvalidInputError(f"CNN option {name} applies to source: sky (cutting from the surveys); "
                                        f"source is {self.source!r}")  # fmt: skip
        if self.pixel_rotation and (self.source == "sky" or not self.augment):
            raise InvalidInputError("CNN option pixel_rotation interpolates the stored cutouts: it needs augment: "
                                    "true and source: dataset (source: sky cuts every angle exactly)")  # fmt: skip

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None = None, *, base: CNNConfig | None = None) -> CNNConfig:
        """A config from a mapping (a YAML file's), over ``base`` (default: the defaults)."""
        options = dict(options or {})
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                raise InvalidInputError(f"unknown CNN option {key!r}" + did_you_mean(str(key), known))
        return replace(base or cls(), **options)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"] = list(self.widths)
        if isinstance(self.class_weights, tuple):
            data["class_weights"] = list(self.class_weights)
        return data

    def model_spec(self, in_channels: int, num_classes: int) -> ModelSpec:
        return ModelSpec(in_channels, num_classes, self.stem_channels, self.stem_stride, self.widths, self.blocks,
                         self.groups)  # fmt: skip


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"CNN option {name} must be an integer >= {minimum}, got {value!r}")


def _needs_stats(spec: Any) -> bool:
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    return isinstance(name, str) and name.lower() in ("standardise", "standardize")
