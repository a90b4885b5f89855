"""The cutout engine: exact, seamless, multi-survey cutouts from HiPS tiles."""

from hipsml.extract._cutouts import CutoutResult, choose_order, cutouts
from hipsml.extract._geometry import cutout_wcs

__all__ = ["cutouts", "cutout_wcs", "CutoutResult", "choose_order"]
