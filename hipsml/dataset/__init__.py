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
from hipsml.dataset._dataset import Dataset, as_dataset, open_dataset, parse_dataset_path, verify_dataset
from hipsml.dataset._derived import derived_folder, derived_names
from hipsml.dataset._integrity import VerifyReport
from hipsml.dataset._preview import preview_dataset
from hipsml.dataset._recipe import Recipe, load_recipe, parse_recipe
from hipsml.dataset._splits import assign_splits, split_keys
from hipsml.dataset._store import read_versions
from hipsml.dataset._targets import TargetTable, load_targets

__all__ = [
    "BuildReport",
    "Dataset",
    "Recipe",
    "TargetTable",
    "VerifyReport",
    "as_dataset",
    "assign_splits",
    "derived_folder",
    "derived_names",
    "extract_dataset",
    "load_recipe",
    "load_targets",
    "open_dataset",
    "parse_dataset_path",
    "parse_recipe",
    "preview_dataset",
    "read_versions",
    "split_keys",
    "verify_dataset",
]
