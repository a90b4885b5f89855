"""Training the residual CNN on a dataset split: ``train_step``, ``eval_step``, ``train_cnn``.

``train_cnn(dataset, config, workdir=RUNDIR)`` reads the training split with
:func:`hipsml.train.zarr_batches` (normalised, NaN to 0, optional mask channel), or with
``source="sky"`` cuts it afresh every epoch from the dataset's surveys at random angles
(:func:`hipsml.train.sky_batches`, exact rotations by reprojection), augments each
batch on the device with exact 90-degree turns and flips, optimises a class-weighted cross
entropy with AdamW (warm-up then cosine decay), evaluates on the validation split after every
epoch (early stopping on its loss) and on the test split at the end. The run folder::

    RUNDIR/
      run.json                 the model (architecture, classes, channels, normalisation), config, dataset
      model.eqx                the best model's weights (equinox tree_serialise_leaves)
      checkpoint.json          the last finished epoch: its file, optimizer step, history, early-stopping state
      checkpoints/epoch-NNNN.eqx   model + optimizer state after epoch NNNN (the last one kept)
      metrics.json             per-epoch history, best epoch, val and test metrics (confusion matrices)
      confusion.png  curves.png

Every file is written atomically (a temporary file renamed), the checkpoint file before the
JSON that names it, so a crash leaves the previous epoch's checkpoint readable and
``resume=True`` continues from it with the same state as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hipsml._files import atomic_write_bytes, user_path, write_figure_png
from hipsml._suggest import did_you_mean as _did_you_mean
from hipsml.dataset import as_dataset
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train._checks import check_class_count, check_finite_loss, check_finite_weights
from hipsml.train._records import EpochRecord
from hipsml.train.cnn._limits import check_cnn_memory, check_record, check_stem_fits
from hipsml.train.cnn._model import (
    ModelSpec,
    ResNet,
    augment,
    build_model,
    parameter_count,
    predict_logits,
    stage_count,
    stage_parts,
)
from hipsml.train.cnn._results import CNN
from hipsml.train.loaders import Normalisation, parse_normalisation, zarr_batches
from hipsml.train.loaders._sky import dataset_surveys, sky_batches

__all__ = [
    "CNN",
    "CNNConfig",
    "CNNResult",
    "eval_step",
    "evaluate",
    "load_cnn",
    "plot_confusion",
    "plot_curves",
    "train_cnn",
    "train_step",
]

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


@dataclass
class CNNResult:
    """What :func:`train_cnn` returns.

    Attributes
    ----------
    model : ResNet
        The best model (lowest validation loss; the last one without a validation split).
    history : list of EpochRecord
        One record per epoch (the record type :func:`hipsml.train.train_som` uses too, a dict
        whose keys are attributes): ``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
        ``val_accuracy``, ``val_per_class``, ``images_per_second``, ``seconds``.
    metrics : dict
        ``metrics.json``: best epoch, val and test loss, accuracy, per-class accuracy, confusion.
    checkpoint : pathlib.Path
        ``RUNDIR/model.eqx``; :func:`load_cnn` and :func:`hipsml.train.predict_cnn` read the run folder.
    workdir : pathlib.Path
    config : CNNConfig
    label_names : list of str
    """

    model: ResNet
    history: list[EpochRecord]
    metrics: dict[str, Any]
    checkpoint: Path
    workdir: Path
    config: CNNConfig
    label_names: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# the steps (pure, jit-compiled)


def compute_dtype(precision: str) -> Any:
    if precision == "bfloat16" or (precision == "auto" and jax.default_backend() == "gpu"):
        return jnp.bfloat16
    return jnp.float32


def _loss(params: Any, static: Any, images: jax.Array, labels: jax.Array, weights: jax.Array,
          dtype: Any) -> tuple[jax.Array, jax.Array]:  # fmt: skip
    model = eqx.combine(params, static)
    logits = predict_logits(model, images, dtype)
    per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    w = weights[labels]
    loss = jnp.sum(w * per) / jnp.maximum(jnp.sum(w), 1e-12)
    correct = jnp.sum(jnp.argmax(logits, axis=1) == labels)
    return loss, correct


@eqx.filter_jit
def train_step(
    model: ResNet, opt_state: Any, images: jax.Array, labels: jax.Array, weights: jax.Array, learning_rate: jax.Array,
    *, key: jax.Array, optimizer: optax.GradientTransformation, augmented: bool, dtype: Any,
    pixel_rotation: bool = False,
) -> tuple[ResNet, Any, jax.Array, jax.Array]:  # fmt: skip
    """One optimisation step on a batch: augment, class-weighted cross entropy, AdamW update.

    ``augmented``: exact turns and flips (:func:`hipsml.train.augment`), plus interpolated
    random angles with ``pixel_rotation``.

    ``optimizer`` gives unit-rate updates (``-adam - weight_decay * w``); they are scaled by
    ``learning_rate``, a traced scalar, so one compiled step serves every schedule.

    Returns the new model and optimizer state, the batch loss and the number of correct predictions.
    """
    if augmented:
        images = augment(images, key=key, pixel_rotation=pixel_rotation)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    (loss, correct), grads = jax.value_and_grad(_loss, has_aux=True)(params, static, images, labels, weights, dtype)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 step counts with floats
        updates, opt_state = optimizer.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: learning_rate * u, updates)
    model = eqx.combine(optax.apply_updates(params, updates), static)
    return model, opt_state, loss, correct


@eqx.filter_jit
def eval_step(model: ResNet, images: jax.Array, *, dtype: Any = jnp.float32) -> jax.Array:
    """Class probabilities ``(B, K)`` float32 of a batch."""
    return jax.nn.softmax(predict_logits(model, images, dtype), axis=1)


# ---------------------------------------------------------------------------------------
# evaluation


def _padded(images: np.ndarray, size: int) -> np.ndarray:
    """``images`` padded with zeros to ``size`` cutouts (one compiled shape for every batch)."""
    if images.shape[0] == size:
        return images
    out = np.zeros((size, *images.shape[1:]), dtype=images.dtype)
    out[: images.shape[0]] = images
    return out


def batch_probabilities(model: ResNet, batches: Any, *, batch_size: int, dtype: Any = jnp.float32
                        ) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:  # fmt: skip
    """``(probabilities, labels, rows)`` of each batch of a loader (padded to one compiled shape)."""
    for images, labels, rows in batches:
        n = images.shape[0]
        probs = eval_step(model, jnp.asarray(_padded(images, batch_size)), dtype=dtype)
        yield np.asarray(probs)[:n], labels, rows


def evaluate(model: ResNet, batches: Any, *, batch_size: int, weights: np.ndarray, dtype: Any = jnp.float32
             ) -> dict[str, Any]:  # fmt: skip
    """Loss (class-weighted), accuracy, per-class accuracy and confusion matrix over a loader's epoch."""
    k = model.spec.num_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    loss_sum = weight_sum = 0.0
    for probs, labels, _rows in batch_probabilities(model, batches, batch_size=batch_size, dtype=dtype):
        assert labels is not None  # evaluation batches are labelled
        w = weights[labels]
        loss_sum += float(np.sum(-w * np.log(np.maximum(probs[np.arange(labels.size), labels], 1e-30))))
        weight_sum += float(np.sum(w))
        np.add.at(confusion, (labels, probs.argmax(axis=1)), 1)
    return metrics_of(confusion, loss_sum / weight_sum if weight_sum > 0 else float("nan"))


