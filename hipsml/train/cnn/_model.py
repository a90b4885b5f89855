"""A small residual CNN for ``(C, S, S)`` cutouts in equinox, and its exact on-device augmentation.

The network is a strided stem convolution, ``len(widths)`` stages of ``blocks`` residual blocks
(the first block of every stage after the first halves the resolution), global average pooling
and a linear head. Every normalisation is a GroupNorm, so the model holds no running state:
training, evaluation and a frozen stage behave alike. The model works on one cutout
``(C, S, S)``; batches go through ``jax.vmap``.

:func:`augment` applies one of the 8 exact symmetries of the square pixel grid (a 90-degree
turn, optionally after a flip) to each cutout, chosen per cutout from the PRNG key: pure
permutations of pixels, no interpolation. With ``pixel_rotation=True`` it then turns each cutout
by a further random angle in [0, 90) degrees by bilinear interpolation (:func:`rotate_pixels`),
so the angle is uniform over the circle but the corners come from outside the cutout (zero) and
every pixel is resampled: the cheap stand-in for cutting the sky again at that angle
(:func:`hipsml.train.sky_batches`), kept for comparison.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates
from jaxtyping import Array, Float, PRNGKeyArray

from hipsml.errors import InvalidInputError

__all__ = [
    "ModelSpec",
    "ResidualBlock",
    "ResNet",
    "augment",
    "build_model",
    "rotate_pixels",
    "stage_count",
    "stage_parts",
]


@dataclass(frozen=True)
class ModelSpec:
    """The architecture of a :class:`ResNet`.

    Attributes
    ----------
    in_channels : int
        Input channels (the dataset's channels, plus one with the mask channel).
    num_classes : int
    stem_channels : int
        Channels of the stem convolution: 3x3 for ``stem_stride`` 1 or 2, else non-overlapping
        ``stem_stride`` x ``stem_stride`` patches.
    stem_stride : int
    widths : tuple of int
        Channels of each stage; every stage after the first starts with a stride-2 block.
    blocks : int
        Residual blocks per stage.
    groups : int
        GroupNorm groups (fewer where a width is not divisible).

    Examples
    --------
    >>> ModelSpec(in_channels=4, num_classes=4).widths
    (16, 32, 64)
    """

    in_channels: int
    num_classes: int
    stem_channels: int = 16
    stem_stride: int = 4
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    groups: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for name in ("in_channels", "num_classes", "stem_channels", "stem_stride", "blocks", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"model {name} must be a positive integer, got {value!r}")
        if not self.widths or min(self.widths) < 1:
            raise InvalidInputError(f"model widths must be a non-empty list of positive integers, got {self.widths}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**{**data, "widths": tuple(data["widths"])})


def _groups(channels: int, groups: int) -> int:
    """The largest group count <= ``groups`` that divides ``channels``."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


class ResidualBlock(eqx.Module):
    """conv3x3 - GroupNorm - ReLU - conv3x3 - GroupNorm, plus the (projected) input, then ReLU."""

    conv1: eqx.nn.Conv2d
    norm1: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    norm2: eqx.nn.GroupNorm
    shortcut: eqx.nn.Conv2d | None

    def __init__(self, cin: int, cout: int, stride: int, groups: int, *, key: PRNGKeyArray) -> None:
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, use_bias=False, key=k1)
        self.norm1 = eqx.nn.GroupNorm(_groups(cout, groups), cout)
        self.conv2 = eqx.nn.Conv2d(cout, cout, 3, padding=1, use_bias=False, key=k2)
        self.norm2 = eqx.nn.GroupNorm(_groups(cout, groups), cout)
        self.shortcut = (None if stride == 1 and cin == cout
                         else eqx.nn.Conv2d(cin, cout, 1, stride=stride, use_bias=False, key=k3))  # fmt: skip

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, "d h2 w2"]:
        y = jax.nn.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        skip = x if self.shortcut is None else self.shortcut(x)
        return jax.nn.relu(y + skip)


