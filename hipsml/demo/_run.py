"""The ``hipsml demo`` job: a synthetic labelled sky, a versioned training set, a SOM, a CNN and a report.

:func:`run_demo` renders (or reuses) a small seeded synthetic sky with
:func:`hipsml.sky.make_sky`, writes the demo recipe beside it (the same recipe as
``recipes/demo.yaml``, with paths relative to the demo folder), runs
:func:`hipsml.extract_dataset` on it and draws a preview of the dataset; then it trains a SOM
and a CNN briefly (:mod:`hipsml.demo._steps`) and writes ``report/index.html`` with
:func:`hipsml.report.write_report` (the page of ``hipsml report``, with the demo's sky and
timings ahead of it, :mod:`hipsml.demo._report`). It is a command-line job, so it prints what it does.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hipsml._files import atomic_write_bytes, check_writable_file, user_path
from hipsml.errors import InvalidInputError, OutputError

if TYPE_CHECKING:  # pragma: no cover
    from hipsml.dataset import Dataset
    from hipsml.sky import SyntheticSky

__all__ = ["run_demo", "DEMO_SKY", "DEMO_RECIPE"]

logger = logging.getLogger(__name__)

#: the demo sky: make_sky arguments (2000 sources in a 0.8-degree cone: enough for the brief CNN to learn)
DEMO_SKY: dict[str, Any] = {
    "n_sources": 2000,
    "seed": 0,
    "order": 8,
    "tile_width": 256,
    "center": (150.0, 2.0),
    "radius": 0.8,
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

    from hipsml.sky import CLASSES, SyntheticSky

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


def _sky_step(
    out: Path, knobs: dict[str, Any], *, progress: bool, say: Callable[[str], None]
) -> tuple[SyntheticSky, bool]:
    """The demo sky in ``out/sky``: the complete one already there, else rendered now; and whether it was reused."""
    from hipsml.sky import make_sky

    sky = _existing_sky(out / "sky", **{k: knobs[k] for k in ("n_sources", "seed", "order", "tile_width")})
    if sky is not None:
        say(f"reusing the demo sky already in {sky.root}")
        return sky, True
    say(f"rendering the demo sky into {out / 'sky'} ...")
    sky = make_sky(out / "sky", center=DEMO_SKY["center"], progress=progress, **knobs)
    return sky, False


def _dataset_step(files: dict[str, Path], *, progress: bool, say: Callable[[str], None]) -> Dataset:
    """Write the demo recipe, extract it (an unchanged recipe and sky find their version) and draw the preview."""
    from hipsml.dataset import extract_dataset, preview_dataset

    atomic_write_bytes(files["recipe"], DEMO_RECIPE.encode("utf-8"))
    say(f"\nextracting the demo dataset: hipsml extract {shlex.quote(str(files['recipe']))}")
    ds = extract_dataset(files["recipe"], progress=progress)
    say(ds.report.summary())
    preview_dataset(ds, files["preview"])
    counts = np.bincount(ds.column("split"), minlength=len(ds.split_names))
    say(
        f"dataset: {files['dataset']} v{ds.version}: images {tuple(ds.images.shape)} {ds.images.dtype}, "
        f"channels {', '.join(ds.channels)}, classes {', '.join(ds.label_names or [])}\n"
        "  splits: " + ", ".join(f"{n} {c}" for n, c in zip(ds.split_names, counts.tolist(), strict=True)) + "\n"
        f"  preview: {files['preview']} (four cutouts per split and class, one panel per band, north up)"
    )
    return ds


def _demo_files(out: Path) -> dict[str, Path]:
    return {
        "recipe": out / "demo.yaml",
        "dataset": out / "datasets" / "demo",
        "preview": out / "preview.png",
        "som": out / "som",
        "cnn": out / "cnn",
        "report": out / "report",
    }


def _check_outputs(out: Path, files: dict[str, Path], *, train: bool) -> None:
    """Before any work: every output can be created (the folder is not a file, names fit, the parent is writable)."""
    from hipsml.demo._steps import check_step_folder
    from hipsml.report import check_report_folder

    for name in ("recipe", "preview"):
        check_writable_file(files[name], what="demo directory", probe=True)
    if train:
        check_step_folder(files["som"], "som.json", "SOM")
        check_step_folder(files["cnn"], "run.json", "CNN run")
        check_report_folder(files["report"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the demo directory {out}: {exc.strerror or exc}") from None


def run_demo(
    directory: str | os.PathLike[str],
    *,
    progress: bool = True,
    verbose: bool = True,
    train: bool = True,
    n_sources: int = DEMO_SKY["n_sources"],
    seed: int = DEMO_SKY["seed"],
    order: int = DEMO_SKY["order"],
    tile_width: int = DEMO_SKY["tile_width"],
    radius: float = DEMO_SKY["radius"],
    som_options: Mapping[str, Any] | None = None,
    cnn_options: Mapping[str, Any] | None = None,
    report: bool | None = None,
) -> dict[str, Any]:
    """Render the demo sky, build the demo training set, train a SOM and a CNN briefly and write a report.

    Steps: render a seeded synthetic sky into ``directory/sky`` with
    :func:`hipsml.sky.make_sky` (or reuse the complete sky already there); write
    ``directory/demo.yaml`` (:data:`DEMO_RECIPE`); run :func:`hipsml.extract_dataset` on it
    into ``directory/datasets/demo`` (an unchanged sky and recipe write nothing the second
    time); draw ``directory/preview.png``, four cutouts per split and class. Then, unless
    ``train`` is False: train a SOM on the train split into ``directory/som`` (its pictures
    beside it, its mapping of every cutout beside the dataset version), train a CNN into the
    run folder ``directory/cnn``, and write ``directory/report`` (``index.html`` with every
    figure, its summary and the command that makes it again, and the SOM explorer). A SOM or
    CNN folder made earlier with the same options from the same dataset version is reused;
    otherwise it is trained afresh and replaces the old one.

    Parameters
    ----------
    directory : str or os.PathLike
        Output folder (created when missing).
    progress : bool
        Show progress bars.
    verbose : bool
        Print what is done and a summary (the ``hipsml demo`` command's output). (``report=``, its
        old name, still works with a ``DeprecationWarning``: it never turned the report off.)
    train : bool
        Train the SOM and the CNN and write the report (False: stop after the preview).
    n_sources, seed, order, tile_width, radius
        The synthetic sky (defaults: :data:`DEMO_SKY`); smaller values make a quick test.
    som_options, cnn_options : mapping, optional
        SOM and CNN options (defaults: :data:`DEMO_SOM`, :data:`DEMO_CNN`); each must have a
        flag of ``hipsml som train`` / ``hipsml cnn train``, since the report prints the command.

    Returns
    -------
    dict
        ``sky`` (:class:`~hipsml.sky.SyntheticSky`), ``sky_reused`` (bool), ``dataset``
        (:class:`~hipsml.Dataset`), ``sky_seconds``, ``extract_seconds``, ``files`` (name -> path
        of ``recipe``, ``dataset``, ``preview``, ``som``, ``cnn``, ``report``) and, when trained,
        ``som`` (:class:`~hipsml.demo._steps.SomStep`), ``cnn`` (:class:`~hipsml.demo._steps.CnnStep`)
        and ``index`` (the report page).

    Raises
    ------
    OutputError
        An output cannot be written, or ``som``, ``cnn`` or ``report`` there holds something else.
    InvalidInputError
        ``directory/sky`` holds a different sky.

    Examples
    --------
    >>> result = run_demo("demo-output", progress=False)  # doctest: +SKIP
    >>> result["dataset"].images.shape, result["cnn"].metrics["test"]["accuracy"]  # doctest: +SKIP
    ((2000, 4, 64, 64), 0.95)
    """
    if report is not None:
        import warnings

        warnings.warn("run_demo(report=...) is deprecated: it only ever chose whether to print; write verbose=",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        verbose = report
    out = user_path(directory, what="demo directory")
    files = _demo_files(out)
    _check_outputs(out, files, train=train)

    def say(text: str) -> None:
        if verbose:
            print(text, flush=True)

    knobs = {"n_sources": n_sources, "seed": seed, "order": order, "tile_width": tile_width, "radius": radius}
    t0 = time.perf_counter()
    sky, reused = _sky_step(out, knobs, progress=progress, say=say)
    t_sky = time.perf_counter() - t0
    say(sky.summary())
    t1 = time.perf_counter()
    ds = _dataset_step(files, progress=progress, say=say)
    t_extract = time.perf_counter() - t1
    result: dict[str, Any] = {
        "sky": sky,
        "sky_reused": reused,
        "dataset": ds,
        "sky_seconds": t_sky,
        "extract_seconds": t_extract,
        "files": files,
    }
    if train:
        result.update(
            _train_and_report(
                out,
                str(directory),
                files,
                ds,
                sky,
                result,
                progress=progress,
                say=say,
                som_options=som_options,
                cnn_options=cnn_options,
            )
        )
    say(
        "next:\n"
        + next_commands(
            files["dataset"],
            som=files["som"] if train else None,
            cnn=files["cnn"] if train else None,
            report=files["report"],
        )
    )
    return result


def next_commands(
    dataset: Path, *, som: Path | None = None, cnn: Path | None = None, report: Path | None = None
) -> str:
    """The demo's closing hint: shell lines that open and list ``dataset``, quoted for any folder name.

    With ``som`` and ``cnn`` (the demo trained them) a third line writes their report page again
    into ``report`` with ``hipsml report``.
    """
    code = f"import hipsml; ds = hipsml.open_dataset({str(dataset)!r}); print(ds.table[:5])"
    lines = f"  python -c {shlex.quote(code)}\n  hipsml datasets {shlex.quote(str(dataset))}"
    if som is not None and cnn is not None and report is not None:
        lines += "\n  " + shlex.join(
            ["hipsml", "report", str(dataset), "--som", str(som), "--cnn", str(cnn), "--out", str(report)]
        )
    return lines


def _train_and_report(
    out: Path,
    shown: str,
    files: dict[str, Path],
    ds: Dataset,
    sky: SyntheticSky,
    done: dict[str, Any],
    *,
    progress: bool,
    say: Callable[[str], None],
    som_options: Mapping[str, Any] | None,
    cnn_options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The SOM, the CNN and the report of the demo (see :func:`run_demo`)."""
    from hipsml.demo._report import demo_intro
    from hipsml.demo._steps import DEMO_CNN, DEMO_SOM, cnn_step, som_step
    from hipsml.report import write_report

    arg = f"datasets/demo@v{ds.version}"
    t0 = time.perf_counter()
    som = som_step(ds, files["som"], DEMO_SOM if som_options is None else som_options, dataset_arg=arg,
                   progress=progress, say=say)  # fmt: skip
    t_som = time.perf_counter() - t0
    say(f"SOM: {som.folder} (pictures), mapping of {som.mapping.bmu.size} cutouts in {som.mapping_folder}")
    t1 = time.perf_counter()
    cnn = cnn_step(ds, files["cnn"], DEMO_CNN if cnn_options is None else cnn_options, dataset_arg=arg, say=say)
    t_cnn = time.perf_counter() - t1
    test = cnn.metrics.get("test") or cnn.metrics.get("val") or {}
    say(
        f"CNN: {cnn.folder}: {test.get('split', 'no test')} accuracy {test.get('accuracy', float('nan')):.3f} "
        f"on {test.get('count', 0)} cutouts"
    )
    timings = [
        ("sky", done["sky_seconds"], "reused" if done["sky_reused"] else "rendered"),
        ("dataset", done["extract_seconds"], "extracted, or found unchanged, and previewed"),
        ("SOM", t_som, f"reused (trained in {som.seconds:.1f} s)" if som.reused else "trained, mapped, drawn"),
        ("CNN", t_cnn, f"reused (trained in {cnn.seconds:.1f} s)" if cnn.reused else "trained, evaluated, drawn"),
    ]
    intro = demo_intro(shown, str(files["recipe"]), ds, sky, som, cnn, sum(t for _, t, _ in timings))
    index = write_report(
        ds,
        files["report"],
        som=files["som"],
        cnn=[files["cnn"]],
        title="hipsml demo report",
        intro=[intro],
        timings=timings,
    )
    say(f"report: {index} (open {index.resolve().as_uri()})")
    return {"som": som, "cnn": cnn, "index": index}
