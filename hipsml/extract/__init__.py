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
    UnitExtractor,
    WorkUnit,
    channel_names,
    choose_order,
    cutouts,
    extract_unit,
    normalise_coords,
    normalise_rotation,
    plan_work_units,
)
from hipsml.extract._geometry import check_field_of_view, check_rotation, check_sky_position, cutout_wcs, target_bases
from hipsml.extract._output import (
    asinh_levels,
    output_format,
    paint_missing,
    write_cutout,
    write_cutout_fits,
    write_cutout_npy,
    write_cutout_png,
)
from hipsml.extract._surveys import SurveyRef, open_cached, resolve_surveys

__all__ = [
    "asinh_levels",
    "channel_names",
    "check_field_of_view",
    "check_rotation",
    "check_sky_position",
    "choose_order",
    "cutout_wcs",
    "CutoutResult",
    "cutouts",
    "CutoutSpec",
    "extract_unit",
    "normalise_coords",
    "normalise_rotation",
    "open_cached",
    "output_format",
    "paint_missing",
    "plan_work_units",
    "resolve_surveys",
    "SurveyRef",
    "target_bases",
    "UnitExtractor",
    "WorkUnit",
    "write_cutout",
    "write_cutout_fits",
    "write_cutout_npy",
    "write_cutout_png",
]
