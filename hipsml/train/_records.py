"""The one record type both trainers give ``on_epoch`` and keep in ``history``: :class:`EpochRecord`."""

from __future__ import annotations

from typing import Any

__all__ = ["EpochRecord"]


class EpochRecord(dict[str, Any]):  # a plain dict underneath: JSON-ready, as the run files store it
    """What one training epoch measured, for the SOM and the CNN alike.

    A ``dict`` (so ``json.dumps(record)`` and ``record["epoch"]`` work) whose keys are also
    read-only attributes (``record.epoch``). Every record has

    - ``epoch`` (0-based), ``seconds``, ``images_per_second``;

    :func:`hipsml.train.train_som` adds ``quantisation_error`` (mean euclidean distance of each
    image to its best match in its best transform, measured when the image was searched),
    ``topographic_error`` (the fraction of images whose second-best neuron is not a grid
    neighbour of the best), ``sigma`` and ``damping``; :func:`hipsml.train.train_cnn` adds
    ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``val_per_class`` (with
    a validation split), ``step``, ``epochs`` and ``source``.

    Examples
    --------
    >>> r = EpochRecord(epoch=0, seconds=1.5, images_per_second=200.0, train_loss=0.7)
    >>> r.train_loss, r["epoch"], dict(r) == {"epoch": 0, "seconds": 1.5, "images_per_second": 200.0, "train_loss": 0.7}
    (0.7, 0, True)
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this epoch record has no {name!r} (it has {', '.join(self)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("an EpochRecord's attributes are read-only")

    def __repr__(self) -> str:
        return f"EpochRecord({', '.join(f'{k}={v!r}' for k, v in self.items())})"