def metrics_of(confusion: np.ndarray, loss: float) -> dict[str, Any]:
    """Accuracy overall and per class (recall; NaN for a class absent from the split) of a confusion matrix."""
    total = int(confusion.sum())
    per = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(per > 0, np.diag(confusion) / np.maximum(per, 1), np.nan)
    return {"loss": float(loss), "accuracy": float(np.trace(confusion) / total) if total else float("nan"),
            "per_class": [None if not np.isfinite(v) else float(v) for v in per_class], "count": total,
            "confusion": confusion.tolist()}  # fmt: skip


# ---------------------------------------------------------------------------------------
# the run folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_tree(path: Path, tree: Any) -> Path:
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    return atomic_write_bytes(path, buffer.getvalue())


def _load_tree(path: Path, like: Any) -> Any:
    try:
        with open(path, "rb") as fh:
            return eqx.tree_deserialise_leaves(fh, like)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InvalidInputError(f"{path}: cannot read the weights ({exc})") from None


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write_bytes(path, (json.dumps(data, indent=1, allow_nan=True) + "\n").encode())


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{path.parent} holds no {what} ({path.name} is missing)") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: unreadable {what} ({exc})") from None


_RUN_KEYS = ("kind", "model", "label_names", "channels", "normalisation", "config", "dataset")
_DATASET_KEYS = ("path", "version", "hash")
_CHECKPOINT_KEYS = ("file", "sha256", "epoch", "step", "history", "best", "best_epoch", "stale")


def read_run(folder: Path) -> dict[str, Any]:
    """``folder/run.json``, checked: an object with every field a run needs, its model readable.

    Raises
    ------
    InvalidInputError
        Missing, unreadable or damaged (not an object, a field missing), naming the file.
    """
    path = folder / "run.json"
    run = check_record(_read_json(path, "CNN run"), path, "CNN run", _RUN_KEYS)
    check_record(run["dataset"], path, "CNN run dataset", _DATASET_KEYS)
    try:
        ModelSpec.from_dict(run["model"])
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"{path}: unreadable model ({exc}); the run folder is damaged") from None
    return run


