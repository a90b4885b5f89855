"""Training the residual CNN on a dataset split: :func:`train_cnn` (the loop; its options are
:mod:`~hipsml.train.cnn._config`, its steps :mod:`~hipsml.train.cnn._steps`, its run folder
:mod:`~hipsml.train.cnn._run`, its pictures :mod:`~hipsml.train.cnn._plots`).

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

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hipsml._files import user_path
from hipsml.dataset import as_dataset
from hipsml.errors import InvalidInputError, OutputError, TrainingDivergedError
from hipsml.train._checks import check_class_count, check_finite_loss, check_finite_weights
from hipsml.train._records import EpochRecord
from hipsml.train.cnn._config import _MODEL_KEYS, CNNConfig, _check_int
from hipsml.train.cnn._limits import check_cnn_memory, check_record, check_stem_fits
from hipsml.train.cnn._model import (
    ModelSpec,
    ResNet,
    build_model,
    parameter_count,
    stage_count,
    stage_parts,
)
from hipsml.train.cnn._plots import plot_confusion, plot_curves
from hipsml.train.cnn._run import (
    _CHECKPOINT_KEYS,
    _digest,
    _load_tree,
    _normalisation_dict,
    _read_json,
    _save_tree,
    _write_json,
    load_cnn,
    read_run,
    run_folder,
)
from hipsml.train.cnn._steps import compute_dtype, evaluate, train_step
from hipsml.train.loaders import Normalisation, parse_normalisation, zarr_batches
from hipsml.train.loaders._sky import dataset_surveys, sky_batches

__all__ = ["CNNResult", "check_training_split", "learning_rate_schedule", "train_cnn"]

logger = logging.getLogger(__name__)


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
    return codes.astype(np.int64), list(ds.class_names)


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
    fresh = not (out.is_dir() and any(out.iterdir()))
    state = _prepare_run(out, ds, config, resume=resume, init=init, freeze=freeze, given=set(given))
    try:
        return _run(state, on_epoch, progress=progress)
    except TrainingDivergedError:
        if fresh and not (out / "checkpoint.json").is_file():
            # nothing was learnt: leave no run behind, so the corrected call starts afresh in the same folder
            shutil.rmtree(out, ignore_errors=True)
        raise


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
