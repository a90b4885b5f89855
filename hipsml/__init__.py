"""hipsml: machine-learning training sets from HiPS sky surveys.

The public API a notebook user calls:

- :func:`open_survey` opens a HiPS survey (local directory, ``file://`` or ``http(s)://``).
- :func:`cutouts` turns HiPS tiles into exact, seamless cutouts around many targets.
- :func:`cutout_wcs` is the astropy WCS of one such cutout.
- :func:`extract_dataset` builds a versioned Zarr training set from a recipe (on Dask);
  :func:`open_dataset` opens one (checking it), :func:`verify_dataset` hashes it against its
  manifest; :func:`load_recipe` validates a recipe file.
- :func:`train_som` trains a rotation- and flip-invariant SOM (PINK's algorithm, JAX);
  :func:`load_som` and :func:`read_pink` read SOMs back; :func:`train_cnn` trains a CNN
  classifier, :func:`load_cnn` loads one and :func:`predict_cnn` writes its class probabilities
  beside a dataset version (imported on first use). The two take the same call shapes (see
  :mod:`hipsml.train`). ``hipsml.predict`` is the deprecated old name of :func:`predict_cnn`.

Subpackages: :mod:`hipsml.hips` (tile layer), :mod:`hipsml.extract` (cutout engine),
:mod:`hipsml.dataset` (recipes, versioned datasets), :mod:`hipsml.sky` (synthetic labelled surveys),
:mod:`hipsml.errors`.
"""

from hipsml import errors
from hipsml.dataset import Dataset, extract_dataset, load_recipe, open_dataset, verify_dataset
from hipsml.errors import HipsmlError
from hipsml.extract import CutoutResult, CutoutSpec, cutout_wcs, cutouts
from hipsml.hips import HipsSurvey, open_survey

__version__ = "0.1.0"

#: training names, imported on first use (importing JAX takes a while)
_TRAIN_NAMES = (
    "train_som", "load_som", "read_pink", "SOM", "SOMConfig", "SOMMapping", "som_outliers",
    "write_som_mapping", "read_som_mapping", "som_mapping_names", "EpochRecord",
    "train_cnn", "predict_cnn", "load_cnn", "CNN", "CNNConfig", "CNNPredictions",
    "read_cnn_predictions", "cnn_prediction_names",
)  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _TRAIN_NAMES:
        from hipsml import train

        return getattr(train, name)
    if name == "predict":  # the old name of predict_cnn
        import warnings

        from hipsml import train

        warnings.warn("hipsml.predict is deprecated; call hipsml.predict_cnn", DeprecationWarning, stacklevel=2)
        return train.predict_cnn
    raise AttributeError(f"module 'hipsml' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the training names (listed without importing them, so without JAX)."""
    return sorted(set(globals()) | set(_TRAIN_NAMES))


__all__ = [
    "CutoutResult",
    "CutoutSpec",
    "Dataset",
    "HipsSurvey",
    "HipsmlError",
    "cutout_wcs",
    "cutouts",
    "errors",
    "extract_dataset",
    "load_recipe",
    "open_dataset",
    "open_survey",
    "verify_dataset",
    *_TRAIN_NAMES,
    "__version__",
]
