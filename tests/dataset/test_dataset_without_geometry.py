"""A dataset version without cutout geometry (not written by ``hipsml extract``), and out-of-range cutout indices.

The version is written here by hand with zarr: 6 two-channel 4x4 cutouts, no ``geometry`` in
its attributes. ``to_fits`` writes the pixels without a WCS and says so; ``wcs`` refuses in one
line naming the dataset; an index past the end is an :class:`IndexOutOfRangeError` everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.wcs import WCS

import hipsml
from hipsml.errors import IndexOutOfRangeError, InvalidInputError
from hipsml.extract import CutoutResult, write_cutout_fits
from hipsml.extract._output import cutout_header


def make_bare_dataset(root, *, n: int = 6, size: int = 4) -> hipsml.Dataset:
    images = np.arange(n * 2 * size * size, dtype=np.float32).reshape(n, 2, size, size)
    images[0, 1, 0, 0] = np.nan
    group = zarr.open_group(root / "v1", mode="w", zarr_format=3)
    group.create_array("images", data=images, chunks=(n, 2, size, size))
    group.create_array("label", data=np.array([0, 1] * (n // 2), np.int64), chunks=(n,)).attrs["names"] = ["a", "b"]
    group.create_array("split", data=np.zeros(n, np.int8), chunks=(n,)).attrs["names"] = ["train"]
    group.create_array("id", data=np.arange(100, 100 + n, dtype=np.int64), chunks=(n,))
    group.create_array("ra", data=np.linspace(10.0, 11.0, n), chunks=(n,))
    group.create_array("dec", data=np.linspace(-5.0, -4.0, n), chunks=(n,))
    group.attrs["hipsml"] = {
        "complete": True,
        "version": 1,
        "hash": "bare-1",
        "count": n,
        "channels": ["g", "r"],
        "name": "bare",
    }
    return hipsml.open_dataset(root)


def test_to_fits_writes_the_pixels_without_a_wcs_and_says_so(tmp_path):
    ds = make_bare_dataset(tmp_path / "bare")
    paths = ds.to_fits([0, -1], tmp_path / "fits")
    assert [p.name for p in paths] == ["bare-100.fits", "bare-105.fits"]
    with fits.open(paths[0]) as hdul:
        data, header = hdul[0].data, hdul[0].header
    assert np.array_equal(data, ds.images[0], equal_nan=True)
    assert "no WCS" in str(header["COMMENT"])
    assert header["CHANNEL2"] == "r" and header["OBJECT"] == "100" and header["LABEL"] == "a"
    assert header["DSROW"] == 0 and header["DSHASH"] == "bare-1"
    assert not WCS(header).has_celestial
    with fits.open(paths[1]) as hdul:
        assert hdul[0].header["DSROW"] == 5 and np.array_equal(hdul[0].data, ds.images[5])


def test_wcs_without_geometry_is_one_line_naming_the_dataset(tmp_path):
    ds = make_bare_dataset(tmp_path / "bare")
    with pytest.raises(InvalidInputError, match="records no cutout geometry") as info:
        ds.wcs(0)
    assert str(ds.location) in str(info.value) and "\n" not in str(info.value)
    assert not isinstance(info.value, KeyError)


def test_an_index_past_the_end_is_an_index_out_of_range_error(tmp_path):
    ds = make_bare_dataset(tmp_path / "bare")
    for bad in (6, -7):
        with pytest.raises(IndexOutOfRangeError, match=f"cutout index {bad} is out of range for 6 cutouts"):
            ds.wcs(bad)
    with pytest.raises(InvalidInputError, match="must be an integer") as info:
        ds.wcs("1")
    assert not isinstance(info.value, IndexError)
    result = CutoutResult(
        images=np.zeros((2, 1, 4, 4), np.float32),
        ra=np.array([1.0, 2.0]),
        dec=np.array([0.0, 0.0]),
        rotation=np.zeros(2),
        size=4,
        pixel_scale=1.0,
        projection="TAN",
        interpolation="nearest",
        orders=(3,),
        channels=("g",),
        surveys=("sky/g",),
    )
    assert cutout_header(result, -1)["CRVAL1"] == 2.0  # in range: fine
    with pytest.raises(IndexOutOfRangeError, match="out of range for a result of 2 cutouts"):
        cutout_header(result, 2)
    with pytest.raises(IndexError):
        write_cutout_fits(tmp_path / "x.fits", result, -3)
    assert not (tmp_path / "x.fits").exists()
