"""Synthetic labelled skies rendered directly into real HiPS directories (tests and demo).

- :func:`render_function_hips` renders an analytic function of sky position into a HiPS,
  each pixel holding the function at its HEALPix cell centre.
- :func:`make_sky` renders a seeded, labelled multi-band sky (stars, ellipticals, disks,
  radio doubles) into one HiPS per band plus ``catalogue.ecsv``.
"""

from hipsml.sky._make import BANDS, CLASSES, SyntheticSky, make_sky
from hipsml.sky._render import render_function_hips

__all__ = ["render_function_hips", "make_sky", "SyntheticSky", "BANDS", "CLASSES"]
