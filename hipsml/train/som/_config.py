"""The SOM configuration: one frozen, validated dataclass whose options are named after PINK's.

PINK 2.5 (``HITS-AIN/PINK``) is the reference for the meaning and the defaults of every
option that it shares; the options PINK lacks (``mode``, ``batch_size``, ``precision``, the
schedules, ``init="samples"``) are documented where they are declared.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hipsml._suggest import did_you_mean
from hipsml.errors import InvalidInputError

__all__ = ["SOMConfig", "default_neuron_dim", "default_distance_dim"]

logger = logging.getLogger(__name__)

Layout = Literal["cartesian", "hexagonal"]
DistanceShape = Literal["quadratic", "circular"]
Interpolation = Literal["nearest", "bilinear"]
Neighbourhood = Literal["gaussian", "mexicanhat"]
Init = Literal["zero", "random", "random_with_preferred_direction", "file_init", "samples"]
Mode = Literal["online", "batch"]
Precision = Literal["float32", "tf32", "bfloat16"]
Schedule = Literal["constant", "linear", "exponential"]
Normalise = Literal["auto", "minmax", "asinh", "percentile", "none"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "layout": ("cartesian", "hexagonal"),
    "distance_shape": ("quadratic", "circular"),
    "interpolation": ("nearest", "bilinear"),
    "neighbourhood": ("gaussian", "mexicanhat"),
    "init": ("zero", "random", "random_with_preferred_direction", "file_init", "samples"),
    "mode": ("online", "batch"),
    "precision": ("float32", "tf32", "bfloat16"),
    "schedule": ("constant", "linear", "exponential"),
    "normalise": ("auto", "minmax", "asinh", "percentile", "none"),
}


def default_neuron_dim(image_side: int, numrot: int) -> int:
    """PINK's default neuron side for square images of side ``image_side``.

    Without rotations the neuron is the image. With rotations it is large enough to hold the
    image turned by any angle (its diagonal): ``int(2 * side / sqrt(2) + 1)``, as PINK 2.5.

    Examples
    --------
    >>> default_neuron_dim(124, 360), default_neuron_dim(124, 1)
    (176, 124)
    """
    if numrot == 1:
        return int(image_side)
    return int(2 * image_side / math.sqrt(2.0) + 1)


def default_distance_dim(image_side: int, numrot: int, distance_shape: str, neuron_dim: int) -> int:
    """PINK's default side of the region compared by the euclidean distance.

    With rotations and the quadratic shape it is the largest square inside the circle inscribed
    in the image (``int(side * sqrt(2) / 2)``), the region that stays inside the image under any
    rotation; otherwise the image side. It is capped at ``neuron_dim`` (PINK refuses a larger one).

    Examples
    --------
    >>> default_distance_dim(124, 360, "quadratic", 176), default_distance_dim(124, 360, "quadratic", 64)
    (87, 64)
    """
    dim = int(image_side)
    if numrot != 1 and distance_shape == "quadratic":
        dim = int(dim * math.sqrt(2.0) / 2)
    return min(dim, int(neuron_dim))


@dataclass(frozen=True)
class SOMConfig:
    """Every option of a rotation- and flip-invariant SOM, named after PINK 2.5's options.

    Build it with keywords (``SOMConfig(width=10, height=10)``) or from a mapping with
    :meth:`from_mapping`, which rejects misspelled keys with a "did you mean" hint.

    Parameters
    ----------
    layout : {'cartesian', 'hexagonal'}
        Neuron grid (PINK ``--layout``). Hexagonal maps are odd and square (``width == height``);
        their neurons are stored row by row as PINK does, and grid distance is the axial
        (hex-step) distance.
    width, height : int
        Grid size: a cartesian map has ``height`` rows of ``width`` neurons, stored row by row
        (neuron ``p`` at row ``p // width``, column ``p % width``). PINK names the row length
        ``--som-height`` and the number of rows ``--som-width`` (its ``CartesianLayout`` stores rows
        of length ``--som-height``), so ``width`` here is PINK's ``--som-height`` and ``height`` is
        PINK's ``--som-width``: :func:`~hipsml.train.pink_options` gives the PINK options of a config,
        and the PINK files hipsml reads and writes translate, so a map moves between the two
        unchanged. A hexagonal map of side ``d`` (square, so the two conventions agree) has
        ``d*d - r*(r+1)`` neurons with ``r = (d-1)/2`` (331 for 21).
    neuron_dim : int or None
        Side of each square neuron (PINK ``--neuron-dimension``). ``None``: PINK's rule from the
        image side (see :func:`default_neuron_dim`), large enough for any rotation.
    distance_dim : int or None
        Side of the central region compared by the euclidean distance (PINK
        ``--euclidean-distance-dimension``). ``None``: PINK's rule (:func:`default_distance_dim`).
    distance_shape : {'quadratic', 'circular'}
        Shape of that region (PINK ``--euclidean-distance-shape``).
    numrot : int
        Number of rotations (PINK ``--numrot``): 1, or a multiple of 4. ``numrot/4`` angles in
        [0°, 90°) are interpolated; the other rotations are exact 90° turns of those.
    flip : bool
        Also try the mirrored image (PINK's default; ``--flip-off`` is ``flip=False``).
    interpolation : {'bilinear', 'nearest'}
        Resampling of the interpolated angles (PINK ``--interpolation``).
    neighbourhood : {'gaussian', 'mexicanhat'}
        Update factor as a function of grid distance (PINK ``--dist-func``):
        gaussian ``damping / (sigma sqrt(2 pi)) exp(-d^2 / 2 sigma^2)``; mexican hat PINK's formula.
    sigma, damping : float
        Width and scale of that function (PINK's defaults 1.1 and 0.2).
    max_update_distance : float
        Neurons at a grid distance ``>=`` this from the best match are not updated; ``<= 0``: no
        limit (PINK ``--max-update-distance``, default -1).
    pbc : bool
        Periodic boundary conditions (a torus) for the cartesian grid distance. PINK 2 refuses
        them; hipsml implements them for the cartesian layout only.
    init : {'zero', 'random', 'random_with_preferred_direction', 'file_init', 'samples'}
        Initial neurons (PINK ``--init``): zeros; uniform [0, 1); uniform plus a diagonal line of
        ones; read from ``init_file`` (a PINK SOM file or a saved hipsml SOM); or randomly chosen
        training images (not in PINK).
    init_file : str or None
        The file for ``init='file_init'``.
    epochs : int
        Passes over the data (PINK ``--num-iter``).
    shuffle : bool
        Visit the images in a new random order each epoch (PINK's default, ``--input-shuffle-off``
        is ``shuffle=False``).
    seed : int
        Seed of the shuffles and of the random initialisations (PINK ``--seed``, default 1234).
        Training is deterministic for a seed on one device.
    mode : {'online', 'batch'}
        ``'online'``: PINK-exact, each image's update lands before the next image's search.
        ``'batch'``: ``batch_size`` images are matched against the same neurons and their
        updates summed; a neuron never moves past the weighted mean of its targets
        (the sum is divided by ``max(1, total factor)``, Kohonen's batch SOM when that total
        exceeds one).
    batch_size : int
        Images per step in batch mode (and per device call in both modes' mapping).
    precision : {'float32', 'tf32', 'bfloat16'}
        Arithmetic of the distance search (the neurons and their updates stay float32).
        'tf32' and 'bfloat16' only speed up GPUs; on a CPU 'tf32' is float32.
    schedule : {'constant', 'linear', 'exponential'}
        How ``sigma`` and ``damping`` go from their start values to ``sigma_end`` and
        ``damping_end`` over the epochs (one value per epoch; PINK has no schedules).
    sigma_end, damping_end : float or None
        End values of the schedule; ``None`` keeps the start value.
    normalise : {'auto', 'minmax', 'asinh', 'percentile', 'none'}
        What is done to each image before training and mapping (not in PINK itself, whose users
        normalise beforehand), by the loaders' own per-cutout normalisations
        (:func:`~hipsml.train.parse_normalisation`), then NaN (uncovered) pixels set to 0:
        ``'minmax'`` scales each cutout's channel to [0, 1] (its minimum to 0, its maximum to 1;
        a constant channel becomes 0), ``'asinh'`` adds an asinh stretch after it,
        ``'percentile'`` clips to the 1st-99th percentile first; ``'none'`` uses the values as
        they are. ``'auto'`` is ``'minmax'`` for a
        :class:`~hipsml.Dataset` (raw survey values) and ``'none'`` for arrays; training
        replaces it by the choice it made, so mapping later normalises the same way.

    Examples
    --------
    >>> config = SOMConfig(layout="hexagonal", width=21, height=21, neuron_dim=64)
    >>> config.neuron_count
    331
    >>> SOMConfig.from_mapping({"widht": 3})
    Traceback (most recent call last):
    ...
    hipsml.errors.InvalidInputError: unknown SOM option 'widht'; did you mean 'width'?
    """

    layout: Layout = "cartesian"
    width: int = 10
    height: int = 10
    neuron_dim: int | None = None
    distance_dim: int | None = None
    distance_shape: DistanceShape = "quadratic"
    numrot: int = 360
    flip: bool = True
    interpolation: Interpolation = "bilinear"
    neighbourhood: Neighbourhood = "gaussian"
    sigma: float = 1.1
    damping: float = 0.2
    max_update_distance: float = -1.0
    pbc: bool = False
    init: Init = "zero"
    init_file: str | None = None
    epochs: int = 1
    shuffle: bool = True
    seed: int = 1234
    mode: Mode = "online"
    batch_size: int = 256
    precision: Precision = "float32"
    schedule: Schedule = "constant"
    sigma_end: float | None = None
    damping_end: float | None = None
    normalise: Normalise = "auto"

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                extra = did_you_mean(str(value), choices)
                raise InvalidInputError(f"SOM option {name}={value!r} is not one of {', '.join(choices)}{extra}")
        for name in ("width", "height", "numrot", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"SOM option {name} must be a positive integer, got {value!r}")
        for name in ("neuron_dim", "distance_dim"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"SOM option {name} must be a positive integer or None, got {value!r}")
        if self.numrot != 1 and self.numrot % 4:
            raise InvalidInputError(f"SOM option numrot must be 1 or a multiple of 4 (PINK's rule), got {self.numrot}")
        if self.layout == "hexagonal":
            if self.width != self.height or self.width % 2 == 0:
                raise InvalidInputError(
                    f"a hexagonal SOM must be odd and square (width == height, odd), got {self.width}x{self.height}"
                )
            if self.pbc:
                raise InvalidInputError(
                    "periodic boundary conditions (pbc) are supported for the cartesian layout only"
                )
        if self.neuron_dim is not None and self.distance_dim is not None and self.distance_dim > self.neuron_dim:
            raise InvalidInputError(
                f"distance_dim {self.distance_dim} is larger than neuron_dim {self.neuron_dim}; "
                "give distance_dim <= neuron_dim"
            )
        for name in ("sigma", "damping"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
                raise InvalidInputError(f"SOM option {name} must be a positive finite number, got {value!r}")
        for name in ("sigma_end", "damping_end"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
            ):
                raise InvalidInputError(f"SOM option {name} must be a positive finite number or None, got {value!r}")
        if self.init == "file_init" and not self.init_file:
            raise InvalidInputError("init='file_init' needs init_file (a PINK SOM file or a saved hipsml SOM)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InvalidInputError(f"SOM option seed must be a non-negative integer, got {self.seed!r}")
        for name in ("flip", "pbc", "shuffle"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"SOM option {name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def from_mapping(
        cls,
        options: Mapping[str, Any] | None = None,
        _base: SOMConfig | None = None,
        /,
        *,
        base: SOMConfig | None = None,
    ) -> SOMConfig:
        """A config from ``options`` (e.g. a parsed YAML file) over ``base`` (default: the defaults).

        The same call as :meth:`hipsml.train.CNNConfig.from_mapping`: ``base`` is keyword-only
        (given as the second positional argument it still works, with a ``DeprecationWarning``).

        Raises
        ------
        InvalidInputError
            A key is not an option (with a "did you mean" hint) or a value is out of range.

        Examples
        --------
        >>> SOMConfig.from_mapping({"width": 4, "height": 3}).neuron_count
        12
        """
        if _base is not None:
            import warnings

            warnings.warn("SOMConfig.from_mapping(options, BASE) is deprecated; write base=BASE",
                          DeprecationWarning, stacklevel=2)  # fmt: skip
            base = base if base is not None else _base
        options = dict(options or {})
        names = option_names()
        for key in options:
            if key not in names:
                extra = did_you_mean(str(key), sorted(names), otherwise="; the options are {names}")
                raise InvalidInputError(f"unknown SOM option {key!r}{extra}")
        return dataclasses.replace(base if base is not None else cls(), **dict(options))

    @property
    def neuron_count(self) -> int:
        """Number of neurons: ``width * height``, or the hexagon's ``d*d - r*(r+1)``."""
        if self.layout == "hexagonal":
            radius = (self.width - 1) // 2
            return self.width * self.width - radius * (radius + 1)
        return self.width * self.height

    @property
    def rotations_per_quarter(self) -> int:
        """How many interpolated angles in [0°, 90°) each image is resampled at (``numrot/4``, or 1)."""
        return 1 if self.numrot == 1 else self.numrot // 4

    @property
    def transform_count(self) -> int:
        """All transforms tried per image: ``numrot * (2 if flip else 1)``, PINK's count."""
        return self.numrot * (2 if self.flip else 1)

    def resolved(self, image_side: int) -> SOMConfig:
        """This config with ``neuron_dim`` and ``distance_dim`` filled in by PINK's rules for ``image_side``.

        The chosen values are logged at INFO.

        Examples
        --------
        >>> c = SOMConfig().resolved(124)
        >>> c.neuron_dim, c.distance_dim
        (176, 87)
        """
        neuron_dim = self.neuron_dim
        if neuron_dim is None:
            neuron_dim = default_neuron_dim(image_side, self.numrot)
            logger.info("SOM neuron_dim %d chosen by PINK's rule for %d-pixel images", neuron_dim, image_side)
        distance_dim = self.distance_dim
        if distance_dim is None:
            distance_dim = default_distance_dim(image_side, self.numrot, self.distance_shape, neuron_dim)
            logger.info("SOM distance_dim %d chosen by PINK's rule for %d-pixel images", distance_dim, image_side)
        if distance_dim > neuron_dim:
            raise InvalidInputError(
                f"distance_dim {distance_dim} is larger than neuron_dim {neuron_dim}; give distance_dim <= neuron_dim"
            )
        return dataclasses.replace(self, neuron_dim=neuron_dim, distance_dim=distance_dim)

    def describe(self) -> str:
        """The options that shape a training, in one line (printed when ``hipsml som train`` starts).

        Examples
        --------
        >>> SOMConfig(width=4, height=3, numrot=8, neuron_dim=8).describe()
        'layout cartesian, width 4, height 3, numrot 8 (16 transforms with flips), neuron_dim 8, epochs 1, ...'
        """
        flips = "with flips" if self.flip else "no flips"
        start = f"from {self.init}" + (f" {self.init_file}" if self.init == "file_init" and self.init_file else "")
        mode = "online mode" if self.mode == "online" else f"batch mode (batch_size {self.batch_size})"
        sigma = f"sigma {self.sigma:g}" + (f"->{self.sigma_end:g}" if self.sigma_end is not None else "")
        damping = f"damping {self.damping:g}" + (f"->{self.damping_end:g}" if self.damping_end is not None else "")
        schedule = f" ({self.schedule} schedule)" if self.schedule != "constant" else ""
        return (f"layout {self.layout}, width {self.width}, height {self.height}, numrot {self.numrot} "
                f"({self.transform_count} transforms {flips}), neuron_dim {self.neuron_dim or 'auto'}, "
                f"epochs {self.epochs}, {start}, {mode}, {sigma}, {damping}{schedule}, normalise {self.normalise}, "
                f"seed {self.seed}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict (JSON- and YAML-ready)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}


def option_names() -> set[str]:
    """The names :meth:`SOMConfig.from_mapping` accepts."""
    return {f.name for f in dataclasses.fields(SOMConfig) if not f.name.startswith("_")}
