"""Render an analytic function of sky position into a real HiPS directory.

Each HiPS cell (tile pixel) holds the function evaluated at the cell's HEALPix centre,
so the rendered sky is exactly known at every pixel: the reference for cutout tests.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import healpy as hp
import numpy as np

from hipsml.errors import InvalidInputError
from hipsml.hips import log2_width, tile_pixel_indices
from hipsml.sky._write import (
    SurveyFrame,
    check_target,
    parse_formats,
    parse_frame,
    pixel_cut,
    release_date,
    staged_directory,
    write_fits_tile,
    write_moc,
    write_png_tile,
    write_properties,
)

__all__ = ["render_function_hips", "select_tiles", "cell_centres_icrs", "survey_properties"]

logger = logging.getLogger(__name__)

SkyFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_order(order: int, order_min: int, width: int) -> int:
    s = log2_width(width)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= 29 - s:
        raise InvalidInputError(f"order must be an integer in 0..{29 - s} for tile width {width}; got {order!r}")
    if isinstance(order_min, bool) or not isinstance(order_min, (int, np.integer)) or not 0 <= order_min <= order:
        raise InvalidInputError(f"order_min must be an integer in 0..order ({order}); got {order_min!r}")
    return s


def _check_width(tile_width: int) -> int:
    if isinstance(tile_width, bool) or not isinstance(tile_width, (int, np.integer)):
        raise InvalidInputError(f"tile_width must be a power-of-two integer; got {tile_width!r}")
    try:
        return log2_width(int(tile_width))
    except InvalidInputError:
        raise InvalidInputError(f"tile_width must be a power of two; got {tile_width!r}") from None


def _radec_to_vec(ra_deg: float, dec_deg: float) -> np.ndarray:
    ra, dec = math.radians(ra_deg), math.radians(dec_deg)
    return np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])


def select_tiles(
    order: int,
    order_min: int,
    frame: SurveyFrame,
    *,
    region: tuple[float, float, float] | None = None,
    tiles: Iterable[int] | None = None,
) -> dict[int, np.ndarray]:
    """Tiles to write at each order ``order_min..order``: ``{order: sorted int64 indices}``.

    ``region=(ra, dec, radius_deg)`` (ICRS) keeps the tiles that overlap the cone
    (``healpy.query_disc`` inclusive, at each order); ``tiles`` lists the max-order tiles
    explicitly. Lower orders always include the parents of the max-order tiles.
    Neither gives the whole sky.
    """
    if region is not None and tiles is not None:
        raise InvalidInputError("give region or tiles, not both")
    out: dict[int, np.ndarray] = {}
    if tiles is not None:
        top = np.unique(np.asarray(list(tiles), dtype=np.int64))
        if top.size == 0 or top.min() < 0 or top.max() >= 12 * 4**order:
            raise InvalidInputError(f"tiles must be a non-empty list of indices in 0..{12 * 4**order - 1}")
        for k in range(order, order_min - 1, -1):
            out[k] = np.unique(top >> (2 * (order - k)))
        return out
    if region is None:
        return {k: np.arange(12 * 4**k, dtype=np.int64) for k in range(order_min, order + 1)}
    try:
        ra, dec, radius = (float(v) for v in region)
    except (TypeError, ValueError):
        raise InvalidInputError(f"region must be (ra_deg, dec_deg, radius_deg); got {region!r}") from None
    if not (np.isfinite(ra) and -90.0 <= dec <= 90.0 and 0.0 < radius <= 180.0):
        raise InvalidInputError(f"region must have -90 <= dec <= 90 and 0 < radius <= 180 deg; got {region!r}")
    vec = frame.vectors_from_icrs(_radec_to_vec(ra, dec))
    rad = math.radians(radius)
    for k in range(order, order_min - 1, -1):
        found = hp.query_disc(1 << k, vec, rad, inclusive=True, nest=True).astype(np.int64)
        if k < order:
            found = np.union1d(found, out[k + 1] >> 2)
        out[k] = np.unique(found)
    return out


def cell_centres_icrs(cell_order: int, cells: np.ndarray, frame: SurveyFrame) -> tuple[np.ndarray, np.ndarray]:
    """ICRS ``(ra_deg, dec_deg)`` of the centres of NESTED ``cells`` at ``cell_order`` in ``frame``."""
    x, y, z = hp.pix2vec(1 << cell_order, np.asarray(cells, dtype=np.int64).ravel(), nest=True)
    vec = frame.vectors_to_icrs(np.stack([x, y, z], axis=-1))
    ra = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(vec[:, 2], -1.0, 1.0)))
    shape = np.shape(cells)
    return ra.reshape(shape), dec.reshape(shape)


def survey_properties(
    *,
    frame: SurveyFrame,
    order: int,
    order_min: int,
    tile_width: int,
    formats: Sequence[str],
    bitpix: int,
    title: str,
    cut: tuple[float, float],
    initial: tuple[float, float, float],
    sky_fraction: float,
    did_name: str,
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The ``properties`` fields of a synthetic survey, in HiPS 1.4 order (plus legacy keys)."""
    s = log2_width(tile_width)
    pixel_scale = math.degrees(hp.nside2resol(1 << (order + s)))
    fields: dict[str, object] = {
        "creator_did": f"ivo://hipsml/P/synthetic/{did_name}",
        "obs_title": title,
        "dataproduct_type": "image",
        "hips_version": "1.4",
        "hips_release_date": release_date(),
        "hips_status": "public master clonableOnce",
        "hips_builder": "hipsml.sky",
        "hips_frame": frame.hips_frame,
        "hips_order": int(order),
        "hips_order_min": int(order_min),
        "hips_tile_width": int(tile_width),
        "hips_tile_format": " ".join(formats),
        "hips_pixel_bitpix": int(bitpix),
        "hips_pixel_cut": f"{cut[0]:.6g} {cut[1]:.6g}",
        "hips_pixel_scale": f"{pixel_scale:.6g}",
        "hips_initial_ra": f"{initial[0]:.6f}",
        "hips_initial_dec": f"{initial[1]:.6f}",
        "hips_initial_fov": f"{initial[2]:.6g}",
        "moc_sky_fraction": f"{sky_fraction:.6g}",
    }
    fields.update(extra or {})
    fields["coordsys"] = frame.coordsys
    fields["maxOrder"] = int(order)
    return fields


