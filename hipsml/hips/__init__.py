"""HiPS surveys: properties, tile addressing and HEALPix mapping, decoding, fetching and caching."""

from hipsml.hips._healpix import tile_path, tile_pixel_indices

__all__ = ["tile_path", "tile_pixel_indices"]
