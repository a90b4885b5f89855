"""Training on hipsml images: data loaders, a rotation- and flip-invariant SOM (PINK's algorithm in JAX), a CNN.

Three subpackages, whose public names are all re-exported here: :mod:`hipsml.train.loaders`,
:mod:`hipsml.train.som` and :mod:`hipsml.train.cnn`.

The SOM and the CNN speak one dialect: :func:`train_som` and :func:`train_cnn` take a
:class:`~hipsml.Dataset`, a ``"PATH[@vN]"`` (or, for the SOM, an array), a config object or a
mapping, ``split=`` (default ``"train"``), ``workdir=`` with ``resume=True``, ``progress=``
(default True) and ``on_epoch=`` (an :class:`EpochRecord` for both); :func:`load_som` /
:func:`load_cnn` return a :class:`SOM` / :class:`CNN` whose ``map`` / ``predict`` work in memory;
:func:`read_som_mapping` / :func:`read_cnn_predictions` read what is stored beside a dataset
version (:func:`som_mapping_names` / :func:`cnn_prediction_names` list it).

The SOM core works on plain arrays ``(N, C, H, W)``:

>>> import numpy as np
>>> from hipsml.train import train_som
>>> images = np.random.default_rng(0).random((16, 1, 8, 8), dtype=np.float32)
>>> som = train_som(images, width=2, height=2, numrot=4, neuron_dim=8, progress=False)
>>> som.map(images).bmu.shape
(16,)

A :class:`~hipsml.Dataset` split trains a SOM too (``train_som(ds, split="train")``); its mapping
is stored beside the dataset version by :func:`write_som_mapping` (``DATASET/derived/vN/som/<name>``,
plain Zarr) and read back by :func:`read_som_mapping`; :func:`som_outliers` and
:func:`plot_outliers` rank and draw the images farthest from their prototypes.

PINK 2 binary files (data, SOM, mapping, rot/flip) are read and written by the ``read_pink*`` and
``write_pink*`` functions, so SOMs and data move between PINK and hipsml both ways.

The data loaders, shared by the SOM and the CNN:

- :func:`zarr_batches`: shuffled batches of a dataset split, read whole chunk by whole chunk,
  normalised and prefetched in background threads;
- :func:`sky_batches`: batches cut afresh from the HiPS tiles every epoch, at random rotations
  (exact augmentation by reprojection), with the same interface;
- normalisations (:func:`parse_normalisation`, :func:`minmax`, :func:`asinh_stretch`,
  :func:`percentile_clip`, :func:`standardise` with :func:`channel_stats`, :func:`fill_nan`),
  pure numpy functions on batches.

The loaders yield numpy arrays; hand them to JAX in your own loop (:func:`device_prefetch`
overlaps the copy to a JAX device with the training step). For PyTorch, :func:`torch_dataset`
(``pip install "hipsml[torch]"``) is a ``torch.utils.data.IterableDataset`` over the same reads,
sharded by chunk across ``DataLoader`` workers.

The CNN (equinox + optax): :func:`train_cnn` trains a small residual network
(:class:`ResNet`, :class:`ModelSpec`) on a dataset split with exact 90-degree-turn and flip
augmentation on the device, class weights, early stopping and a checkpoint every epoch
(``resume=True``), fine-tunes one (``init=``, ``freeze=``), and writes metrics and pictures;
:func:`predict_cnn` stores class probabilities beside the dataset version
(``DATASET/derived/vN/cnn/<name>``), :func:`read_cnn_predictions` reads them back as
:class:`CNNPredictions`. The steps
:func:`train_step` and :func:`eval_step` are the library's pieces for your own loop.
"""

# every public name of the three subpackages, re-exported as they list them (one list per name)
from hipsml.train import cnn, loaders, som
from hipsml.train.cnn import *  # noqa: F403
from hipsml.train.loaders import *  # noqa: F403
from hipsml.train.som import *  # noqa: F403

__all__ = [*cnn.__all__, *loaders.__all__, *som.__all__]
