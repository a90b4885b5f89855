"""Versioned Zarr training sets from recipes: extract on Dask, reproducible splits, full provenance.

- :func:`extract_dataset` builds (or finds) the version a recipe describes;
- :func:`open_dataset` opens a published version (:class:`Dataset`), checking it cheaply;
- :func:`verify_dataset` hashes every file of a version against its manifest;
- :func:`load_recipe` validates a YAML recipe into a :class:`Recipe`;
- :func:`assign_splits` is the split function, reusable on any keys;
- :func:`as_dataset` turns a Dataset or a ``"PATH[@vN]"`` into a Dataset (every training entry point uses it);
- results derived from a version (SOM mappings, CNN predictions) live in
  ``DATASET/derived/vN/<kind>/<name>``: :func:`derived_folder`, :func:`derived_names`.
"""

from hipsml.dataset._build import BuildReport, extract_dataset
from hipsml.dataset._dataset import (
    Dataset,
    as_dataset,
    is_dataset_like,
    open_dataset,
    parse_dataset_path,
    verify_dataset,
)
from hipsml.dataset._derived import (
    DERIVED_KINDS,
    check_derived_name,
    derived_folder,
    derived_names,
    derived_provenance,
    open_derived,
    publish_derived,
)
from hipsml.dataset._integrity import VerifyReport
from hipsml.dataset._pictures import ChannelView, channel_labels, display_stretch, select_channels
from hipsml.dataset._preview import draw_mosaic, png_bytes, preview_dataset
from hipsml.dataset._recipe import Recipe, load_recipe, parse_recipe
from hipsml.dataset._splits import assign_splits, split_keys
from hipsml.dataset._store import VERSIONS_FILE, dataset_versions, hipsml_attrs, read_versions, version_problem
from hipsml.dataset._targets import TargetTable, load_targets

__all__ = [
    "as_dataset",
    "assign_splits",
    "BuildReport",
    "channel_labels",
    "ChannelView",
    "check_derived_name",
    "Dataset",
    "dataset_versions",
    "derived_folder",
    "DERIVED_KINDS",
    "derived_names",
    "derived_provenance",
    "display_stretch",
    "draw_mosaic",
    "extract_dataset",
    "hipsml_attrs",
    "is_dataset_like",
    "load_recipe",
    "load_targets",
    "open_dataset",
    "open_derived",
    "parse_dataset_path",
    "parse_recipe",
    "png_bytes",
    "preview_dataset",
    "publish_derived",
    "read_versions",
    "Recipe",
    "select_channels",
    "split_keys",
    "TargetTable",
    "verify_dataset",
    "VerifyReport",
    "version_problem",
    "VERSIONS_FILE",
]