def _normalisation_dict(norm: Normalisation | None) -> dict[str, Any] | None:
    if norm is None:
        return None
    data: dict[str, Any] = {"name": norm.name, **norm.options}
    if norm.stats is not None:
        data["stats"] = norm.stats.to_dict()
    return data


def run_folder(path: str | os.PathLike[str]) -> Path:
    """The run folder of ``path`` (a run folder, or its ``model.eqx``)."""
    p = user_path(path, what="checkpoint")
    return p.parent if p.name.endswith(".eqx") else p


def load_cnn(path: str | os.PathLike[str]) -> CNN:
    """The best model of a run folder (or its ``model.eqx``), as a :class:`CNN` (model, ``run.json``, folder).

    ``cnn.predict(images)`` classifies in memory, as ``load_som(folder).map(images)`` does for a SOM.
    (Unpacking ``model, run = load_cnn(path)``, the old shape, still works with a
    ``DeprecationWarning``.)

    Examples
    --------
    >>> import hipsml
    >>> cnn = load_cnn("runs/demo")
    >>> cnn.label_names == hipsml.open_dataset("demo-output/datasets/demo").label_names
    True
    """
    folder = run_folder(path)
    run = read_run(folder)
    spec = ModelSpec.from_dict(run["model"])
    skeleton = build_model(spec, key=jax.random.PRNGKey(0))
    return CNN(_load_tree(folder / "model.eqx", skeleton), run, folder)


# ---------------------------------------------------------------------------------------
# training


def _class_weights(config: CNNConfig, labels: np.ndarray, k: int) -> np.ndarray:
    if config.class_weights is None:
        return np.ones(k, dtype=np.float32)
    if isinstance(config.class_weights, tuple):
        if len(config.class_weights) != k:
            raise InvalidInputError(f"class_weights has {len(config.class_weights)} values for {k} classes")
        return np.asarray(config.class_weights, dtype=np.float32)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, labels.size / (k * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def learning_rate_schedule(config: CNNConfig, steps_per_epoch: int) -> optax.Schedule:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to 1 % at the last step."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    return optax.warmup_cosine_decay_schedule(0.0 if warmup else config.learning_rate, config.learning_rate,
                                              warmup, total, end_value=config.learning_rate * 0.01)  # fmt: skip


def _optimizer(config: CNNConfig, frozen: Any | None) -> optax.GradientTransformation:
    """AdamW without its learning rate (``train_step`` scales by the scheduled rate), frozen parts zeroed."""
    key = None if frozen is None else (jax.tree.structure(frozen), tuple(jax.tree.leaves(frozen)))
    return _cached_optimizer(float(config.weight_decay), key, frozen)


_OPTIMIZERS: dict[Any, optax.GradientTransformation] = {}


def _cached_optimizer(weight_decay: float, key: Any, frozen: Any | None) -> optax.GradientTransformation:
    # one object per (weight decay, frozen parts): train_step's compiled code is reused across runs
    if (weight_decay, key) not in _OPTIMIZERS:
        base = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(weight_decay), optax.scale(-1.0))
        if frozen is not None:
            labels = jax.tree.map(lambda f: "frozen" if f else "train", frozen)
            base = optax.multi_transform({"train": base, "frozen": optax.set_to_zero()}, lambda _params: labels)
        _OPTIMIZERS[(weight_decay, key)] = base
    return _OPTIMIZERS[(weight_decay, key)]


def frozen_mask(model: ResNet, freeze: int, *, keep_stem: bool = False) -> Any:
    """A pytree of bools over ``model``'s arrays: True for the first ``freeze`` stages.

    Stage 0 is the stem (convolution and its norm), stages 1.. the residual stages; the head
    always trains, and so does a rebuilt stem (``keep_stem``).
    """
    params = eqx.filter(model, eqx.is_inexact_array)
    mask = jax.tree.map(lambda _: False, params)
    parts = stage_parts(model, freeze)
    if keep_stem and freeze >= 1:
        parts = parts[2:]
    if not parts:
        return mask
    where = _where_parts(freeze, keep_stem)
    return eqx.tree_at(where, mask, replace_fn=lambda sub: jax.tree.map(lambda _: True, sub))


def _where_parts(freeze: int, keep_stem: bool) -> Callable[[Any], tuple[Any, ...]]:
    def where(m: Any) -> tuple[Any, ...]:
        parts: list[Any] = []
        if freeze >= 1 and not keep_stem:
            parts += [m.stem, m.stem_norm]
        parts += list(m.stages[: max(0, freeze - 1)])
        return tuple(parts)

    return where


