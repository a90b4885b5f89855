"""A deterministic, seeded, labelled multi-band synthetic sky written as real HiPS surveys.

The sky is a function of position: every pixel of every band is the sum of a smooth
background, the source profiles and a noise term, all evaluated at the pixel's HEALPix
cell centre at the max order (the noise is a hash of ``(seed, band, cell)``), so tiles
agree wherever they are computed and the sky is continuous across tile and face edges.
Lower orders are the mean of their four children (``hips_hierarchy = mean``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import healpy as hp
import numpy as np

from hipsml.errors import InvalidInputError
from hipsml.hips import deinterleave_bits, interleave_bits, tile_pixel_indices
from hipsml.sky import _sources as src
from hipsml.sky._render import _check_width, select_tiles, survey_properties
from hipsml.sky._write import (
    SurveyFrame,
    check_target,
    directory_size,
    parse_formats,
    parse_frame,
    pixel_cut,
    staged_directory,
    write_fits_tile,
    write_moc,
    write_png_tile,
    write_properties,
)

__all__ = ["Band", "BANDS", "CLASSES", "SyntheticSky", "make_sky"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Band:
    """One band of the synthetic sky.

    Attributes
    ----------
    name : str
        Band name (also the survey folder name).
    regime : str
        ``"optical"`` or ``"radio"`` (``obs_regime`` of the survey).
    background : float
        Mean background level (pixel units).
    gradient : float
        Fractional background change per radian along :attr:`gradient_axis`.
    noise : float
        Standard deviation of the per-cell Gaussian noise.
    psf_fwhm : float
        PSF (radio: beam) FWHM in cells.
    index : int
        Fixed index used to key the noise of the band (stable whatever bands are chosen).
    """

    name: str
    regime: str
    background: float
    gradient: float
    noise: float
    psf_fwhm: float
    index: int
    gradient_axis: tuple[float, float, float] = (0.6, 0.48, 0.64)


BANDS: Mapping[str, Band] = {
    "g": Band("g", "optical", 20.0, 0.4, 1.0, 2.2, 0, (0.6, 0.48, 0.64)),
    "r": Band("r", "optical", 30.0, 0.4, 1.0, 2.0, 1, (0.48, 0.64, 0.6)),
    "i": Band("i", "optical", 40.0, 0.4, 1.2, 1.9, 2, (0.64, 0.6, 0.48)),
    "z": Band("z", "optical", 50.0, 0.4, 1.5, 1.8, 3, (0.0, 0.8, 0.6)),
    "radio": Band("radio", "radio", 0.0, 0.0, 0.5, 2.5, 4, (0.8, 0.0, 0.6)),
}
"""The bands :func:`make_sky` knows; the default is ``g``, ``r``, ``i`` and ``radio``."""

DEFAULT_BANDS = ("g", "r", "i", "radio")
CLASSES = ("star", "elliptical", "disk", "radio_double")
_CLASS_P = (0.35, 0.2, 0.35, 0.1)
_MOFFAT_BETA = 4.765
# optical colours (magnitudes, relative to r) and their spread per class
_COLOURS = {"star": (0.6, 0.3, 0.5), "elliptical": (0.8, 0.4, 0.1), "disk": (0.45, 0.2, 0.15)}


@dataclass(frozen=True)
class SyntheticSky:
    """A synthetic sky on disk: one HiPS per band and a labelled catalogue.

    Attributes
    ----------
    root : pathlib.Path
        Folder holding the surveys and ``catalogue.ecsv``.
    band_paths : dict
        Band name -> HiPS directory.
    catalogue_path : pathlib.Path
        The ECSV catalogue (one row per source, with its class label).
    order, tile_width, frame, seed : int, int, str, int
        How the sky was rendered.
    class_counts : dict
        Number of sources per class.
    tiles_written : int
        Number of FITS tiles written over all bands and orders.
    bytes_on_disk : int
        Total size of the files under :attr:`root`.
    """

    root: Path
    band_paths: dict[str, Path]
    catalogue_path: Path
    order: int = 0
    tile_width: int = 0
    frame: str = "icrs"
    seed: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    tiles_written: int = 0
    bytes_on_disk: int = 0

    @property
    def pixel_scale_arcsec(self) -> float:
        """Size of a max-order cell (the pixel), arcsec."""
        s = int(self.tile_width).bit_length() - 1
        return math.degrees(hp.nside2resol(1 << (self.order + s))) * 3600.0

    def catalogue(self):  # -> astropy.table.Table
        """Read the catalogue as an :class:`astropy.table.Table`."""
        from astropy.table import Table

        return Table.read(self.catalogue_path, format="ascii.ecsv")

    def summary(self) -> str:
        """A few lines describing the sky.

        Examples
        --------
        >>> sky = SyntheticSky(Path("sky"), {"r": Path("sky/r")}, Path("sky/catalogue.ecsv"), 8, 256)
        >>> sky.summary().splitlines()[0]
        'synthetic sky at sky'
        """
        counts = ", ".join(f"{k} {v}" for k, v in self.class_counts.items())
        n = sum(self.class_counts.values())
        return "\n".join(
            [
                f"synthetic sky at {self.root}",
                f"  bands: {', '.join(self.band_paths)} (one HiPS each), frame {self.frame}, seed {self.seed}",
                f"  sources: {n} ({counts})",
                f"  order {self.order}, tile width {self.tile_width}, pixel scale {self.pixel_scale_arcsec:.3f} arcsec",
                f"  tiles written: {self.tiles_written}, bytes on disk: {self.bytes_on_disk:,}",
                f"  catalogue: {self.catalogue_path}",
            ]
        )


def _check_args(n_sources, seed, order, tile_width, center, radius, bands) -> tuple[int, tuple[str, ...]]:
    if isinstance(n_sources, bool) or not isinstance(n_sources, (int, np.integer)) or n_sources < 0:
        raise InvalidInputError(f"n_sources must be a non-negative integer; got {n_sources!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer; got {seed!r}")
    s = _check_width(tile_width)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= 29 - s:
        raise InvalidInputError(f"order must be an integer in 0..{29 - s} for tile width {tile_width}; got {order!r}")
    try:
        ra, dec = (float(v) for v in center)
    except (TypeError, ValueError):
        raise InvalidInputError(f"center must be (ra_deg, dec_deg); got {center!r}") from None
    if not (math.isfinite(ra) and abs(ra) <= 1e6 and -90.0 <= dec <= 90.0):  # as hipsml.extract's positions
        raise InvalidInputError(f"center must have a finite RA (|ra| <= 1e6) and -90 <= dec <= 90; got {center!r}")
    if not isinstance(radius, (int, float, np.floating, np.integer)) or not 0.0 < float(radius) <= 90.0:
        raise InvalidInputError(f"radius must be in (0, 90] degrees; got {radius!r}")
    names = tuple(DEFAULT_BANDS if bands is None else ([bands] if isinstance(bands, str) else bands))
    if not names:
        raise InvalidInputError("bands must name at least one band")
    for b in names:
        if b not in BANDS:
            raise InvalidInputError(f"bands: unknown band {b!r}; expected some of {', '.join(BANDS)}")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"bands must not repeat; got {names!r}")
    return s, names


# ---------------------------------------------------------------------------------------------
# sources


def _unit(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _tangent_basis(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """East and north unit vectors at ICRS unit vectors ``vec`` (``(n, 3)``)."""
    ra = np.arctan2(vec[:, 1], vec[:, 0])
    dec = np.arcsin(np.clip(vec[:, 2], -1.0, 1.0))
    east = np.stack([-np.sin(ra), np.cos(ra), np.zeros_like(ra)], axis=-1)
    north = np.stack([-np.sin(dec) * np.cos(ra), -np.sin(dec) * np.sin(ra), np.cos(dec)], axis=-1)
    return east, north


def _to_radec(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 360.0
    dec = np.degrees(np.arcsin(np.clip(vec[:, 2], -1.0, 1.0)))
    return ra, dec


def _draw_catalogue(n: int, seed: int, center: tuple[float, float], radius: float, cell_arcsec: float) -> dict:
    """Draw the sources (always every band's flux, so bands do not change the sources)."""
    rng = np.random.default_rng(seed)
    # positions uniform in the cone
    cos_r = math.cos(math.radians(radius))
    cos_t = rng.uniform(cos_r, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    c = _unit(np.array([center[0]]), np.array([center[1]]))
    east, north = _tangent_basis(c)
    vec = cos_t[:, None] * c + sin_t[:, None] * (np.cos(phi)[:, None] * north + np.sin(phi)[:, None] * east)
    ra, dec = _to_radec(vec)
    cls = rng.choice(len(CLASSES), size=n, p=_CLASS_P)
    u = rng.uniform(size=(n, 12))
    nrm = rng.standard_normal(size=(n, 4))
    nan = np.full(n, np.nan)
    cat = {
        "id": np.arange(n, dtype=np.int64),
        "ra": ra,
        "dec": dec,
        "class": np.array([CLASSES[k] for k in cls], dtype=str) if n else np.zeros(0, dtype="U12"),
        "sersic_n": nan.copy(),
        "r_eff_arcsec": nan.copy(),
        "axis_ratio": np.ones(n),
        "position_angle_deg": np.zeros(n),
        "inclination_deg": nan.copy(),
        "lobe_separation_arcsec": nan.copy(),
        "lobe_flux_ratio": nan.copy(),
        "has_core": np.zeros(n, dtype=bool),
    }
    flux_r = np.zeros(n)
    flux_radio = np.zeros(n)
    star, ell, disk, rad = (cls == k for k in range(4))
    # stars: log-uniform flux, peak S/N ~ 8 to 1000
    flux_r[star] = 10 ** (1.6 + 2.2 * u[star, 0])
    # ellipticals: Sersic n ~ 4
    cat["sersic_n"][ell] = 3.5 + 1.0 * u[ell, 1]
    flux_r[ell] = 10 ** (2.4 + 1.6 * u[ell, 0])
    # disks: exponential (n ~ 1), axis ratio from inclination with intrinsic thickness 0.15
    cat["sersic_n"][disk] = 0.8 + 0.4 * u[disk, 1]
    flux_r[disk] = 10 ** (2.4 + 1.6 * u[disk, 0])
    cos_i = u[disk, 3]
    cat["inclination_deg"][disk] = np.degrees(np.arccos(cos_i))
    cat["axis_ratio"][disk] = np.sqrt(cos_i**2 * (1.0 - 0.15**2) + 0.15**2)
    # radio doubles: faint elliptical host, two lobes, a core for about half of them
    cat["sersic_n"][rad] = 4.0
    flux_r[rad] = 10 ** (1.4 + 0.6 * u[rad, 0])
    flux_radio[rad] = 10 ** (2.6 + 1.2 * u[rad, 4])
    cat["lobe_separation_arcsec"][rad] = (6.0 + 14.0 * u[rad, 5]) * cell_arcsec
    cat["lobe_flux_ratio"][rad] = 0.5 + 1.0 * u[rad, 6]
    cat["has_core"][rad] = u[rad, 7] < 0.5
    gal = ell | disk | rad
    r_eff_cells = np.where(rad, 1.5 + 1.0 * u[:, 8], 1.5 * (8.0 / 1.5) ** u[:, 8])
    cat["r_eff_arcsec"][gal] = r_eff_cells[gal] * cell_arcsec
    cat["axis_ratio"][ell | rad] = 0.55 + 0.45 * u[ell | rad, 9]
    cat["position_angle_deg"][~star] = 180.0 * u[~star, 10]
    # optical colours
    g_r = np.zeros(n)
    r_i = np.zeros(n)
    for k, name in enumerate(CLASSES[:3]):
        m = cls == k
        gr, ri, spread = _COLOURS[name]
        g_r[m] = gr + spread * nrm[m, 0]
        r_i[m] = ri + 0.5 * spread * nrm[m, 1]
    g_r[rad], r_i[rad] = 0.8 + 0.1 * nrm[rad, 0], 0.4 + 0.05 * nrm[rad, 1]
    i_z = 0.5 * r_i + 0.05 * nrm[:, 2]
    cat["flux_g"] = flux_r * 10 ** (-0.4 * g_r)
    cat["flux_r"] = flux_r
    cat["flux_i"] = flux_r * 10 ** (0.4 * r_i)
    cat["flux_z"] = cat["flux_i"] * 10 ** (0.4 * i_z)
    cat["flux_radio"] = flux_radio
    return cat


@dataclass
class _Components:
    """Flat arrays of profile components (a radio double gives up to four)."""

    source: np.ndarray
    vec: np.ndarray
    kind: np.ndarray
    flux: dict[str, np.ndarray]
    r_eff: np.ndarray  # cells (Sersic) or major sigma (Gaussian)
    n: np.ndarray  # Sersic index or minor sigma (Gaussian)
    q: np.ndarray
    pa: np.ndarray  # radians


def _components(cat: dict, cell_rad: float, band_names: Sequence[str]) -> _Components:
    """Split the sources into profile components with their total flux per band.

    star: one Moffat (optical); elliptical, disk: one Sérsic (optical); radio_double: a
    faint Sérsic host (optical), two Gaussian lobes at +-separation/2 along the position
    angle (radio) and, when ``has_core``, a Moffat core holding 10% of the radio flux.
    """
    n = len(cat["id"])
    vec = _unit(cat["ra"], cat["dec"])
    cls = cat["class"]
    pa = np.radians(cat["position_angle_deg"])
    cell_arcsec = math.degrees(cell_rad) * 3600.0
    r_eff = np.nan_to_num(cat["r_eff_arcsec"] / cell_arcsec, nan=1.0)
    sersic = np.nan_to_num(cat["sersic_n"], nan=1.0)
    parts: list[dict] = []
    optical = {b: cat[f"flux_{b}"] for b in BANDS if b != "radio"}
    zero = np.zeros(n)

    def part(mask, kind, vecs, fluxes, r1, r2, q, angle):
        idx = np.flatnonzero(mask)
        parts.append(
            {
                "source": idx,
                "vec": vecs[idx],
                "kind": np.full(idx.size, kind, dtype=np.int64),
                "flux": {b: fluxes[b][idx] for b in band_names},
                "r_eff": np.asarray(r1, dtype=np.float64)[idx] if np.ndim(r1) else np.full(idx.size, r1),
                "n": np.asarray(r2, dtype=np.float64)[idx] if np.ndim(r2) else np.full(idx.size, r2),
                "q": q[idx],
                "pa": angle[idx],
            }
        )

    opt_only = {**optical, "radio": zero}
    radio_only = {**{b: zero for b in optical}, "radio": cat["flux_radio"]}
    part(cls == "star", src.MOFFAT, vec, opt_only, 0.0, _MOFFAT_BETA, np.ones(n), pa)
    gal = (cls == "elliptical") | (cls == "disk") | (cls == "radio_double")
    part(gal, src.SERSIC, vec, opt_only, r_eff, sersic, cat["axis_ratio"], pa)
    rad = cls == "radio_double"
    sep = np.nan_to_num(cat["lobe_separation_arcsec"] / cell_arcsec, nan=0.0)
    ratio = np.nan_to_num(cat["lobe_flux_ratio"], nan=1.0)
    core = cat["has_core"]
    lobe_total = np.where(core, 0.9, 1.0) * cat["flux_radio"]
    east, north = _tangent_basis(vec)
    axis = np.sin(pa)[:, None] * east + np.cos(pa)[:, None] * north
    half = (0.5 * sep * cell_rad)[:, None]
    sig_u = 0.8 + 0.08 * sep
    for sign, share in ((1.0, ratio / (1.0 + ratio)), (-1.0, 1.0 / (1.0 + ratio))):
        lobe_vec = np.cos(half) * vec + sign * np.sin(half) * axis
        fl = {**{b: zero for b in optical}, "radio": lobe_total * share}
        part(rad, src.GAUSSIAN, lobe_vec, fl, sig_u, 0.6 * sig_u, np.ones(n), pa)
    part(
        rad & core, src.MOFFAT, vec, {**radio_only, "radio": 0.1 * cat["flux_radio"]}, 0.0, _MOFFAT_BETA, np.ones(n), pa
    )
    return _Components(
        source=np.concatenate([p["source"] for p in parts]),
        vec=np.concatenate([p["vec"] for p in parts]).reshape(-1, 3),
        kind=np.concatenate([p["kind"] for p in parts]),
        flux={b: np.concatenate([p["flux"][b] for p in parts]) for b in band_names},
        r_eff=np.concatenate([p["r_eff"] for p in parts]),
        n=np.concatenate([p["n"] for p in parts]),
        q=np.concatenate([p["q"] for p in parts]),
        pa=np.concatenate([p["pa"] for p in parts]),
    )


@dataclass
class _BandParams:
    """Per-band profile parameters of every component (arrays aligned with the components)."""

    amp: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    p3: np.ndarray
    q: np.ndarray
    soft: np.ndarray
    rmax: np.ndarray


def _band_params(comp: _Components, band: Band) -> _BandParams:
    flux = comp.flux[band.name]
    k = comp.kind
    m, s, g = k == src.MOFFAT, k == src.SERSIC, k == src.GAUSSIAN
    p1 = np.zeros(k.size)
    p2 = np.zeros(k.size)
    p3 = np.zeros(k.size)
    amp = np.zeros(k.size)
    soft = np.zeros(k.size)
    alpha = float(src.moffat_alpha(band.psf_fwhm, _MOFFAT_BETA))
    p1[m], p2[m] = alpha, _MOFFAT_BETA
    amp[m] = src.moffat_peak(flux[m], alpha, _MOFFAT_BETA)
    # PSF smoothing, approximately: widen both axes by the PSF sigma in quadrature and
    # soften the central cusp (evaluation stays at the cell centres)
    sig = band.psf_fwhm / 2.3548
    q = comp.q.copy()
    p1[s] = np.hypot(comp.r_eff[s], sig)
    q[s] = np.hypot(comp.q[s] * comp.r_eff[s], sig) / p1[s]
    p2[s] = comp.n[s]
    p3[s] = src.sersic_b(comp.n[s])
    soft[s] = 0.5 * sig
    amp[s] = src.sersic_ie(flux[s], p1[s], comp.n[s], q[s])
    beam = band.psf_fwhm / 2.3548
    p1[g] = np.hypot(comp.r_eff[g], beam)
    p2[g] = np.hypot(comp.n[g], beam)
    amp[g] = src.gaussian_peak(flux[g], p1[g], p2[g])
    rmax = src.footprint_radius(k, amp, p1, p2, p3, threshold=0.05 * band.noise)
    return _BandParams(amp, p1, p2, p3, q, soft, rmax)


# ---------------------------------------------------------------------------------------------
# tiles


def _assign_tiles(
    comp: _Components, rmax: np.ndarray, frame: SurveyFrame, order: int, s: int, tiles: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Face coordinates of each component and the (tile slot, component) pairs it touches."""
    cell_order = order + s
    nside = 1 << cell_order
    width = 1 << s
    fvec = frame.vectors_from_icrs(comp.vec)
    cell = hp.vec2pix(nside, fvec[:, 0], fvec[:, 1], fvec[:, 2], nest=True).astype(np.int64)
    face = cell >> (2 * cell_order)
    ix, iy = deinterleave_bits(cell - (face << (2 * cell_order)))
    own_tile = cell >> (2 * s)
    box = (1.6 * rmax).astype(np.int64) + 2
    lx, ly = ix % width, iy % width
    inside = (lx - box >= 0) & (lx + box < width) & (ly - box >= 0) & (ly + box < width)
    pair_tile = [own_tile[inside & (rmax > 0)]]
    pair_comp = [np.flatnonzero(inside & (rmax > 0))]
    cell_rad = hp.nside2resol(nside)
    for c in np.flatnonzero(~inside & (rmax > 0)):
        found = hp.query_disc(1 << order, fvec[c], 2.0 * (rmax[c] + 2.0) * cell_rad, inclusive=True, nest=True)
        pair_tile.append(found.astype(np.int64))
        pair_comp.append(np.full(found.size, c, dtype=np.int64))
    pt = np.concatenate(pair_tile)
    pc = np.concatenate(pair_comp)
    slot = np.searchsorted(tiles, pt)
    ok = (slot < tiles.size) & (tiles[np.minimum(slot, tiles.size - 1)] == pt)
    slot, pc = slot[ok], pc[ok]
    order_ = np.lexsort((pc, slot))
    return face, ix, iy, slot[order_], pc[order_]


def _background(band: Band, vec: np.ndarray) -> np.ndarray:
    """Smooth background of ``band`` at ICRS unit vectors ``vec`` (``(n, 3)``)."""
    axis = np.asarray(band.gradient_axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    return band.background * (1.0 + band.gradient * (vec @ axis))


def _parents(children: Mapping[int, np.ndarray], width: int) -> dict[int, np.ndarray]:
    """Mean-of-four parent tiles (flat NESTED order) of the given child tiles; NaN where no child."""
    out: dict[int, np.ndarray] = {}
    npx = width * width
    for parent in np.unique(np.fromiter(children, dtype=np.int64) >> 2):
        stack = np.full((4, npx), np.nan, dtype=np.float32)
        for c in range(4):
            child = children.get(int(parent) * 4 + c)
            if child is not None:
                stack[c] = child
        quad = stack.reshape(npx, 4)  # child c holds parent cells c*npx/4 .. (c+1)*npx/4 - 1
        finite = np.isfinite(quad)
        count = finite.sum(axis=1)
        total = np.where(finite, quad, 0.0).astype(np.float64).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[int(parent)] = np.where(count > 0, total / count, np.nan).astype(np.float32)
    return out


def make_sky(
    path: str | os.PathLike[str],
    *,
    n_sources: int = 2000,
    seed: int = 0,
    order: int = 8,
    tile_width: int = 256,
    frame: str = "icrs",
    center: tuple[float, float] = (150.0, 2.0),
    radius: float = 0.5,
    bands: Sequence[str] | None = None,
    formats: Sequence[str] = ("fits",),
    progress: bool = False,
    noise: bool = True,
    overwrite: bool = False,
    workers: int | None = None,
) -> SyntheticSky:
    """Render a seeded, labelled multi-band synthetic sky into one HiPS per band.

    Sources (``star``: Moffat PSF; ``elliptical``: Sérsic n ~ 4; ``disk``: inclined
    exponential; ``radio_double``: two Gaussian lobes with or without a core, seen in
    the radio band only, over a faint optical host) are drawn uniformly in the cone
    ``center``/``radius``. Each pixel is background + sources + noise evaluated at its
    max-order HEALPix cell centre; the noise is a hash of ``(seed, band, cell)``, so
    the sky is continuous across tiles. Lower orders are means of four children.
    Sizes are in cells: PSF FWHM ~2, galaxy ``r_eff`` 1.5-8, lobe separation 6-20.

    Parameters
    ----------
    path : str or os.PathLike
        Output folder: ``path/{band}`` (one HiPS each) and ``path/catalogue.ecsv``. Built
        in ``{path}.tmp-XXXX`` and renamed when complete; an existing non-empty folder is
        refused unless ``overwrite=True``.
    n_sources : int, optional
        Number of sources (default 2000).
    seed : int, optional
        Random seed: the same seed gives byte-identical tiles and catalogue.
    order : int, optional
        HiPS max order (default 8).
    tile_width : int, optional
        Tile width, a power of two (default 256); the pixel is the cell at ``order + log2(width)``.
    frame : {"icrs", "galactic", "ecliptic"}, optional
        HEALPix frame of the surveys (``ecliptic`` is astropy's BarycentricMeanEcliptic J2000).
    center : (ra, dec), optional
        ICRS centre of the region, degrees.
    radius : float, optional
        Region radius, degrees; the tiles overlapping it are written.
    bands : sequence of str, optional
        Some of :data:`BANDS` (default ``g, r, i, radio``).
    formats : sequence of str, optional
        ``("fits",)`` or ``("fits", "png")``.
    progress : bool, optional
        Show a tqdm progress bar over tiles.
    noise : bool, optional
        Add the per-cell noise (default True); False gives the noise-free model.
    overwrite : bool, optional
        Replace an existing non-empty ``path``.
    workers : int, optional
        Threads rendering tiles (default: the number of CPUs, at most 8).

    Returns
    -------
    SyntheticSky

    Examples
    --------
    >>> import tempfile, os
    >>> sky = make_sky(os.path.join(tempfile.mkdtemp(), "sky"), n_sources=20, order=5,
    ...                tile_width=32, radius=1.0, bands=["r", "radio"])
    >>> sorted(sky.band_paths)
    ['r', 'radio']
    """
    s, band_names = _check_args(n_sources, seed, order, tile_width, center, radius, bands)
    survey_frame = parse_frame(frame)
    fmts = parse_formats(formats)
    width = 1 << s
    target = check_target(path, overwrite=overwrite)
    cell_order = order + s
    cell_rad = hp.nside2resol(1 << cell_order)
    cell_arcsec = math.degrees(cell_rad) * 3600.0
    ra0, dec0 = (float(v) for v in center)
    plan = select_tiles(order, 0, survey_frame, region=(ra0, dec0, float(radius)))
    tiles = plan[order]
    logger.info(
        "synthetic sky: %d sources, %d tiles of %d x %d at order %d (pixel %.3f arcsec), bands %s",
        n_sources, tiles.size, width, width, order, cell_arcsec, ",".join(band_names),
    )  # fmt: skip

    t_start = time.perf_counter()
    cat = _draw_catalogue(int(n_sources), int(seed), (ra0, dec0), float(radius), cell_arcsec)
    comp = _components(cat, cell_rad, band_names)
    params = {b: _band_params(comp, BANDS[b]) for b in band_names}
    rmax_all = np.max(np.stack([params[b].rmax for b in band_names]), axis=0) if comp.kind.size else np.zeros(0)
    face, ix, iy, pair_slot, pair_comp = _assign_tiles(comp, rmax_all, survey_frame, order, s, tiles)
    bounds = np.searchsorted(pair_slot, np.arange(tiles.size + 1))
    east, north = _tangent_basis(comp.vec) if comp.kind.size else (np.zeros((0, 3)), np.zeros((0, 3)))
    cvec = np.ascontiguousarray(comp.vec, dtype=np.float64)
    sinpa, cospa = np.sin(comp.pa), np.cos(comp.pa)
    morton = interleave_bits(*np.meshgrid(np.arange(width), np.arange(width), indexing="ij"))
    perm = tile_pixel_indices(0, 0, width)
    keys = {b: src.noise_key(int(seed), BANDS[b].index) for b in band_names}
    tile_face = tiles >> (2 * order)
    txy = deinterleave_bits(tiles - (tile_face << (2 * order)))

    def render_tile(slot: int) -> dict[str, np.ndarray]:
        npix = int(tiles[slot])
        first = npix * width * width
        x, y, z = hp.pix2vec(1 << cell_order, np.arange(first, first + width * width, dtype=np.int64), nest=True)
        tvec = np.ascontiguousarray(survey_frame.vectors_to_icrs(np.stack([x, y, z], axis=-1)))
        comps = pair_comp[bounds[slot] : bounds[slot + 1]]
        out = {}
        for b in band_names:
            band, p = BANDS[b], params[b]
            img = _background(band, tvec)
            src.accumulate_components(
                img, tvec, morton, int(tile_face[slot]), int(txy[0][slot]) * width, int(txy[1][slot]) * width,
                comps, cvec, east, north, face, ix, iy, comp.kind, p.amp, p.p1, p.p2, p.p3, p.q,
                sinpa, cospa, p.soft, p.rmax, cell_rad,
            )  # fmt: skip
            if noise:
                src.add_cell_noise(img, first, keys[b], band.noise)
            out[b] = img.astype(np.float32)
        return out

    t_render = time.perf_counter()
    logger.info("prepared %d components (%d tile pairs) in %.2f s", comp.kind.size, pair_comp.size, t_render - t_start)
    flats: dict[str, dict[int, np.ndarray]] = {b: {} for b in band_names}
    n_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(tiles.size), desc="rendering tiles", unit="tile")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        for slot, result in enumerate(pool.map(render_tile, range(tiles.size))):
            for b in band_names:
                flats[b][int(tiles[slot])] = result[b]
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    t_write = time.perf_counter()
    logger.info("rendered %d tiles x %d bands in %.2f s", tiles.size, len(band_names), t_write - t_render)

    n_tiles = 0
    with staged_directory(target, overwrite=overwrite) as staging:
        for b in band_names:
            band = BANDS[b]
            broot = staging / b
            levels = {order: flats[b]}
            for k in range(order - 1, -1, -1):
                levels[k] = _parents(levels[k + 1], width)
            cut = pixel_cut(list(levels[order].values()))
            for k, level in levels.items():
                for npix, flat in level.items():
                    data = flat[perm]
                    write_fits_tile(broot, k, npix, data)
                    if "png" in fmts:
                        write_png_tile(broot, k, npix, data, cut)
                    n_tiles += 1
            fields = survey_properties(
                frame=survey_frame,
                order=order,
                order_min=0,
                tile_width=width,
                formats=fmts,
                bitpix=-32,
                title=f"hipsml synthetic sky, band {b} (seed {seed})",
                cut=cut,
                initial=(ra0 % 360.0, dec0, min(180.0, 2.0 * float(radius))),
                sky_fraction=tiles.size / (12 * 4**order),
                did_name=f"seed{seed}-n{n_sources}/{b}",
                extra={"hips_hierarchy": "mean", "obs_regime": band.regime.capitalize(), "hips_sampling": "none"},
            )
            write_properties(broot, fields)
            if tiles.size < 12 * 4**order:
                write_moc(broot, order, tiles, coordsys=survey_frame.coordsys)
        _write_catalogue(staging / "catalogue.ecsv", cat, band_names, seed=int(seed), order=order,
                         width=width, frame=survey_frame.name, cell_arcsec=cell_arcsec)  # fmt: skip
    counts = {name: int(np.count_nonzero(cat["class"] == name)) for name in CLASSES}
    _, size = directory_size(target)
    sky = SyntheticSky(
        root=target,
        band_paths={b: target / b for b in band_names},
        catalogue_path=target / "catalogue.ecsv",
        order=int(order),
        tile_width=width,
        frame=survey_frame.name,
        seed=int(seed),
        class_counts=counts,
        tiles_written=n_tiles,
        bytes_on_disk=size,
    )
    logger.info("wrote %d tiles, %d bytes under %s in %.2f s", n_tiles, size, target, time.perf_counter() - t_write)
    return sky


def _write_catalogue(
    dest: Path,
    cat: dict,
    band_names: Sequence[str],
    *,
    seed: int,
    order: int,
    width: int,
    frame: str,
    cell_arcsec: float,
) -> None:
    from astropy import units as u
    from astropy.table import Table

    from hipsml._files import atomic_write_bytes

    cols = ["id", "ra", "dec", "class"] + [f"flux_{b}" for b in band_names]
    cols += ["sersic_n", "r_eff_arcsec", "axis_ratio", "position_angle_deg", "inclination_deg"]
    cols += ["lobe_separation_arcsec", "lobe_flux_ratio", "has_core"]
    table = Table({c: cat[c] for c in cols})
    for c in ("ra", "dec", "position_angle_deg", "inclination_deg"):
        table[c].unit = u.deg
    for c in ("r_eff_arcsec", "lobe_separation_arcsec"):
        table[c].unit = u.arcsec
    table.meta.update(
        {
            "description": "hipsml synthetic sky: one row per source; fluxes are summed pixel values",
            "seed": seed,
            "order": order,
            "tile_width": width,
            "frame": frame,
            "pixel_scale_arcsec": round(cell_arcsec, 6),
            "bands": list(band_names),
            "psf_fwhm_arcsec": {b: round(BANDS[b].psf_fwhm * cell_arcsec, 6) for b in band_names},
        }
    )
    import io

    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    atomic_write_bytes(dest, buf.getvalue().encode("utf-8"))
