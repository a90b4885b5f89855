"""HiPS surveys: properties, tile addressing and HEALPix mapping, decoding, fetching and caching."""

from hipsml.hips._decode import decode_tile
from hipsml.hips._healpix import tile_path, tile_pixel_indices
from hipsml.hips._moc import Moc
from hipsml.hips._properties import HipsProperties, parse_properties
from hipsml.hips._survey import HipsSurvey, open_survey

__all__ = [
    "HipsSurvey",
    "HipsProperties",
    "Moc",
    "decode_tile",
    "open_survey",
    "parse_properties",
    "tile_path",
    "tile_pixel_indices",
]