def transfer_model(source: ResNet, spec: ModelSpec, *, key: jax.Array) -> tuple[ResNet, bool]:
    """A model of ``spec`` holding ``source``'s stem (when the channel counts agree) and stages, a new zero head.

    Returns the model and whether the stem was rebuilt.
    """
    fresh = build_model(spec, key=key)
    assert fresh.head.bias is not None  # the head is built with a bias
    # a zero head starts from uniform probabilities: the pretrained features are read out, not fought
    fresh = eqx.tree_at(lambda m: (m.head.weight, m.head.bias), fresh,
                        (jnp.zeros_like(fresh.head.weight), jnp.zeros_like(fresh.head.bias)))  # fmt: skip
    rebuild_stem = source.spec.in_channels != spec.in_channels
    model = eqx.tree_at(lambda m: m.stages, fresh, source.stages)
    if not rebuild_stem:
        model = eqx.tree_at(lambda m: (m.stem, m.stem_norm), model, (source.stem, source.stem_norm))
    else:
        model = eqx.tree_at(lambda m: m.stem_norm, model, source.stem_norm)
    return model, rebuild_stem


def _labels_of(ds: Any) -> tuple[np.ndarray, list[str]]:
    if "label" not in ds.group:
        raise InvalidInputError(f"{ds.location} has no label column: a CNN classifier needs labelled cutouts")
    codes = ds.column("label")
    if codes.dtype.kind not in "iu":
        raise InvalidInputError(f"{ds.location}/label holds {codes.dtype} values, not class codes")
    names = ds.label_names or [str(i) for i in range(int(codes.max()) + 1 if codes.size else 1)]
    return codes.astype(np.int64), list(names)


def _dataset_identity(ds: Any) -> dict[str, Any]:
    return {"path": str(Path(ds.path).resolve()), "version": ds.version, "hash": ds.hash,
            "channels": ds.channels, "size": int(ds.images.shape[-1])}  # fmt: skip


def train_cnn(
    dataset: Any,
    config: CNNConfig | Mapping[str, Any] | None = None,
    *,
    split: str = "train",
    workdir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    init: str | os.PathLike[str] | None = None,
    freeze: int = 0,
    **options: Any,
) -> CNNResult:
    """Train the residual CNN on a dataset's training split; checkpoint every epoch into ``workdir``.

    The training batches are the stored cutouts, or with ``source="sky"`` the training targets
    cut afresh every epoch from the dataset's surveys at random angles (exact rotations by
    reprojection); validation and test read the stored cutouts either way.

    The call has the shape of :func:`hipsml.train.train_som`: ``(data, config, *, split=,
    workdir=, resume=, progress=, on_epoch=, **options)``.

    Parameters
    ----------
    dataset : Dataset or path
        A labelled :class:`hipsml.Dataset`, or its ``"PATH[@vN]"``.
    config : CNNConfig or mapping, optional
        Options (:class:`CNNConfig`); keyword ``options`` override them.
    split : str
        The split to train on (default ``'train'``; the option ``train_split`` says the same,
        the validation and test splits are ``val_split`` and ``test_split``).
    workdir : path
        The run folder (see this module's layout). It must be new or empty unless ``resume``.
    resume : bool
        Continue the run saved in ``workdir`` from its last finished epoch (its saved config;
        only ``epochs`` and ``patience`` may change). A finished run is returned as it is; a
        folder without a run yet starts afresh.
    progress : bool
        Show a tqdm bar per epoch (training batches).
    on_epoch : callable, optional
        Called with each epoch's :class:`~hipsml.train.EpochRecord` (after the checkpoint is saved).
    init : path, optional
        Fine-tune from this run folder (or its ``model.eqx``): its architecture and weights,
        a new head for this dataset's classes, a new stem when the channel count differs.
    freeze : int
        With ``init``: freeze the first ``freeze`` stages, the stem counting as the first and the
        residual stages after it (a rebuilt stem always trains; the head always trains).
        Frozen weights are left exactly as loaded.

    Returns
    -------
    CNNResult

    Raises
    ------
    InvalidInputError
        Unknown option (with "did you mean"), unlabelled dataset, a resume of another dataset.
    OutputError
        ``workdir`` holds something else, or cannot be written.
    SurveyNotFoundError, FetchError
        ``source="sky"`` and a survey of the dataset cannot be opened where it was recorded
        (checked before anything is written).

    Examples
    --------
    >>> tiny = {"epochs": 1, "batch_size": 32, "stem_channels": 8, "widths": [8, 16]}  # a toy model, for speed
    >>> result = train_cnn("demo-output/datasets/demo", tiny, workdir="runs/mine", progress=False)
    >>> len(result.history), 0.0 <= result.metrics["test"]["accuracy"] <= 1.0
    (1, True)
    >>> more = train_cnn("demo-output/datasets/demo", {**tiny, "epochs": 2}, workdir="runs/mine", resume=True,
    ...                  progress=False)
    >>> [record.epoch for record in more.history]  # the first epoch read back, the second trained now
    [0, 1]

    Training straight from the sky (``source="sky"``) cuts every training target afresh each
    epoch at a random angle: ``train_cnn(ds, {"source": "sky", ...}, workdir=...)``.
    """
    if not isinstance(split, str):
        raise InvalidInputError(f"split must name the split a CNN trains on (e.g. 'train'), got {split!r}")
    if split != "train":  # the keyword and the option train_split say the same thing
        if options.get("train_split", split) != split:
            raise InvalidInputError(f"split={split!r} and train_split={options['train_split']!r} disagree; give one")
        options = {**options, "train_split": split}
    if isinstance(config, Mapping) or config is None:
        given = {**dict(config or {}), **options}
        config = CNNConfig.from_mapping(given)
    elif isinstance(config, CNNConfig):
        defaults = CNNConfig().to_dict()
        given = {k: v for k, v in config.to_dict().items() if v != defaults[k]} | options
        config = CNNConfig.from_mapping(options, base=config)
    else:
        raise InvalidInputError(f"config must be a CNNConfig, a mapping or None, got {type(config).__name__}")
    out = user_path(workdir, what="workdir")
    _check_int(freeze, "freeze", 0)
    if freeze and init is None:
        raise InvalidInputError("freeze needs init (the run folder whose stages are frozen)")
    ds = as_dataset(dataset)
    state = _prepare_run(out, ds, config, resume=resume, init=init, freeze=freeze, given=set(given))
    return _run(state, on_epoch, progress=progress)


