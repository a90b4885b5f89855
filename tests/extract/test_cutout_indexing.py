"""``CutoutResult[i]``: one cutout's (image, mask); ``CutoutResult[a:b]``: a smaller result."""

from __future__ import annotations

import numpy as np
import pytest

import hipsml
from hipsml.errors import IndexOutOfRangeError, InvalidInputError
from hipsml.sky import render_function_hips


def _field(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.cos(np.radians(dec)) * np.sin(3.0 * np.radians(ra)) + 0.01 * dec


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> hipsml.CutoutResult:
    root = render_function_hips(tmp_path_factory.mktemp("idx") / "s", _field, order=3, tile_width=64,
                                region=(30.0, 10.0, 3.0))  # fmt: skip
    survey = hipsml.open_survey(root)
    # the third target is off the survey: its mask is all False
    return hipsml.cutouts(survey, ([29.0, 31.0, 200.0], [9.0, 11.0, -40.0]), size=16, pixel_scale=60.0,
                          rotation=[0.0, 30.0, 0.0])  # fmt: skip


def test_an_integer_gives_that_cutouts_image_and_mask(result: hipsml.CutoutResult) -> None:
    image, mask = result[1]
    assert image.shape == mask.shape == (1, 16, 16)
    assert np.array_equal(image, result.images[1], equal_nan=True) and np.array_equal(mask, result.mask[1])
    assert mask.all()
    last_image, last_mask = result[-1]  # counts from the end: the target off the survey
    assert not last_mask.any() and np.isnan(last_image).all()
    assert np.array_equal(result[np.int64(0)][0], result.images[0])


def test_a_slice_gives_a_result_of_those_cutouts(result: hipsml.CutoutResult) -> None:
    part = result[1:]
    assert isinstance(part, hipsml.CutoutResult)
    assert part.images.shape == (2, 1, 16, 16)
    assert part.ra.tolist() == [31.0, 200.0] and part.dec.tolist() == [11.0, -40.0]
    assert part.rotation.tolist() == [30.0, 0.0]
    images, mask = part
    assert np.array_equal(images, result.images[1:], equal_nan=True) and mask[0].all() and not mask[1].any()
    # the geometry travels with the cutouts: the WCS of part[0] is that of result's cutout 1
    assert np.allclose(part.wcs(0).wcs.cd, result.wcs(1).wcs.cd) and part.wcs(0).wcs.crval.tolist() == [31.0, 11.0]
    assert result[::-1].ra.tolist() == [200.0, 31.0, 29.0]
    assert result[5:].images.shape == (0, 1, 16, 16)


def test_out_of_range_and_bad_indices(result: hipsml.CutoutResult) -> None:
    for bad in (3, -4):
        with pytest.raises(IndexOutOfRangeError, match=rf"cutout index {bad} is out of range for 3 cutouts"):
            result[bad]
    with pytest.raises(IndexError):  # an IndexError for code that does not know hipsml
        result[3]
    for bad in ("0", 1.0, True, [0, 1]):
        with pytest.raises(InvalidInputError, match="cutout index must be an integer or a slice"):
            result[bad]
    with pytest.raises(InvalidInputError, match="out of range"):  # wcs() shares the check
        result.wcs(7)
