"""The cutout engine: exact, seamless, multi-survey cutouts from HiPS tiles.

:func:`cutouts` is the one-call entry point. Its pieces, for running the engine from
Dask tasks: :class:`CutoutSpec` (validated once), :func:`plan_work_units` (pure, NESTED
order, tile-compact), :func:`extract_unit` (fills a block; :class:`UnitExtractor` cuts unit
after unit keeping the decoded tiles), :class:`SurveyRef` (a survey description opened once per
worker process).
"""

from hipsml.extract._cutouts import (
    CutoutResult,
    CutoutSpec,
    WorkUnit,
    channel_names,
    choose_order,
    cutouts,
    extract_unit,
    UnitExtractor,
    plan_work_units,
)
from hipsml.extract._geometry import cutout_wcs
from hipsml.extract._output import (
    asinh_levels,
    output_format,
    paint_missing,
    write_cutout,
    write_cutout_fits,
    write_cutout_npy,
    write_cutout_png,
)
from hipsml.extract._surveys import SurveyRef, open_cached

__all__ = [
    "cutouts",
    "cutout_wcs",
    "CutoutResult",
    "CutoutSpec",
    "SurveyRef",
    "UnitExtractor",
    "WorkUnit",
    "channel_names",
    "choose_order",
    "extract_unit",
    "open_cached",
    "paint_missing",
    "plan_work_units",
    "asinh_levels",
    "output_format",
    "write_cutout",
    "write_cutout_fits",
    "write_cutout_npy",
    "write_cutout_png",
]