@dataclass
class _RunState:
    out: Path
    ds: Any
    config: CNNConfig
    run: dict[str, Any]
    norm: Normalisation | None
    model: ResNet
    frozen: Any | None
    epoch: int = 0
    step: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best: float = math.inf
    best_epoch: int = -1
    stale: int = 0
    opt_state: Any = None
    finished: bool = False


def _prepare_run(out: Path, ds: Any, config: CNNConfig, *, resume: bool, init: Any, freeze: int,
                 given: set[str]) -> _RunState:  # fmt: skip
    if out.exists() and not out.is_dir():
        raise OutputError(f"workdir {out} is a file; give a folder for the run")
    if (out / "run.json").is_file():
        if not resume:
            raise OutputError(f"{out} holds a CNN run already; continue it with resume=True or choose a new folder")
        return _resume(out, ds, config, given)
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(f"{out} is not empty and holds no CNN run; choose a new or empty folder")
    codes, names = _labels_of(ds)
    if config.source == "sky":
        dataset_surveys(ds)  # the surveys are reachable, before anything is written
    check_training_split(ds, config, codes, names)
    in_channels = int(ds.images.shape[1]) + (1 if config.mask_channel else 0)
    side, where = int(ds.images.shape[-1]), f"{ds.path} v{ds.version}"
    key = jax.random.PRNGKey(config.seed)
    frozen = None
    transfer: dict[str, Any] | None = None
    norm = parse_normalisation(config.normalise, dataset=ds)
    if init is not None:
        loaded = load_cnn(init)
        source, source_run = loaded.model, loaded.run
        base = source.spec
        spec = ModelSpec(in_channels, len(names), base.stem_channels, base.stem_stride, base.widths, base.blocks,
                         base.groups)  # fmt: skip
        if freeze > stage_count(spec):
            raise InvalidInputError(f"freeze={freeze}: the model has {stage_count(spec)} stages (stem and "
                                    f"{len(spec.widths)} residual stages)")  # fmt: skip
        check_stem_fits(spec, side, where=where)
        check_cnn_memory(spec, side, config.batch_size)
        model, rebuilt = transfer_model(source, spec, key=key)
        frozen = frozen_mask(model, freeze, keep_stem=rebuilt) if freeze else None
        config = replace(config, **{k: getattr(base, k) for k in _MODEL_KEYS})
        _save_tree(out / "checkpoints" / "start.eqx", model)  # what a resume before the first epoch starts from
        transfer = {
            "init": str(run_folder(init).resolve()),
            "freeze": freeze,
            "stem_rebuilt": rebuilt,
            "source_labels": source_run.get("label_names"),
            "source_dataset": source_run.get("dataset"),
        }
        logger.info(
            "fine-tuning from %s: new head for %d classes%s, %d stages frozen",
            init,
            len(names),
            ", new stem" if rebuilt else "",
            freeze,
        )
    else:
        spec = config.model_spec(in_channels, len(names))
        check_stem_fits(spec, side, where=where)
        check_cnn_memory(spec, side, config.batch_size)
        model = build_model(spec, key=key)
    run = {"kind": "hipsml-cnn", "source": config.source, "model": model.spec.to_dict(), "label_names": names,
           "channels": ds.channels, "mask_channel": config.mask_channel, "normalisation": _normalisation_dict(norm),
           "config": config.to_dict(), "dataset": _dataset_identity(ds), "transfer": transfer,
           "parameters": parameter_count(model)}  # fmt: skip
    _write_json(out / "run.json", run)
    logger.info("CNN of %d parameters, %d classes, %d input channels", run["parameters"], len(names), in_channels)
    return _RunState(out, ds, config, run, norm, model, frozen)


