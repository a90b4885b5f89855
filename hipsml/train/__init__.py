"""Training on hipsml datasets: the data loaders shared by the SOM and the CNN.

- :func:`zarr_batches`: shuffled batches of a dataset split, read whole chunk by whole chunk,
  normalised and prefetched in background threads;
- :func:`sky_batches`: batches cut afresh from the HiPS tiles every epoch, at random rotations
  (exact augmentation by reprojection), with the same interface;
- normalisations (:func:`parse_normalisation`, :func:`minmax`, :func:`asinh_stretch`,
  :func:`percentile_clip`, :func:`standardise` with :func:`channel_stats`, :func:`fill_nan`),
  pure numpy functions on batches.

The loaders yield numpy arrays; hand them to JAX or PyTorch in your own loop
(:func:`device_prefetch` overlaps the copy to a JAX device with the training step).
"""

from hipsml.train._loader import Batch, EpochPlan, ZarrBatches, device_prefetch, plan_epoch, zarr_batches
from hipsml.train._normalise import (
    NORMALISATIONS,
    ChannelStats,
    Normalisation,
    asinh_stretch,
    channel_stats,
    fill_nan,
    minmax,
    parse_normalisation,
    percentile_clip,
    standardise,
)
from hipsml.train._sky_source import SkyAugmentation, SkyBatches, sky_batches

__all__ = [
    "NORMALISATIONS",
    "Batch",
    "ChannelStats",
    "EpochPlan",
    "Normalisation",
    "SkyAugmentation",
    "SkyBatches",
    "ZarrBatches",
    "asinh_stretch",
    "channel_stats",
    "device_prefetch",
    "fill_nan",
    "minmax",
    "parse_normalisation",
    "percentile_clip",
    "sky_batches",
    "plan_epoch",
    "standardise",
    "zarr_batches",
]
