"""The cutout engine: exact, seamless, multi-survey cutouts from HiPS tiles."""

from hipsml.extract._cutouts import CutoutResult, choose_order, cutouts
from hipsml.extract._geometry import cutout_wcs
from hipsml.extract._output import write_cutout, write_cutout_fits, write_cutout_npy, write_cutout_png

__all__ = [
    "cutouts",
    "cutout_wcs",
    "CutoutResult",
    "choose_order",
    "write_cutout",
    "write_cutout_fits",
    "write_cutout_npy",
    "write_cutout_png",
]