def _resume(out: Path, ds: Any, config: CNNConfig, given: set[str]) -> _RunState:
    run = read_run(out)
    saved = CNNConfig.from_mapping(run["config"])
    now, before = config.to_dict(), saved.to_dict()
    changed = sorted(k for k in given if k not in ("epochs", "patience") and now[k] != before[k])
    if changed:
        raise InvalidInputError(f"{out}: a resumed run keeps its options; only epochs and patience may change "
                                f"(got {', '.join(changed)})")  # fmt: skip
    config = replace(saved, **{k: getattr(config, k) for k in ("epochs", "patience") if k in given})
    if run["dataset"]["hash"] != ds.hash:
        raise InvalidInputError(f"{out} was trained on dataset {run['dataset']['path']} v{run['dataset']['version']} "
                                f"(hash {run['dataset']['hash'][:12]}); this is {ds.path} v{ds.version}")  # fmt: skip
    spec = ModelSpec.from_dict(run["model"])
    model = build_model(spec, key=jax.random.PRNGKey(config.seed))
    norm = parse_normalisation(run["normalisation"]) if run["normalisation"] else None
    frozen = None
    transfer = run.get("transfer")
    if transfer and transfer.get("freeze"):
        frozen = frozen_mask(model, transfer["freeze"], keep_stem=transfer["stem_rebuilt"])
    if transfer and not (out / "checkpoint.json").is_file():
        model = _load_tree(out / "checkpoints" / "start.eqx", model)
    state = _RunState(out, ds, config, run, norm, model, frozen)
    if (out / "checkpoint.json").is_file():
        ck = check_record(_read_json(out / "checkpoint.json", "checkpoint"), out / "checkpoint.json", "checkpoint",
                          _CHECKPOINT_KEYS)  # fmt: skip
        path = out / str(ck["file"])
        if not path.is_file():
            raise InvalidInputError(f"{path}, the checkpoint named by checkpoint.json, is missing; the run folder is "
                                    "damaged (train again in a new folder)")  # fmt: skip
        if _digest(path) != ck["sha256"]:
            raise InvalidInputError(f"{path} does not match checkpoint.json (sha256); the run folder is damaged")
        state.opt_state = _init_opt(state)
        state.model, state.opt_state = _load_tree(path, (model, state.opt_state))
        state.epoch, state.step, state.history = ck["epoch"] + 1, ck["step"], [EpochRecord(r) for r in ck["history"]]
        state.best, state.best_epoch, state.stale = ck["best"], ck["best_epoch"], ck["stale"]
        state.finished = bool(ck.get("stopped", False))
        logger.info("resuming %s at epoch %d (optimizer step %d)", out, state.epoch + 1, state.step)
    return state


def _loaders(state: _RunState, split: str, *, train: bool) -> Any:
    """The batches of ``split``: stored cutouts, or for training with ``source="sky"`` cut from the surveys."""
    c = state.config
    if train and c.source == "sky":
        return sky_batches(state.ds, split=split, rotation="random", shift_pixels=c.sky_shift_pixels,
                           scale_jitter=c.sky_scale_jitter, batch_size=c.batch_size, seed=c.seed,
                           normalise=state.norm, mask_channel=c.mask_channel, drop_last=True,
                           threads=c.threads)  # fmt: skip
    return zarr_batches(state.ds, split, batch_size=c.batch_size, shuffle=train, seed=c.seed, normalise=state.norm,
                        mask_channel=c.mask_channel, drop_last=train, threads=c.threads)  # fmt: skip


def _init_opt(state: _RunState) -> Any:
    optimizer = _optimizer(state.config, state.frozen)
    return optimizer.init(eqx.filter(state.model, eqx.is_inexact_array))


