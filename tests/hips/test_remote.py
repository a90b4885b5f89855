"""Live checks against a real public HiPS server (skipped by default: ``pytest -m remote_data``)."""

from __future__ import annotations

import numpy as np
import pytest

import hipsml

pytestmark = pytest.mark.remote_data

DSS = "https://alasky.cds.unistra.fr/DSS/DSS2Merged"


def test_open_real_survey_and_cut_m31(tmp_path):
    survey = hipsml.open_survey(DSS, cache_dir=tmp_path)
    assert survey.order >= 9 and survey.frame == "icrs"
    res = hipsml.cutouts(survey, ([10.6847], [41.2690]), size=64, pixel_scale=20.0)
    assert res.mask.all()
    # M31's bulge is far brighter than the cutout corners
    img = res.images[0, 0]
    assert img[28:36, 28:36].mean() > 1.5 * np.median(img[:8, :8])
    # nearest-cell cutouts hold exact tile values: the cell under the centre pixel
    import healpy as hp

    near = hipsml.cutouts(survey, ([10.6847], [41.2690]), size=1, pixel_scale=20.0, interpolation="nearest")
    order = near.orders[0]
    s = survey.tile_width.bit_length() - 1
    cell = hp.ang2pix(1 << (order + s), 10.6847, 41.2690, lonlat=True, nest=True)
    tile = survey.read_tile(order, int(cell >> (2 * s)))
    local = int(cell & ((1 << (2 * s)) - 1))
    x = sum(((local >> (2 * b)) & 1) << b for b in range(s))
    y = sum(((local >> (2 * b + 1)) & 1) << b for b in range(s))
    assert near.images[0, 0, 0, 0] == tile[0, survey.tile_width - 1 - x, y]