class ResNet(eqx.Module):
    """The residual CNN of :class:`ModelSpec`: ``model(x)`` maps one ``(C, S, S)`` cutout to class logits.

    Examples
    --------
    >>> model = build_model(ModelSpec(in_channels=2, num_classes=3, widths=(4,)), key=jax.random.PRNGKey(0))
    >>> jax.vmap(model)(jnp.zeros((5, 2, 16, 16))).shape
    (5, 3)
    """

    stem: eqx.nn.Conv2d
    stem_norm: eqx.nn.GroupNorm
    stages: tuple[tuple[ResidualBlock, ...], ...]
    head: eqx.nn.Linear
    spec: ModelSpec = eqx.field(static=True)

    def __init__(self, spec: ModelSpec, *, key: PRNGKeyArray) -> None:
        keys = jax.random.split(key, 2 + len(spec.widths))
        self.spec = spec
        # stride <= 2: a 3x3 stem; stride s > 2: s x s patches (no pixel skipped, none read twice)
        kernel, padding = (3, 1) if spec.stem_stride <= 2 else (spec.stem_stride, 0)
        self.stem = eqx.nn.Conv2d(spec.in_channels, spec.stem_channels, kernel, stride=spec.stem_stride,
                                  padding=padding, use_bias=False, key=keys[0])  # fmt: skip
        self.stem_norm = eqx.nn.GroupNorm(_groups(spec.stem_channels, spec.groups), spec.stem_channels)
        stages = []
        cin = spec.stem_channels
        for s, width in enumerate(spec.widths):
            bkeys = jax.random.split(keys[2 + s], spec.blocks)
            blocks = []
            for b in range(spec.blocks):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(ResidualBlock(cin, width, stride, spec.groups, key=bkeys[b]))
                cin = width
            stages.append(tuple(blocks))
        self.stages = tuple(stages)
        self.head = eqx.nn.Linear(cin, spec.num_classes, key=keys[1])

    def features(self, x: Float[Array, "c h w"]) -> Float[Array, " f"]:
        """The pooled features before the head."""
        y = jax.nn.relu(self.stem_norm(self.stem(x)))
        for stage in self.stages:
            for block in stage:
                y = block(y)
        return jnp.mean(y, axis=(1, 2))

    def __call__(self, x: Float[Array, "c h w"], *, key: PRNGKeyArray | None = None) -> Float[Array, " k"]:
        return self.head(self.features(x))


def build_model(spec: ModelSpec, *, key: PRNGKeyArray) -> ResNet:
    """A freshly initialised :class:`ResNet` of ``spec``.

    Examples
    --------
    >>> model = build_model(ModelSpec(in_channels=1, num_classes=2), key=jax.random.PRNGKey(0))
    >>> model.stem.weight.shape, model.head.weight.shape
    ((16, 1, 4, 4), (2, 64))
    """
    return _build(spec, key)


@eqx.filter_jit
def _build(spec: ModelSpec, key: PRNGKeyArray) -> ResNet:
    # one compiled initialisation per architecture, not one dispatch per random array
    return ResNet(spec, key=key)


def stage_count(spec: ModelSpec) -> int:
    """Stages that ``freeze`` counts: the stem (stage 0) and each residual stage."""
    return 1 + len(spec.widths)


def stage_parts(model: ResNet, k: int) -> tuple[Any, ...]:
    """The sub-modules of the first ``k`` stages (stem and stem norm first, then residual stages)."""
    parts: list[Any] = []
    if k >= 1:
        parts += [model.stem, model.stem_norm]
    parts += list(model.stages[: max(0, k - 1)])
    return tuple(parts)


