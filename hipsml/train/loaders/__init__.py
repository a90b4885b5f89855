"""Data loaders shared by the SOM and the CNN: shuffled Zarr batches, batches cut afresh from the
sky, the normalisations (pure numpy functions on batches), and a PyTorch adapter
(:func:`torch_dataset`, torch imported on first call)."""

from hipsml.train.loaders._normalise import (
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
from hipsml.train.loaders._sky import SkyAugmentation, SkyBatches, sky_batches
from hipsml.train.loaders._torch import shard_blocks, torch_dataset
from hipsml.train.loaders._zarr import Batch, EpochPlan, ZarrBatches, device_prefetch, plan_epoch, zarr_batches

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
    "plan_epoch",
    "shard_blocks",
    "sky_batches",
    "standardise",
    "torch_dataset",
    "zarr_batches",
]
