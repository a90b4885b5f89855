"""Training on hipsml images: a rotation- and flip-invariant self-organizing map (PINK's algorithm in JAX).

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
"""

from hipsml.train._config import SOMConfig, default_distance_dim, default_neuron_dim
from hipsml.train._pink_io import (
    PinkMapping,
    PinkRotFlip,
    read_pink,
    read_pink_data,
    read_pink_mapping,
    read_pink_rot_flip,
    read_pink_som,
    write_pink_data,
    write_pink_mapping,
    write_pink_rot_flip,
    write_pink_som,
)
from hipsml.train._plots import plot_errors, plot_hit_counts, plot_prototypes, plot_umatrix, umatrix
from hipsml.train._outliers import plot_outliers, som_outliers
from hipsml.train._som import SOM, EpochRecord, SOMMapping, load_som, train_som
from hipsml.train._som_store import read_som_mapping, som_mapping_names, write_som_mapping

__all__ = [
    "SOMConfig",
    "SOM",
    "SOMMapping",
    "EpochRecord",
    "train_som",
    "load_som",
    "default_neuron_dim",
    "default_distance_dim",
    "read_pink",
    "read_pink_data",
    "read_pink_som",
    "read_pink_mapping",
    "read_pink_rot_flip",
    "write_pink_data",
    "write_pink_som",
    "write_pink_mapping",
    "write_pink_rot_flip",
    "PinkMapping",
    "PinkRotFlip",
    "plot_prototypes",
    "plot_hit_counts",
    "plot_umatrix",
    "plot_errors",
    "umatrix",
    "write_som_mapping",
    "read_som_mapping",
    "som_mapping_names",
    "som_outliers",
    "plot_outliers",
]