def render_function_hips(
    path: str | os.PathLike[str],
    func: SkyFunction,
    *,
    order: int,
    tile_width: int = 64,
    frame: str = "icrs",
    order_min: int = 0,
    region: tuple[float, float, float] | None = None,
    tiles: Iterable[int] | None = None,
    formats: Sequence[str] = ("fits",),
    bitpix: int = -32,
    title: str = "analytic sky",
    overwrite: bool = False,
) -> Path:
    """Render ``func(ra_deg, dec_deg)`` into a HiPS directory at ``path``.

    Every tile pixel holds ``func`` evaluated at the centre of its HEALPix cell
    (``healpy.pix2vec``, NESTED, at order ``k + log2(tile_width)``), the centre being
    converted from the survey ``frame`` to ICRS first. Each order ``order_min..order`` is
    evaluated at its own cell centres (not averaged). Tile element ``[row, col]`` follows
    :func:`hipsml.hips.tile_pixel_indices`.

    Parameters
    ----------
    path : str or os.PathLike
        Survey directory to create. It is built in ``{path}.tmp-XXXX`` and renamed when
        complete; an existing non-empty directory is refused unless ``overwrite=True``.
    func : callable
        ``func(ra_deg, dec_deg) -> array`` of ICRS positions (float64 arrays, RA in [0, 360)).
    order : int
        HiPS max order (``hips_order``).
    tile_width : int, optional
        Tile width, a power of two (default 64).
    frame : {"icrs", "galactic", "ecliptic"}, optional
        HEALPix frame of the survey. ``icrs`` is written as ``hips_frame = equatorial``;
        ``ecliptic`` is astropy's ``BarycentricMeanEcliptic`` (equinox J2000).
    order_min : int, optional
        Lowest order written (default 0).
    region : (ra, dec, radius_deg), optional
        ICRS cone: only the tiles overlapping it are written (``healpy.query_disc``
        inclusive at each order), and a ``Moc.fits`` of the max-order tiles is written.
    tiles : iterable of int, optional
        Explicit tile indices at ``order`` (their parents are written at lower orders).
    formats : sequence of str, optional
        ``("fits",)`` (default) or ``("fits", "png")``; PNG tiles are 8-bit, scaled by
        ``hips_pixel_cut`` and flipped vertically to display like the FITS tiles.
    bitpix : {-32, 16, 32}, optional
        FITS ``BITPIX``: float32 with NaN blanks, or integers with per-tile
        ``BSCALE``/``BZERO``/``BLANK``.
    title : str, optional
        ``obs_title``.
    overwrite : bool, optional
        Replace an existing non-empty ``path``.

    Returns
    -------
    pathlib.Path
        The published survey directory.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> root = render_function_hips(os.path.join(tempfile.mkdtemp(), "ramp"),
    ...                             lambda ra, dec: dec + 0.0 * ra, order=1, tile_width=8)
    >>> sorted(p.name for p in root.iterdir())
    ['Norder0', 'Norder1', 'properties']
    """
    s = _check_width(tile_width)
    _check_order(order, order_min, tile_width)
    survey_frame = parse_frame(frame)
    fmts = parse_formats(formats)
    if bitpix not in (-32, 16, 32):
        raise InvalidInputError(f"bitpix must be -32, 16 or 32; got {bitpix!r}")
    if not callable(func):
        raise InvalidInputError(f"func must be callable as func(ra_deg, dec_deg); got {func!r}")
    plan = select_tiles(order, order_min, survey_frame, region=region, tiles=tiles)
    target = check_target(path, overwrite=overwrite)
    width = 1 << s
    all_sky = plan[order].size == 12 * 4**order
    logger.info(
        "rendering %d max-order tiles (order %d, width %d, frame %s)", plan[order].size, order, width, survey_frame.name
    )

    def evaluate(k: int, npix: int) -> np.ndarray:
        cells = tile_pixel_indices(k, npix, width)
        ra, dec = cell_centres_icrs(k + s, cells, survey_frame)
        values = np.asarray(func(ra, dec), dtype=np.float64)
        if values.shape != cells.shape:
            values = np.broadcast_to(values, cells.shape)
        return values

    with staged_directory(target, overwrite=overwrite) as staging:
        top = {int(n): evaluate(order, int(n)) for n in plan[order]}
        cut = pixel_cut(top.values())
        for k in range(order, order_min - 1, -1):
            for n in plan[k]:
                data = top[int(n)] if k == order else evaluate(k, int(n))
                write_fits_tile(staging, k, int(n), data, bitpix=bitpix)
                if "png" in fmts:
                    write_png_tile(staging, k, int(n), data, cut)
        if region is not None:
            ra0, dec0, radius = (float(v) for v in region)
            initial = (ra0 % 360.0, dec0, min(180.0, 2.0 * radius))
        else:
            ra_c, dec_c = cell_centres_icrs(
                order, plan[order][len(plan[order]) // 2 : len(plan[order]) // 2 + 1], survey_frame
            )
            initial = (float(ra_c[0]), float(dec_c[0]), 180.0 if all_sky else 10.0)
        fields = survey_properties(
            frame=survey_frame,
            order=order,
            order_min=order_min,
            tile_width=width,
            formats=fmts,
            bitpix=bitpix,
            title=title,
            cut=cut,
            initial=initial,
            sky_fraction=plan[order].size / (12 * 4**order),
            did_name=target.name or "analytic",
        )
        write_properties(staging, fields)
        if not all_sky:
            write_moc(staging, order, plan[order], coordsys=survey_frame.coordsys)
    return target
