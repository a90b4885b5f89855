"""The ``hipsml demo`` job: a synthetic labelled sky, cut into a labelled training array.

:func:`run_demo` renders (or reuses) a small seeded synthetic sky with
:func:`hipsml.sky.make_sky`, opens every band as a HiPS survey, cuts one multi-band
cutout around every catalogue source in a single multi-survey call, and writes the
array, its labels and a PNG mosaic. It is a command-line job, so it prints its report.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hipsml._files import atomic_write_bytes, user_path
from hipsml.errors import InvalidInputError, OutputError

if TYPE_CHECKING:  # pragma: no cover
    from hipsml.sky import SyntheticSky

__all__ = ["run_demo", "DEMO_SKY"]

logger = logging.getLogger(__name__)

#: the demo sky: make_sky arguments (the README's first command renders exactly this)
DEMO_SKY: dict[str, Any] = {
    "n_sources": 400,
    "seed": 0,
    "order": 8,
    "tile_width": 256,
    "center": (150.0, 2.0),
    "radius": 0.3,
}

_EXAMPLES_PER_CLASS = 4


def _existing_sky(root: Path, *, n_sources: int, seed: int, order: int, tile_width: int) -> SyntheticSky | None:
    """The complete sky already at ``root`` when it was rendered with these arguments, else None.

    make_sky publishes a sky by renaming a finished staging folder, so a catalogue and
    a ``properties`` file per band mean a complete sky. A different sky there is refused
    rather than overwritten.
    """
    from astropy.table import Table

    from hipsml.sky import SyntheticSky
    from hipsml.sky._make import CLASSES

    cat_path = root / "catalogue.ecsv"
    if not cat_path.is_file():
        return None
    try:
        table = Table.read(cat_path, format="ascii.ecsv")
    except (OSError, ValueError) as exc:
        reason = str(exc).rstrip(". ")
        raise InvalidInputError(
            f"cannot read the demo catalogue {cat_path}: {reason}; remove {root} to re-render"
        ) from None
    meta = table.meta
    bands = list(meta.get("bands", []))
    wanted = {"seed": seed, "order": order, "tile_width": tile_width, "rows": n_sources}
    found = {k: meta.get(k) for k in ("seed", "order", "tile_width")} | {"rows": len(table)}
    complete = bool(bands) and all((root / b / "properties").is_file() for b in bands)
    if found != wanted or not complete:
        raise InvalidInputError(
            f"{root} holds a different or incomplete sky ({found}, expected {wanted}); "
            "remove it or choose another demo directory"
        )
    n_files, n_bytes = 0, 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            n_bytes += os.path.getsize(os.path.join(dirpath, name))
            n_files += name.endswith(".fits") and name.startswith("Npix")
    labels = np.asarray(table["class"]).astype(str)
    return SyntheticSky(
        root=root.absolute(),
        band_paths={b: (root / b).absolute() for b in bands},
        catalogue_path=cat_path.absolute(),
        order=int(meta["order"]),
        tile_width=int(meta["tile_width"]),
        frame=str(meta.get("frame", "icrs")),
        seed=int(meta["seed"]),
        class_counts={c: int(np.count_nonzero(labels == c)) for c in CLASSES},
        tiles_written=n_files,
        bytes_on_disk=n_bytes,
    )


def _write_labels(path: Path, ids: np.ndarray, ra: np.ndarray, dec: np.ndarray, labels: np.ndarray) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id", "ra", "dec", "class"])
    for row in zip(ids.tolist(), ra.tolist(), dec.tolist(), labels.tolist()):
        writer.writerow([row[0], f"{row[1]:.8f}", f"{row[2]:.8f}", row[3]])
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))


def _pick_examples(labels: np.ndarray, covered: np.ndarray, classes: tuple[str, ...], k: int) -> dict[str, list[int]]:
    """Up to ``k`` cutouts of each class, fully covered ones first, in catalogue order."""
    picks: dict[str, list[int]] = {}
    for name in classes:
        rows = np.flatnonzero(labels == name)
        ranked = np.concatenate([rows[covered[rows]], rows[~covered[rows]]])
        picks[name] = ranked[:k].tolist()
    return picks


def write_mosaic(
    path: Path, images: np.ndarray, picks: dict[str, list[int]], bands: list[str], *, per_class: int
) -> tuple[int, int]:
    """Write a labelled PNG mosaic: one row per class, ``per_class`` examples, one panel per band.

    Each band is stretched with :func:`~hipsml.extract._output.asinh_stretch` using limits
    shared by all its panels (so panels of a band compare), north up. Returns ``(width, height)``.
    """
    from PIL import Image, ImageDraw, ImageFont

    from hipsml.extract._output import asinh_stretch

    size = images.shape[-1]
    nb = len(bands)
    gap, group_gap, left, top = 2, 10, 96, 30
    group_w = nb * size + (nb - 1) * gap
    width = left + per_class * group_w + (per_class - 1) * group_gap + gap
    height = top + len(picks) * (size + group_gap)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    chosen = [i for rows in picks.values() for i in rows]
    limits = []
    for b in range(nb):
        values = images[chosen, b] if chosen else np.zeros(1)
        finite = values[np.isfinite(values)]
        lo, hi = np.percentile(finite, (1.0, 99.8)) if finite.size else (0.0, 1.0)
        limits.append((float(lo), float(hi)))
    for e in range(per_class):
        for b, name in enumerate(bands):
            x = left + e * (group_w + group_gap) + b * (size + gap) + 2
            draw.text((x, 8), name, fill=(220, 220, 220), font=font)
    for r, (name, rows) in enumerate(picks.items()):
        y = top + r * (size + group_gap)
        draw.text((6, y + size // 2 - 6), name, fill=(220, 220, 220), font=font)
        for e, i in enumerate(rows):
            for b in range(nb):
                panel = asinh_stretch(images[i, b : b + 1], limits=[limits[b]], softening=0.05)[0, ::-1]
                x = left + e * (group_w + group_gap) + b * (size + gap)
                canvas.paste(Image.fromarray(np.ascontiguousarray(panel), mode="L"), (x, y))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return width, height


def run_demo(
    directory: str | os.PathLike[str],
    *,
    progress: bool = True,
    report: bool = True,
    n_sources: int = DEMO_SKY["n_sources"],
    seed: int = DEMO_SKY["seed"],
    order: int = DEMO_SKY["order"],
    tile_width: int = DEMO_SKY["tile_width"],
    radius: float = DEMO_SKY["radius"],
    size: int = 64,
) -> dict[str, Any]:
    """Render the demo sky and turn it into a labelled multi-band cutout array.

    Steps: render a seeded synthetic sky into ``directory/sky`` with
    :func:`hipsml.sky.make_sky` (or reuse the complete sky already there); open each band
    survey; cut ``size`` x ``size`` bilinear TAN cutouts around every catalogue source from
    all bands in one call, at the sky's cell scale; write

    - ``cutouts.npy``: float32 ``(N, C, size, size)``, channels in band order, row 0 south;
    - ``cutouts_labels.csv``: ``id, ra, dec, class``, one row per cutout, same order;
    - ``mosaic.png``: four examples of each class, one row per class, one panel per band.

    Parameters
    ----------
    directory : str or os.PathLike
        Output folder (created when missing).
    progress : bool
        Show progress bars.
    report : bool
        Print what is done and a summary (the ``hipsml demo`` command's output).
    n_sources, seed, order, tile_width, radius
        The synthetic sky (defaults: :data:`DEMO_SKY`); smaller values make a quick test.
    size : int
        Cutout width in pixels.

    Returns
    -------
    dict
        ``sky`` (:class:`~hipsml.sky.SyntheticSky`), ``sky_reused`` (bool), ``n_cutouts``,
        ``shape``, ``channels``, ``pixel_scale`` (arcsec), ``covered_fraction``,
        ``sky_seconds``, ``warmup_seconds`` (loading or compiling the kernels, excluded from
        the rate), ``cutout_seconds``, ``rate`` (cutouts/s), ``tiles_read`` and
        ``files`` (name -> path of ``cutouts``, ``labels``, ``mosaic``).

    Examples
    --------
    >>> report = run_demo("demo-output", progress=False)  # doctest: +SKIP
    >>> report["shape"]  # doctest: +SKIP
    (400, 4, 64, 64)
    """
    from hipsml import open_survey
    from hipsml.extract import cutouts
    from hipsml.extract._output import check_output_file, write_npy
    from hipsml.sky import make_sky
    from hipsml.sky._make import CLASSES

    out = user_path(directory, what="demo directory")
    # before any work: every output can be created (the folder is not a file, its name
    # fits the file system, its parent is writable)
    for name in ("cutouts.npy", "cutouts_labels.csv", "mosaic.png"):
        check_output_file(out / name, what="demo directory", probe=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the demo directory {out}: {exc.strerror or exc}") from None

    def say(text: str) -> None:
        if report:
            print(text, flush=True)

    t0 = time.perf_counter()
    sky = _existing_sky(out / "sky", n_sources=n_sources, seed=seed, order=order, tile_width=tile_width)
    reused = sky is not None
    if sky is None:
        say(f"rendering the demo sky into {out / 'sky'} ...")
        sky = make_sky(
            out / "sky",
            n_sources=n_sources,
            seed=seed,
            order=order,
            tile_width=tile_width,
            center=DEMO_SKY["center"],
            radius=radius,
            progress=progress,
        )
    else:
        say(f"reusing the demo sky already in {sky.root}")
    t_sky = time.perf_counter() - t0
    say(sky.summary())

    catalogue = sky.catalogue()
    ra = np.asarray(catalogue["ra"], dtype=np.float64)
    dec = np.asarray(catalogue["dec"], dtype=np.float64)
    labels = np.asarray(catalogue["class"]).astype(str)
    ids = np.asarray(catalogue["id"], dtype=np.int64)
    bands = list(sky.band_paths)
    surveys = [open_survey(sky.band_paths[b]) for b in bands]

    # load the compiled kernels once (numba's on-disk cache) so the timing below is the work
    t_warm = time.perf_counter()
    if ra.size:
        cutouts(surveys, (ra[:1], dec[:1]), size=size, pixel_scale=sky.pixel_scale_arcsec)
    for survey in surveys:
        survey.clear_cache()
    t_warm = time.perf_counter() - t_warm
    logger.info("kernel warm-up in %.2f s", t_warm)

    t1 = time.perf_counter()
    result = cutouts(
        surveys, (ra, dec), size=size, pixel_scale=sky.pixel_scale_arcsec, interpolation="bilinear", progress=progress
    )
    t_cut = time.perf_counter() - t1
    n = result.images.shape[0]
    rate = n / t_cut if t_cut > 0 else float("inf")
    logger.info("%d cutouts in %.3f s (%.0f/s), %d tiles read", n, t_cut, rate, result.tiles_read)

    files = {"cutouts": out / "cutouts.npy", "labels": out / "cutouts_labels.csv", "mosaic": out / "mosaic.png"}
    write_npy(files["cutouts"], result.images)
    _write_labels(files["labels"], ids, ra, dec, labels)
    covered = result.mask.reshape(n, -1).all(axis=1) if n else np.zeros(0, dtype=bool)
    picks = _pick_examples(labels, covered, CLASSES, _EXAMPLES_PER_CLASS)
    mosaic_size = write_mosaic(files["mosaic"], result.images, picks, bands, per_class=_EXAMPLES_PER_CLASS)

    covered_fraction = float(result.mask.mean()) if n else 0.0
    say(
        "\n".join(
            [
                f"cutouts: {n} x {len(bands)} bands ({', '.join(bands)}) of {size} x {size} pixels at "
                f"{result.pixel_scale:.3f} arcsec/pixel, bilinear TAN, HiPS order "
                f"{', '.join(str(k) for k in sorted(set(result.orders)))}",
                f"  array {tuple(result.images.shape)} float32, {covered_fraction * 100:.2f}% of pixels covered, "
                f"{int(covered.sum())} cutouts fully covered",
                f"  {t_cut:.2f} s, {rate:,.0f} cutouts/s ({n * len(bands) / max(t_cut, 1e-9):,.0f} single-band "
                f"images/s), {result.tiles_read} tiles read",
                f"sky {'reused' if reused else 'rendered'} in {t_sky:.2f} s; kernel load/compile {t_warm:.2f} s "
                f"(not in the rate; compiled once per install); total {time.perf_counter() - t0:.2f} s",
                "files written:",
                f"  {files['cutouts']}  (N, C, H, W) float32, row 0 south",
                f"  {files['labels']}  id, ra, dec, class",
                f"  {files['mosaic']}  {mosaic_size[0]} x {mosaic_size[1]}: {_EXAMPLES_PER_CLASS} examples per class "
                "(rows), one panel per band, north up",
            ]
            + (
                [
                    "next: a colour cutout of the first source, north up:",
                    "  hipsml cutout "
                    + " ".join(f"--hips {shlex.quote(str(sky.band_paths[b]))}" for b in ("i", "r", "g"))
                    + f" --ra {ra[0]:.5f} --dec {dec[0]:.5f} --size 128 --out source0.png",
                ]
                if n and {"g", "r", "i"} <= set(bands)
                else []
            )
        )
    )
    return {
        "sky": sky,
        "sky_reused": reused,
        "n_cutouts": n,
        "shape": tuple(result.images.shape),
        "channels": result.channels,
        "pixel_scale": result.pixel_scale,
        "covered_fraction": covered_fraction,
        "sky_seconds": t_sky,
        "cutout_seconds": t_cut,
        "warmup_seconds": t_warm,
        "rate": rate,
        "tiles_read": result.tiles_read,
        "files": files,
    }
