"""The rotation- and flip-invariant SOM (PINK's algorithm in JAX): config, training, kernels,
transforms, layout, the mapping store beside dataset versions, outliers, pictures, PINK files
and the explorer page."""

from hipsml.train.som._config import SOMConfig, default_distance_dim, default_neuron_dim
from hipsml.train.som._explorer import check_explorer_folder, explorer_server, write_explorer
from hipsml.train.som._limits import check_som_memory, som_memory_estimate
from hipsml.train.som._outliers import plot_outliers, ranked_positions, som_outliers
from hipsml.train.som._pink import (
    PinkMapping,
    PinkRotFlip,
    pink_options,
    read_pink_data,
    read_pink_mapping,
    read_pink_rot_flip,
    write_pink_data,
    write_pink_mapping,
    write_pink_rot_flip,
    write_pink_som,
)
from hipsml.train.som._plots import (
    SOM_PICTURES,
    plot_errors,
    plot_hit_counts,
    plot_prototypes,
    plot_som_pictures,
    plot_umatrix,
    umatrix,
)
from hipsml.train.som._som import (
    SOM,
    EpochRecord,
    SOMMapping,
    load_som,
    read_pink,
    read_pink_som,
    train_som,
    training_summary,
)
from hipsml.train.som._store import read_som_mapping, som_mapping_names, stored_som_mapping, write_som_mapping

__all__ = [
    "SOMConfig",
    "SOM",
    "SOMMapping",
    "EpochRecord",
    "train_som",
    "training_summary",
    "load_som",
    "default_neuron_dim",
    "default_distance_dim",
    "read_pink",
    "pink_options",
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
    "write_explorer",
    "explorer_server",
    "check_explorer_folder",
    "check_som_memory",
    "som_memory_estimate",
    "ranked_positions",
    "SOM_PICTURES",
    "plot_som_pictures",
    "stored_som_mapping",
]
