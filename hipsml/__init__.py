"""hipsml: machine-learning training sets from HiPS sky surveys.

The public API a notebook user calls:

- :func:`open_survey` opens a HiPS survey (local directory, ``file://`` or ``http(s)://``).
- :func:`cutouts` turns HiPS tiles into exact, seamless cutouts around many targets.
- :func:`cutout_wcs` is the astropy WCS of one such cutout.
- :func:`extract_dataset` builds a versioned Zarr training set from a recipe (on Dask);
  :func:`open_dataset` opens one; :func:`load_recipe` validates a recipe file.

Subpackages: :mod:`hipsml.hips` (tile layer), :mod:`hipsml.extract` (cutout engine),
:mod:`hipsml.dataset` (recipes, versioned datasets), :mod:`hipsml.sky` (synthetic labelled surveys), :mod:`hipsml.errors`.
"""

from hipsml import errors
from hipsml.dataset import Dataset, extract_dataset, load_recipe, open_dataset
from hipsml.errors import HipsmlError
from hipsml.extract import CutoutResult, CutoutSpec, cutout_wcs, cutouts
from hipsml.hips import HipsSurvey, open_survey

__version__ = "0.1.0"

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
    "__version__",
]
