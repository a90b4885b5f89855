"""The ``hipsml demo`` job: a synthetic labelled sky, turned into a versioned training set.

:func:`run_demo` renders (or reuses) a small seeded synthetic sky with
:func:`hipsml.sky.make_sky`, writes the demo recipe beside it (the same recipe as
``recipes/demo.yaml``, with paths relative to the demo folder), runs
:func:`hipsml.extract_dataset` on it and draws a preview of the dataset. It is a
command-line job, so it prints its report.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hipsml._files import atomic_write_bytes, check_writable_file, user_path
from hipsml.errors import InvalidInputError, OutputError

if TYPE_CHECKING:  # pragma: no cover
    from hipsml.sky import SyntheticSky

__all__ = ["run_demo", "DEMO_SKY", "DEMO_RECIPE"]

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

#: the demo recipe, paths relative to the demo folder (``recipes/demo.yaml`` is the same recipe,
#: annotated, with paths relative to ``recipes/``: a test keeps the two in step)
DEMO_RECIPE = """\
name: demo
description: 64x64 cutouts of every source of the seeded synthetic sky in g, r, i and radio, labelled by class.
surveys:
  - {location: sky/g, name: g}
  - {location: sky/r, name: r}
  - {location: sky/i, name: i}
  - {location: sky/radio, name: radio}
targets:
  file: sky/catalogue.ecsv
  columns: {id: id, ra: ra, dec: dec, label: class}
  carry: [flux_r, flux_radio]
cutout: {size: 64, pixel_scale: 3.2, projection: TAN, interpolation: bilinear, rotation: 0}
splits: {scheme: healpix, order: 10, salt: demo, fractions: {train: 0.8, val: 0.1, test: 0.1}}
output: {path: datasets/demo, dtype: float32, compressor: lz4}
compute: {workers: 2, threads_per_worker: 1, scheduler: threads}
"""


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
) -> dict[str, Any]:
    """Render the demo sky and build the demo training set from it with the demo recipe.

    Steps: render a seeded synthetic sky into ``directory/sky`` with
    :func:`hipsml.sky.make_sky` (or reuse the complete sky already there); write
    ``directory/demo.yaml`` (:data:`DEMO_RECIPE`); run :func:`hipsml.extract_dataset` on it
    into ``directory/datasets/demo`` (an unchanged sky and recipe write nothing the second
    time); draw ``directory/preview.png``, four cutouts per split and class.

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

    Returns
    -------
    dict
        ``sky`` (:class:`~hipsml.sky.SyntheticSky`), ``sky_reused`` (bool), ``dataset``
        (:class:`~hipsml.Dataset`), ``sky_seconds``, ``extract_seconds`` and ``files``
        (name -> path of ``recipe``, ``dataset``, ``preview``).

    Examples
    --------
    >>> report = run_demo("demo-output", progress=False)  # doctest: +SKIP
    >>> report["dataset"].images.shape  # doctest: +SKIP
    (400, 4, 64, 64)
    """
    from hipsml.dataset import extract_dataset, preview_dataset
    from hipsml.sky import make_sky

    out = user_path(directory, what="demo directory")
    files = {"recipe": out / "demo.yaml", "dataset": out / "datasets" / "demo", "preview": out / "preview.png"}
    # before any work: every output can be created (the folder is not a file, its name
    # fits the file system, its parent is writable)
    for name in ("recipe", "preview"):
        check_writable_file(files[name], what="demo directory", probe=True)
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
            out / "sky", n_sources=n_sources, seed=seed, order=order, tile_width=tile_width,
            center=DEMO_SKY["center"], radius=radius, progress=progress,
        )  # fmt: skip
    else:
        say(f"reusing the demo sky already in {sky.root}")
    t_sky = time.perf_counter() - t0
    say(sky.summary())

    atomic_write_bytes(files["recipe"], DEMO_RECIPE.encode("utf-8"))
    say(f"\nextracting the demo dataset: hipsml extract {shlex.quote(str(files['recipe']))}")
    t1 = time.perf_counter()
    ds = extract_dataset(files["recipe"], progress=progress)
    t_extract = time.perf_counter() - t1
    say(ds.report.summary())
    preview_dataset(ds, files["preview"])
    counts = np.bincount(ds.column("split"), minlength=len(ds.split_names))
    say(
        "\n".join(
            [
                f"dataset: {files['dataset']} v{ds.version}: images {tuple(ds.images.shape)} {ds.images.dtype}, "
                f"channels {', '.join(ds.channels)}, classes {', '.join(ds.label_names or [])}",
                "  splits: " + ", ".join(f"{n} {c}" for n, c in zip(ds.split_names, counts.tolist())),
                f"  preview: {files['preview']} (four cutouts per split and class, one panel per band, north up)",
                "next:",
                "  python -c \"import hipsml; ds = hipsml.open_dataset('" + str(files["dataset"]) + "'); print(ds.table[:5])\"",
                "  hipsml datasets " + shlex.quote(str(files["dataset"])),
            ]
        )
    )
    return {
        "sky": sky,
        "sky_reused": reused,
        "dataset": ds,
        "sky_seconds": t_sky,
        "extract_seconds": t_extract,
        "files": files,
    }
