"""HiPS surveys: properties, tile addressing and HEALPix mapping, decoding, fetching and caching.

The names below are the public interface of this subpackage; other hipsml subpackages
import them from here, never from the private ``_x`` modules.
"""

from hipsml.hips._decode import decode_tile
from hipsml.hips._formats import FORMAT_EXTENSIONS, TILE_FORMATS, canonical_format
from hipsml.hips._frames import COORDSYS, FRAME_ALIASES, HIPS_FRAME_NAMES, canonical_frame, icrs_to_frame
from hipsml.hips._healpix import deinterleave_bits, interleave_bits, log2_width, tile_path, tile_pixel_indices
from hipsml.hips._moc import Moc
from hipsml.hips._properties import MAX_TILE_WIDTH, HipsProperties, parse_properties
from hipsml.hips._survey import HipsSurvey, open_survey

__all__ = [
    "COORDSYS",
    "FORMAT_EXTENSIONS",
    "FRAME_ALIASES",
    "HIPS_FRAME_NAMES",
    "MAX_TILE_WIDTH",
    "TILE_FORMATS",
    "HipsSurvey",
    "HipsProperties",
    "Moc",
    "canonical_format",
    "canonical_frame",
    "decode_tile",
    "deinterleave_bits",
    "icrs_to_frame",
    "interleave_bits",
    "log2_width",
    "open_survey",
    "parse_properties",
    "tile_path",
    "tile_pixel_indices",
]