def _run(state: _RunState, on_epoch: Callable[[EpochRecord], None] | None, *, progress: bool = False) -> CNNResult:
    c, ds, out = state.config, state.ds, state.out
    codes, names = _labels_of(ds)
    train_rows = check_training_split(ds, c, codes, names)
    weights = _class_weights(c, codes[train_rows], len(names))
    weights_dev = jnp.asarray(weights)
    has_val = c.val_split in ds.split_names and ds.split(c.val_split).size > 0
    has_test = c.test_split in ds.split_names and ds.split(c.test_split).size > 0
    dtype = compute_dtype(c.precision)
    train_loader = _loaders(state, c.train_split, train=True)
    optimizer = _optimizer(c, state.frozen)
    schedule = learning_rate_schedule(c, len(train_loader))
    if state.opt_state is None:
        state.opt_state = optimizer.init(eqx.filter(state.model, eqx.is_inexact_array))
    base_key = jax.random.PRNGKey(c.seed + 1)
    model, opt_state = state.model, state.opt_state
    if state.best_epoch >= 0 and (out / "model.eqx").is_file():
        best_model = _load_tree(out / "model.eqx", model)
    else:
        best_model = model
    while state.epoch < c.epochs and not state.finished:
        epoch = state.epoch
        t0 = time.perf_counter()
        loss_sum = jnp.zeros((), jnp.float32)
        correct = jnp.zeros((), jnp.int32)
        seen = 0
        for images, labels, _rows in _with_bar(train_loader.for_epoch(epoch), len(train_loader), progress,
                                               f"CNN epoch {epoch + 1}/{c.epochs}"):  # fmt: skip
            key = jax.random.fold_in(base_key, state.step)
            model, opt_state, loss, right = train_step(
                model, opt_state, jnp.asarray(images), jnp.asarray(labels, dtype=jnp.int32), weights_dev,
                jnp.asarray(schedule(state.step), dtype=jnp.float32), key=key, optimizer=optimizer,
                augmented=c.augment, dtype=dtype, pixel_rotation=c.pixel_rotation)  # fmt: skip
            loss_sum = loss_sum + loss
            correct = correct + right
            seen += images.shape[0]
            state.step += 1
        steps = max(1, len(train_loader))
        train_loss, train_acc = float(loss_sum) / steps, int(correct) / max(seen, 1)
        cause = f"learning_rate {c.learning_rate:g} is too large (try one ten times smaller)"
        check_finite_loss(train_loss, epoch=epoch, model="CNN", cause=cause)  # before anything of it is saved
        check_finite_weights(_all_finite(model), epoch=epoch, model="CNN", cause=cause)
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc,
                                  "images_per_second": seen / seconds if seconds > 0 else float("nan"),
                                  "seconds": seconds, "step": state.step, "epochs": c.epochs,
                                  "source": c.source}  # fmt: skip
        if has_val:
            val = evaluate(model, _loaders(state, c.val_split, train=False), batch_size=c.batch_size,
                           weights=weights, dtype=dtype)  # fmt: skip
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_per_class=val["per_class"])
            monitored = val["loss"]
        else:
            monitored = train_loss
        if monitored < state.best:
            state.best, state.best_epoch, state.stale = monitored, epoch, 0
            best_model = model
            _save_tree(out / "model.eqx", model)
        else:
            state.stale += 1
        stopped = c.patience is not None and state.stale >= c.patience
        record = EpochRecord(record)
        state.history.append(record)
        _checkpoint(state, model, opt_state, stopped=stopped)
        state.epoch += 1
        if on_epoch is not None:
            on_epoch(record)
        if stopped:
            logger.info("early stop after epoch %d: no better validation loss for %d epochs", epoch + 1, c.patience)
            state.finished = True
    if not (out / "model.eqx").is_file():
        _save_tree(out / "model.eqx", best_model)
    metrics = _final_metrics(state, best_model, weights, has_val=has_val, has_test=has_test, dtype=dtype)
    return CNNResult(best_model, state.history, metrics, out / "model.eqx", out, c, names)


def _all_finite(model: ResNet) -> bool:
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    return all(bool(jnp.isfinite(leaf).all()) for leaf in leaves)


def check_training_split(ds: Any, config: CNNConfig, codes: np.ndarray, names: list[str]) -> np.ndarray:
    """The rows of the training split, refused when empty, smaller than a batch or holding fewer than 2 classes.

    Raises
    ------
    InvalidInputError
        One line naming the split, the dataset and what to change.
    """
    train_rows = ds.split(config.train_split)
    if train_rows.size < 1:
        raise InvalidInputError(f"split {config.train_split!r} of {ds.location} is empty")
    if config.batch_size > train_rows.size:
        raise InvalidInputError(f"batch_size {config.batch_size} is larger than the training split ({train_rows.size} "
                                f"cutouts); choose batch_size <= {train_rows.size}")  # fmt: skip
    check_class_count(codes[train_rows], names, split=config.train_split, where=f"{ds.path} v{ds.version}")
    return train_rows


def _with_bar(batches: Any, total: int, progress: bool, what: str) -> Any:
    """``batches`` behind a tqdm bar (``progress``), closed when the epoch ends."""
    if not progress:
        yield from batches
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=what, unit="batch") as bar:
        for batch in batches:
            yield batch
            bar.update(1)


