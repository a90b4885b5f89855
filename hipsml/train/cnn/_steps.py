"""The CNN's steps, pure and jit-compiled (:func:`train_step`, :func:`eval_step`), and evaluation.

Evaluation gives the loss, the accuracy overall and per class (recall), and the confusion matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hipsml.train.cnn._model import (
    ResNet,
    augment,
    predict_logits,
)

__all__ = ["batch_probabilities", "compute_dtype", "eval_step", "evaluate", "metrics_of", "train_step"]

logger = logging.getLogger(__name__)

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