def augment(images: Float[Array, "b c h w"], *, key: PRNGKeyArray, pixel_rotation: bool = False
            ) -> Float[Array, "b c h w"]:  # fmt: skip
    """Each square cutout turned by a random multiple of 90 degrees, half of them flipped first.

    The 8 symmetries of the pixel grid are exact (pixel permutations), chosen independently
    per cutout from ``key``. ``pixel_rotation``: then a further random angle in [0, 90) degrees
    per cutout by bilinear interpolation (:func:`rotate_pixels`; corners filled with 0).

    Examples
    --------
    >>> x = jnp.arange(2 * 1 * 3 * 3, dtype=jnp.float32).reshape(2, 1, 3, 3)
    >>> y = augment(x, key=jax.random.PRNGKey(0))
    >>> bool(jnp.all(jnp.sort(y.reshape(2, -1), axis=1) == jnp.sort(x.reshape(2, -1), axis=1)))
    True
    """
    if images.shape[-1] != images.shape[-2]:
        raise InvalidInputError(f"augment needs square cutouts, got {images.shape[-2]}x{images.shape[-1]}")
    kturn, kflip = jax.random.split(key)
    b = images.shape[0]
    turns = jax.random.randint(kturn, (b,), 0, 4)
    flips = jax.random.bernoulli(kflip, 0.5, (b,))
    flipped = jnp.where(flips[:, None, None, None], images[..., ::-1], images)
    rotations = jnp.stack([jnp.rot90(flipped, k, axes=(2, 3)) for k in range(4)])  # (4, B, C, H, W)
    turned = rotations[turns, jnp.arange(b)]
    if not pixel_rotation:
        return turned
    angles = jax.random.uniform(jax.random.fold_in(key, 2), (b,), jnp.float32, 0.0, 90.0)
    return rotate_pixels(turned, angles)


def rotate_pixels(images: Float[Array, "b c h w"], degrees: Float[Array, " b"]) -> Float[Array, "b c h w"]:
    """Each cutout rotated by its angle about the pixel grid's centre, by bilinear interpolation.

    The same as ``scipy.ndimage.rotate(image, angle, axes=(2, 1), reshape=False, order=1,
    mode="grid-constant", cval=0)`` per cutout: counter-clockwise as displayed with row 0 at the
    top; pixels whose source lies outside the cutout (the corners) are 0, those near the edge
    interpolated towards 0.

    Examples
    --------
    >>> x = jnp.zeros((1, 1, 5, 5), dtype=jnp.float32).at[0, 0, 0, 2].set(1.0)  # above the centre
    >>> y = rotate_pixels(x, jnp.array([90.0], dtype=jnp.float32))
    >>> [int(i) for i in jnp.argwhere(y[0, 0] > 0.5)[0]]  # now left of it
    [2, 0]
    """
    return jax.vmap(_rotate_one)(images, degrees.astype(jnp.float32))


def _rotate_one(image: Float[Array, "c h w"], degrees: Float[Array, ""]) -> Float[Array, "c h w"]:
    h, w = image.shape[-2:]
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                          jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")  # fmt: skip
    t = jnp.deg2rad(degrees)
    cos, sin = jnp.cos(t), jnp.sin(t)
    # the source of each output pixel: the output offset turned back by the angle
    ys = cos * yy + sin * xx + (h - 1) / 2
    xs = -sin * yy + cos * xx + (w - 1) / 2

    def one(channel: Float[Array, "h w"]) -> Float[Array, "h w"]:
        return map_coordinates(channel, [ys, xs], order=1, mode="constant", cval=0.0)

    return jax.vmap(one)(image)


def parameter_count(model: ResNet) -> int:
    """Trainable scalars of ``model``."""
    return int(sum(math.prod(a.shape) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))))


def as_dtype(model: ResNet, dtype: Any) -> ResNet:
    """``model`` with its floating arrays cast to ``dtype`` (bf16 compute from f32 master weights)."""
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)


def predict_logits(model: ResNet, images: Float[Array, "b c h w"], dtype: Any = jnp.float32) -> Float[Array, "b k"]:
    """Float32 logits of a batch, computed in ``dtype``."""
    m = model if dtype == jnp.float32 else as_dtype(model, dtype)
    return jax.vmap(m)(images.astype(dtype)).astype(jnp.float32)