def _checkpoint(state: _RunState, model: ResNet, opt_state: Any, *, stopped: bool) -> None:
    out = state.out
    name = f"checkpoints/epoch-{state.epoch:04d}.eqx"
    path = _save_tree(out / name, (model, opt_state))
    previous = None
    if (out / "checkpoint.json").is_file():
        previous = _read_json(out / "checkpoint.json", "checkpoint").get("file")
    _write_json(out / "checkpoint.json", {
        "file": name, "sha256": _digest(path), "epoch": state.epoch, "step": state.step, "history": state.history,
        "best": state.best, "best_epoch": state.best_epoch, "stale": state.stale, "stopped": stopped,
        "finished": stopped or state.epoch + 1 >= state.config.epochs, "config": state.config.to_dict(),
    })  # fmt: skip
    if previous and previous != name:
        (out / previous).unlink(missing_ok=True)


#: how ``metrics.json`` counts epochs (stated in the file itself)
_NUMBERING = (
    "best_epoch counts from 1, as the command line prints and curves.png plots epochs: best_epoch N is "
    "history[N-1], whose 'epoch' field is that record's 0-based index N-1"
)


def _final_metrics(state: _RunState, model: ResNet, weights: np.ndarray, *, has_val: bool, has_test: bool,
                   dtype: Any) -> dict[str, Any]:  # fmt: skip
    c, out = state.config, state.out
    metrics: dict[str, Any] = {"source": c.source, "best_epoch": state.best_epoch + 1, "epoch_numbering": _NUMBERING,
                               "epochs_run": len(state.history),
                               "stopped_early": state.finished and len(state.history) < c.epochs,
                               "label_names": state.run["label_names"], "history": state.history}  # fmt: skip
    for split, present in ((c.val_split, has_val), (c.test_split, has_test)):
        if present:
            key = "val" if split == c.val_split else "test"
            metrics[key] = evaluate(model, _loaders(state, split, train=False), batch_size=c.batch_size,
                                    weights=weights, dtype=dtype)  # fmt: skip
            metrics[key]["split"] = split
    _write_json(out / "metrics.json", metrics)
    shown = metrics.get("test") or metrics.get("val")
    if shown is not None:
        plot_confusion(np.asarray(shown["confusion"]), state.run["label_names"], out / "confusion.png",
                       title=f"{shown['split']} split: accuracy {shown['accuracy']:.3f}")  # fmt: skip
    if state.history:
        plot_curves(
            state.history, out / "curves.png", best_epoch=state.best_epoch + 1 if state.best_epoch >= 0 else None
        )
    return metrics


# ---------------------------------------------------------------------------------------
# pictures


def plot_confusion(confusion: np.ndarray, names: list[str], path: str | os.PathLike[str], *, title: str = ""
                   ) -> Path:  # fmt: skip
    """A confusion matrix (rows: true class, columns: predicted) as a PNG, counts and row fractions shown.

    Examples
    --------
    >>> import tempfile, os
    >>> plot_confusion(np.array([[3, 1], [0, 4]]), ["a", "b"], os.path.join(tempfile.mkdtemp(), "c.png")).name
    'c.png'
    """
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, dtype=np.int64)
    k = confusion.shape[0]
    rows = confusion.sum(axis=1, keepdims=True)
    frac = confusion / np.maximum(rows, 1)
    figure = Figure(figsize=(1.2 * k + 2.5, 1.1 * k + 1.8), dpi=100)
    ax = figure.add_subplot(1, 1, 1)
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{confusion[i, j]}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="fraction of the true class")
    figure.tight_layout()
    return write_figure_png(figure, user_path(path, what="output"))


def curves_figure(history: Sequence[Mapping[str, Any]], *, best_epoch: int | None = None) -> Any:
    """The figure :func:`plot_curves` saves (a matplotlib ``Figure``), the best epoch marked on both panels."""
    from matplotlib.figure import Figure

    epochs = [r["epoch"] + 1 for r in history]
    figure = Figure(figsize=(9, 3.5), dpi=100)
    for panel, what in enumerate(("loss", "accuracy")):
        ax = figure.add_subplot(1, 2, panel + 1)
        ax.plot(epochs, [r[f"train_{what}"] for r in history], "o-", label="train (augmented)")
        if all(f"val_{what}" in r for r in history):
            ax.plot(epochs, [r[f"val_{what}"] for r in history], "s-", label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle="--", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        if what == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, best_epoch: int | None = None
                ) -> Path:  # fmt: skip
    """Loss and accuracy per epoch (training and validation) as a PNG with two panels.

    Epochs are counted from 1 on the x axis; ``best_epoch`` (counted from 1, as in
    ``metrics.json``) is marked by a dashed line labelled "best epoch N".

    Examples
    --------
    >>> import tempfile, os
    >>> h = [{"epoch": 0, "train_loss": 1.0, "train_accuracy": 0.5},
    ...      {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8}]
    >>> plot_curves(h, os.path.join(tempfile.mkdtemp(), "curves.png"), best_epoch=2).name
    'curves.png'
    """
    return write_figure_png(curves_figure(history, best_epoch=best_epoch), user_path(path, what="output"))
