"""Accuracy figures of the cutout engine, printed (the tests assert the same quantities).

- bilinear error against an analytic sky ``f`` held at HEALPix cell centres, per order, inside
  faces and where the face grid has a kink (polar-cap face edges, poles, cap/belt transition);
- nearest-cell agreement with an independent astropy WCS + healpy reference, on a synthetic
  survey and on the real Planck HFI 143 GHz sample tiles when ``../shared`` is present.

Usage::

    python benchmarks/accuracy_cutouts.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import healpy as hp
import numpy as np

import hipsml
from hipsml.sky import render_function_hips

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cutout_reference import TileReader, pixel_centres_in_frame, reference_nearest
from test_cutouts import smooth, to_icrs, wiggly

INNER = [(10.0, 20.0), (45.0, 60.0), (135.0, -41.81), (45.0, 0.0), (200.0, -30.0)]
KINKS = [(200.0, 89.0), (77.0, -88.5), (90.5, 80.0), (0.0, 41.8103149)]


FACE_INTERIORS = [(10.0, 20.0), (200.0, -30.0), (100.0, -20.0)]


def bilinear_error(root: Path, korder: int, targets, interpolation: str = "bilinear") -> tuple[float, float]:
    survey = hipsml.open_survey(root)
    ra, dec = np.array(targets).T
    res = hipsml.cutouts(survey, (ra, dec), size=32, fov=4 * 3600.0, order=korder, interpolation=interpolation)
    errs = []
    for n in range(ra.size):
        lon, lat = pixel_centres_in_frame(ra[n], dec[n], 32, 4 * 3600.0 / 32, "icrs")
        errs.append(np.abs(res.images[n, 0] - smooth(lon, lat)).ravel())
    e = np.concatenate(errs)
    return float(e.max()), float(np.median(e))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print("bilinear |cutout - f| for f = cos 3x + sin(2y + z) + xz (range ~4), 64-pixel tiles, 4 deg cutouts")
        print(
            f"{'order':>5} {'cell arcsec':>11} {'inside faces: max':>18} {'median':>9} {'kinks: max':>11} {'median':>9}"
        )
        roots: dict[int, Path] = {}
        for k in (2, 3, 4, 5):
            root = render_function_hips(Path(tmp) / f"s{k}", smooth, order=k, tile_width=64, order_min=k)
            cell = np.degrees(np.sqrt(4 * np.pi / (12 * 4 ** (k + 6)))) * 3600
            imax, imed = bilinear_error(root, k, INNER)
            kmax, kmed = bilinear_error(root, k, KINKS)
            print(f"{k:>5} {cell:>11.1f} {imax:>18.2e} {imed:>9.1e} {kmax:>11.2e} {kmed:>9.1e}")
            roots[k] = root
        print("bicubic vs bilinear, max |cutout - f| on cutouts inside faces (away from face edges and |z| = 2/3)")
        for k, root in roots.items():
            bl, _ = bilinear_error(root, k, FACE_INTERIORS)
            bc, _ = bilinear_error(root, k, FACE_INTERIORS, "bicubic")
            print(f"{k:>5}  bilinear {bl:.2e}  bicubic {bc:.2e}")

        total = agree = 0
        for frame, k, w, rot in [("icrs", 3, 64, 0.0), ("galactic", 2, 256, 30.0), ("ecliptic", 4, 64, -75.0)]:
            root = render_function_hips(Path(tmp) / f"w{frame}", wiggly, order=k, tile_width=w, frame=frame)
            survey = hipsml.open_survey(root)
            reader = TileReader(root, k, w)
            cell = np.degrees(np.sqrt(4 * np.pi / (12 * 4 ** (k + w.bit_length() - 1)))) * 3600
            rng = np.random.default_rng(k)
            places = [(0.0, 90.0), (45.0, 0.0), (0.0, 41.8103149), (90.0, -41.8103149)]
            places += list(zip(rng.uniform(0, 360, 20), np.degrees(np.arcsin(rng.uniform(-1, 1, 20))), strict=True))
            ra, dec = np.array([to_icrs(lo, la, frame) for lo, la in places]).T
            res = hipsml.cutouts(
                survey, (ra, dec), size=48, pixel_scale=0.7 * cell, rotation=rot, interpolation="nearest", order=k
            )
            for n in range(ra.size):
                ref, _ = reference_nearest(reader, frame, ra[n], dec[n], 48, 0.7 * cell, rot)
                agree += int(np.sum(res.images[n, 0] == ref.astype(np.float32)))
                total += ref.size
        print(
            f"nearest vs astropy WCS + healpy reference (synthetic, 3 frames, poles and face corners): "
            f"{100 * agree / total:.4f}% of {total:,} pixels identical"
        )

    samples = Path(__file__).resolve().parents[2] / "shared" / "data" / "hips-samples" / "Planck-HFI143"
    if samples.is_dir():
        survey = hipsml.open_survey(samples)
        reader = TileReader(samples, 3, 256)
        present = sorted(int(p.stem[4:]) for p in (samples / "Norder3" / "Dir0").glob("Npix*.fits"))
        ra, dec = [], []
        for npix in present:
            lon, lat = hp.pix2ang(8, npix, nest=True, lonlat=True)
            r, d = to_icrs(lon + 1.0, lat + 1.0, "galactic")
            ra.append(r)
            dec.append(d)
        cell = 3600 * np.degrees(np.sqrt(4 * np.pi / (12 * 4**11)))
        res = hipsml.cutouts(
            survey,
            (np.array(ra), np.array(dec)),
            size=64,
            pixel_scale=0.8 * cell,
            interpolation="nearest",
            rotation=20.0,
        )
        total = agree = 0
        for n in range(len(ra)):
            ref, _ = reference_nearest(reader, "galactic", ra[n], dec[n], 64, 0.8 * cell, 20.0)
            same = (res.images[n, 0] == ref.astype(np.float32)) | (np.isnan(ref) & np.isnan(res.images[n, 0]))
            agree += int(same.sum())
            total += ref.size
        print(
            f"nearest vs reference on the real Planck HFI143 tiles (galactic, W=256, unpadded FITS): "
            f"{100 * agree / total:.4f}% of {total:,} pixels identical"
        )


if __name__ == "__main__":
    main()
