"""hipsml: machine-learning training sets from HiPS sky surveys.

The public API a notebook user calls:

- :func:`open_survey` opens a HiPS survey (local directory, ``file://`` or ``http(s)://``).
- :func:`cutouts` turns HiPS tiles into exact, seamless cutouts around many targets.
- :func:`cutout_wcs` is the astropy WCS of one such cutout.

Subpackages: :mod:`hipsml.hips` (tile layer), :mod:`hipsml.extract` (cutout engine),
:mod:`hipsml.sky` (synthetic labelled surveys), :mod:`hipsml.errors`.
"""

from hipsml import errors
from hipsml.errors import HipsmlError
from hipsml.extract import CutoutResult, cutout_wcs, cutouts
from hipsml.hips import HipsSurvey, open_survey

__version__ = "0.1.0"

__all__ = [
    "CutoutResult",
    "HipsSurvey",
    "HipsmlError",
    "cutout_wcs",
    "cutouts",
    "errors",
    "open_survey",
    "__version__",
]
