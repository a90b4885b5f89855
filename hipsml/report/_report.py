"""``hipsml report``: one static page for any dataset, with its SOM and its CNN runs.

:func:`write_report` gathers what is on disk (a dataset version, optionally a SOM folder and
CNN run folders), draws the figures, and writes ``FOLDER/index.html`` beside ``figures/``,
``mistakes/`` and ``explorer/``: the dataset summary with the coverage per channel, the cutout
grid, the SOM pictures with the label purity per neuron and a link to the explorer, and per CNN
run its curves, the accuracy per split and per class, the confusion matrix and a gallery of its
most confident mistakes; every figure with the command that makes it again. The folder is built
in a staging folder and published by rename. Pure parts (:func:`coverage_per_channel`,
:func:`purity_per_neuron`, :func:`confident_mistakes`) take arrays.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hipsml._files import atomic_write_bytes, staged_folder, user_path
from hipsml._timestamps import now_iso
from hipsml.errors import InputFileError, InvalidInputError, OutputError
from hipsml.report._html import Figure, Section, render_html

if TYPE_CHECKING:
    from hipsml.train.cnn import CNNPredictions

__all__ = ["check_report_folder", "confident_mistakes", "coverage_per_channel", "purity_per_neuron", "write_report"]

logger = logging.getLogger(__name__)

_MARKER = "report.json"
_KIND = "hipsml-report"
#: cutouts read to measure the coverage per channel (evenly spaced rows)
_COVERAGE_SAMPLE = 4096
#: mistakes shown per CNN run
_MISTAKES = 24


def coverage_per_channel(images: np.ndarray) -> np.ndarray:
    """The fraction of finite (not blank) pixels ``(C,)`` of each channel of ``images`` ``(N, C, S, S)``.

    Examples
    --------
    >>> x = np.ones((2, 2, 2, 2)); x[0, 1, 0, 0] = np.nan
    >>> coverage_per_channel(x).tolist()
    [1.0, 0.875]
    """
    data = np.asarray(images)
    if data.ndim != 4 or data.shape[0] == 0:
        raise InvalidInputError(f"coverage needs cutouts (N, C, S, S) with N > 0, got shape {data.shape}")
    return np.isfinite(data).mean(axis=(0, 2, 3))


def purity_per_neuron(bmu: np.ndarray, labels: np.ndarray, neurons: int) -> list[tuple[int, int, int, float]]:
    """``(neuron, hits, majority label, purity)`` of each neuron with hits: purity = share of its majority label.

    Ties go to the lower label.

    Examples
    --------
    >>> purity_per_neuron(np.array([0, 0, 0, 2]), np.array([1, 1, 0, 0]), 3)
    [(0, 3, 1, 0.6666666666666666), (2, 1, 0, 1.0)]
    """
    bmu, labels = np.asarray(bmu, np.int64), np.asarray(labels, np.int64)
    table = np.zeros((neurons, int(labels.max(initial=0)) + 1), np.int64)
    np.add.at(table, (bmu, labels), 1)
    hits = table.sum(axis=1)
    return [
        (n, int(hits[n]), int(table[n].argmax()), float(table[n].max() / hits[n])) for n in range(neurons) if hits[n]
    ]


def confident_mistakes(probabilities: np.ndarray, truth: np.ndarray, top: int) -> np.ndarray:
    """Positions of the ``top`` wrong predictions, most confident (highest predicted probability) first.

    Ties go to the lower position.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    >>> confident_mistakes(p, np.array([1, 1, 0, 0]), 5).tolist()
    [0, 2]
    """
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(truth))
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:top].astype(np.int64)


def _int(n: int) -> str:
    return f"{n:,}"


def _q(path: Any) -> str:
    return shlex.quote(str(path))


def check_report_folder(folder: Path) -> None:
    """Refuse a ``folder`` that is a file, or a non-empty folder holding no hipsml report (no ``report.json``)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; give a folder for the report")
    try:
        foreign = folder.is_dir() and any(folder.iterdir()) and not (folder / _MARKER).is_file()
    except OSError as exc:
        raise OutputError(f"cannot read {folder}: {exc.strerror or exc}") from None
    if foreign:
        raise OutputError(f"{folder} is not empty and holds no hipsml report; choose a new or empty folder")


def _dataset_section(ds: Any, arg: str, staging: Path, channels: Any) -> Section:
    from hipsml.dataset import channel_labels, preview_dataset, select_channels

    n, c, h, w = ds.images.shape
    names = channel_labels(ds.channels, int(c))
    rows = np.unique(np.linspace(0, n - 1, min(n, _COVERAGE_SAMPLE)).astype(np.int64))
    coverage = coverage_per_channel(np.asarray(ds.images.get_orthogonal_selection((rows,))))
    sampled = "every cutout" if rows.size == n else f"{_int(rows.size)} evenly spaced cutouts of {_int(n)}"
    counts = np.bincount(ds.column("split"), minlength=len(ds.split_names))
    summary = (
        f"{_int(n)} cutouts of {c} x {h} x {w} {ds.images.dtype} in {ds.path.name} v{ds.version} (content "
        f"hash {ds.hash[:12]}); channels: {', '.join(names)}; splits: "
        + ", ".join(f"{s} {_int(int(k))}" for s, k in zip(ds.split_names, counts.tolist(), strict=True))
    )
    class_names = ds.class_names
    if class_names:
        labels = ds.column("label")
        summary += "; classes: " + ", ".join(
            f"{name} {_int(int(np.count_nonzero(labels == k)))}" for k, name in enumerate(class_names)
        )
    view = select_channels(channels, names)
    preview_dataset(ds, staging / "figures" / "preview.png", channels=channels)
    option = f" --channels {_q(channels)}" if channels is not None else ""
    grid = Figure(
        "preview.png",
        staging / "figures" / "preview.png",
        "The cutout grid",
        [
            (
                f"Four random cutouts per split and class (one row each), channels {view.label} "
                "(each cutout's channels stretched on their own, asinh, north up)."
            )
        ],
        [f"hipsml preview {arg} --out preview.png{option}"],
    )
    table = (
        "coverage",
        ["channel", "coverage (finite pixels)"],
        [[name, f"{value:.4f}"] for name, value in zip(names, coverage.tolist(), strict=True)],
    )
    intro = [summary + ".", f"Coverage per channel: the share of finite (not blank) pixels, over {sampled}."]
    return Section("dataset", "The dataset", intro, [grid], commands=[f"hipsml datasets {_q(ds.path)}"], tables=[table])


def _som_section(ds: Any, arg: str, som_path: Path, staging: Path, channels: Any) -> Section:
    from hipsml.train import (
        load_som,
        plot_errors,
        plot_hit_counts,
        plot_prototypes,
        plot_umatrix,
        stored_som_mapping,
        write_explorer,
    )

    som = load_som(som_path)
    name = som_path.resolve().name
    stored = stored_som_mapping(som, ds, name)
    mapping = stored if stored is not None else som.map(ds, progress=False)
    how = f"the stored mapping {name!r}" if stored is not None else "mapped now (store it with 'hipsml som map')"
    cfg = som.config
    figs = staging / "figures"
    plot_prototypes(som, figs / "som-prototypes.png", channels=channels)
    plot_hit_counts(som, mapping, figs / "som-hits.png")
    plot_umatrix(som, figs / "som-umatrix.png")
    option = f" --channels {_q(channels)}" if channels is not None else ""
    train_cmd = _som_train_command(som, ds, som_path) + option
    figures = [
        Figure(
            "som-prototypes.png",
            figs / "som-prototypes.png",
            "SOM prototypes",
            [
                (
                    f"The prototypes of a {cfg.layout} {cfg.width} x {cfg.height} SOM ({som.neuron_count} neurons of "
                    f"{cfg.neuron_dim} x {cfg.neuron_dim} pixels, {cfg.numrot} rotations"
                    f"{' and flips' if cfg.flip else ''}), {len(som.history)} epochs."
                )
            ],
            [train_cmd],
        ),
        Figure(
            "som-hits.png",
            figs / "som-hits.png",
            "SOM hit counts",
            [f"Cutouts per neuron ({_int(mapping.bmu.size)} mapped, {how})."],
            [train_cmd],
        ),
        Figure(
            "som-umatrix.png",
            figs / "som-umatrix.png",
            "SOM U-matrix",
            ["Mean distance from each prototype to its grid neighbours (high: borders between groups)."],
            [train_cmd],
        ),
    ]
    if som.history:
        plot_errors(som, figs / "som-errors.png")
        figures.append(
            Figure(
                "som-errors.png",
                figs / "som-errors.png",
                "SOM training errors",
                ["Quantisation and topographic error per epoch."],
                [train_cmd],
            )
        )
    write_explorer(som, ds, staging / "explorer", mapping=mapping, channels=channels)
    tables = []
    intro = [
        (
            f"The SOM in {som_path}: {how}; quantisation error {mapping.quantisation_error:.4g}, topographic "
            f"error {mapping.topographic_error:.4f}."
        )
    ]
    class_names = ds.class_names
    if class_names and mapping.rows is not None:
        labels = ds.column("label")[np.asarray(mapping.rows, np.int64)]
        purity = purity_per_neuron(mapping.bmu, labels, som.neuron_count)
        mean = sum(h * p for _, h, _, p in purity) / max(sum(h for _, h, _, _ in purity), 1)
        intro.append(
            f"Label purity per neuron: the share of a neuron's cutouts with its most common label; "
            f"weighted by hits, {mean:.3f}."
        )
        tables.append(
            (
                "purity",
                ["neuron", "hits", "most common label", "purity"],
                [[str(n), str(h), class_names[k], f"{p:.3f}"] for n, h, k, p in purity],
            )
        )
    return Section(
        "som",
        "The SOM",
        intro,
        figures,
        links=[("Open the SOM explorer", "explorer/index.html")],
        commands=[f"hipsml som explore {_q(som_path)} --dataset {arg} --out explorer{option}"],
        tables=tables,
    )


def _again(path: Path) -> str:
    """Where a printed training command writes: beside ``path``, as ``NAME-again`` (the original is kept)."""
    return _q(path.with_name(f"{path.name}-again"))


def _som_train_command(som: Any, ds: Any, som_path: Path) -> str:
    """``hipsml som train`` with the SOM's saved options as flags and its training split."""
    from hipsml.cli import SOM_FLAGS, cli_command

    options = {
        name: getattr(som.config, name)
        for _flag, (name, _type) in SOM_FLAGS.items()
        if getattr(som.config, name, None) is not None
    }
    split = (som.training or {}).get("split")
    words = ["hipsml", "som", "train", "--dataset", f"{ds.path}@v{ds.version}", "--split", split or "all"]
    return cli_command(words, options, SOM_FLAGS) + f" --out {_again(som_path)}"


def _cnn_train_command(run: Path, ds: Any) -> str:
    """``hipsml cnn train`` with the run's saved options (those with a flag) from ``run.json``."""
    from hipsml.cli import CNN_FLAGS, cli_command

    try:
        config = json.loads((run / "run.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"{run}: no readable run.json ({exc}); give a finished 'hipsml cnn train' run"
        ) from None
    options = {name: config[name] for _flag, (name, _type) in CNN_FLAGS.items() if config.get(name) is not None}
    words = ["hipsml", "cnn", "train", "--dataset", f"{ds.path}@v{ds.version}"]
    return cli_command(words, options, CNN_FLAGS) + f" --out {_again(run)}"


def _predictions(run: Path, ds: Any) -> tuple[CNNPredictions, str]:
    """This run's stored predictions of ``ds`` when they are its own of every cutout, else made now in memory.

    The report never writes beside the dataset: predictions stored under the run's name by the
    user (of one split, of an ensemble, of other weights) are left as they are.
    """
    import hashlib

    from hipsml.errors import DatasetNotFoundError
    from hipsml.train import load_cnn, read_cnn_predictions

    name = run.resolve().name
    weights = hashlib.sha256((run / "model.eqx").read_bytes()).hexdigest()
    try:
        stored = read_cnn_predictions(ds, name)
        assert stored.attrs is not None  # stored predictions keep their provenance block
        if (
            stored.attrs.get("model", {}).get("weights_sha256") == weights
            and stored.attrs.get("split") is None
            and not stored.attrs.get("ensemble")
        ):
            return stored, f"the stored predictions {name!r}"
    except (DatasetNotFoundError, InvalidInputError):
        pass
    made = load_cnn(run).predict(ds)
    return made, "predicted now (store them with 'hipsml predict')"


def _mistake_pictures(ds: Any, rows: np.ndarray, folder: Path, channels: Any) -> list[str]:
    from PIL import Image

    from hipsml.dataset import channel_labels, display_stretch, select_channels

    view = select_channels(channels, channel_labels(ds.channels, int(ds.images.shape[1])))
    picked = view.indices if view.mode == "rgb" else view.indices[:1]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    order = np.argsort(rows, kind="stable")
    images = np.empty((rows.size, *ds.images.shape[1:]), np.float32)
    if rows.size:
        images[order] = np.asarray(ds.images.get_orthogonal_selection((rows[order],)), np.float32)
    for k, image in enumerate(images):
        pixels = display_stretch(image[list(picked)])[:, ::-1]
        tile = (
            Image.fromarray(np.ascontiguousarray(pixels[0]), mode="L")
            if len(picked) == 1
            else Image.fromarray(np.ascontiguousarray(np.moveaxis(pixels, 0, -1)), mode="RGB")
        )
        path = folder / f"m{k:03d}.png"
        tile.resize((96, 96), Image.Resampling.NEAREST).save(path, format="PNG")
        names.append(path.name)
    return names


def _cnn_section(ds: Any, arg: str, run: Path, number: int, staging: Path, channels: Any) -> Section:
    from hipsml.train.cnn import plot_confusion, plot_curves, prediction_scores

    try:
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"{run}: no readable metrics.json ({exc}); give a finished 'hipsml cnn train' run"
        ) from None
    key, figs = f"cnn{number}", staging / "figures"
    predictions, how = _predictions(run, ds)
    classes = list(predictions.label_names)
    best = int(metrics["best_epoch"])
    train_cmd = _cnn_train_command(run, ds)
    predict_cmd = f"hipsml predict {_q(run)} --dataset {arg}"
    plot_curves(metrics["history"], figs / f"{key}-curves.png", best_epoch=best)
    figures = [
        Figure(
            f"{key}-curves.png",
            figs / f"{key}-curves.png",
            "CNN loss and accuracy",
            [f"{metrics['epochs_run']} epochs run; the best (marked) is epoch {best}."],
            [train_cmd],
        )
    ]
    intro = [f"The CNN run {run} ({how})."]
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    gallery: list[tuple[str, str]] = []
    scores = prediction_scores(ds, predictions)
    if scores:
        tables.append(
            (
                f"{key}-accuracy",
                ["split", "cutouts", "accuracy", *classes],
                [
                    [
                        split,
                        str(s["count"]),
                        f"{s['accuracy']:.4f}",
                        *[
                            ("n/a" if s["per_class"][c]["accuracy"] is None else f"{s['per_class'][c]['accuracy']:.4f}")
                            for c in classes
                        ],
                    ]
                    for split, s in scores.items()
                ],
            )
        )
        rows = np.asarray(predictions.rows, np.int64)
        class_names = ds.class_names or []
        truth_names = [class_names[k] for k in ds.column("label")[rows]]
        truth = np.array([classes.index(n) if n in classes else -1 for n in truth_names], np.int64)
        shown = "test" if "test" in scores else next(iter(scores))
        here = np.asarray(ds.column("split"))[rows] == ds.split_names.index(shown)
        confusion = np.zeros((len(classes), len(classes)), np.int64)
        known = here & (truth >= 0)
        np.add.at(confusion, (truth[known], np.asarray(predictions.predicted, np.int64)[known]), 1)
        plot_confusion(
            confusion,
            classes,
            figs / f"{key}-confusion.png",
            title=f"{shown} split: accuracy {scores[shown]['accuracy']:.3f}",
        )
        figures.append(
            Figure(
                f"{key}-confusion.png",
                figs / f"{key}-confusion.png",
                "CNN confusion matrix",
                [
                    (
                        f"The {shown} split ({_int(scores[shown]['count'])} cutouts), rows true, columns "
                        "predicted. Accuracy per split and per class in the table above."
                    )
                ],
                [predict_cmd],
            )
        )
        positions = confident_mistakes(predictions.probabilities, truth, _MISTAKES)
        ids = ds.column("id")
        pictures = _mistake_pictures(ds, rows[positions], staging / "mistakes" / key, channels)
        probabilities = np.asarray(predictions.probabilities)
        for p, picture in zip(positions.tolist(), pictures, strict=True):
            guess = int(probabilities[p].argmax())
            gallery.append(
                (
                    f"mistakes/{key}/{picture}",
                    (
                        f"id {ids[rows[p]]}: {truth_names[p]} taken for {classes[guess]} "
                        f"(p={float(probabilities[p, guess]):.3f})"
                    ),
                )
            )
        intro.append(
            f"The most confident mistakes ({len(gallery)} of "
            f"{int(np.count_nonzero(np.asarray(predictions.predicted) != truth))} wrong), most confident first:"
        )
    else:
        intro.append("The dataset has no labels: no accuracy, confusion matrix or mistakes.")
    return Section(
        key,
        f"CNN run {run.name}",
        intro,
        figures,
        commands=[predict_cmd],
        tables=tables,
        gallery=gallery,
        gallery_id=f"{key}-mistakes",
    )


def _copy_figures(sections: Sequence[Section], figures: Path) -> None:
    """Copy each figure drawn elsewhere (the ``intro`` sections') into ``figures``; refuse two of one name."""
    seen: set[str] = set()
    for fig in (f for s in sections for f in s.figures):
        if fig.name in seen:
            raise InvalidInputError(f"two figures of the report are named {fig.name!r}; give each its own name")
        seen.add(fig.name)
        target = figures / fig.name
        if Path(fig.source).resolve() != target.resolve():
            try:
                shutil.copyfile(fig.source, target)
            except OSError as exc:
                raise InputFileError(f"cannot copy the figure {fig.source}: {exc.strerror or exc}") from None


def write_report(
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    som: str | os.PathLike[str] | None = None,
    cnn: Sequence[str | os.PathLike[str]] = (),
    channels: str | Sequence[str | int] | None = None,
    title: str | None = None,
    intro: Sequence[Section] = (),
    timings: Sequence[tuple[str, float, str]] = (),
) -> Path:
    """Write a report folder for a dataset (and a SOM, and CNN runs); return its ``index.html``.

    Parameters
    ----------
    dataset : Dataset or str
        The dataset version (``"PATH[@vN]"`` or an open :class:`~hipsml.Dataset`).
    out : path
        The report folder: new, empty, or an earlier report (replaced whole, by rename).
    som : path, optional
        A SOM folder (``hipsml som train``) trained on this dataset's channels.
    cnn : sequence of paths
        CNN run folders (``hipsml cnn train``); their predictions of this dataset are read from
        beside the version, or made and stored there when absent.
    channels : str or sequence, optional
        The channels of the pictures (:func:`hipsml.dataset._pictures.select_channels`).
    title : str, optional
        The page title (default: ``"hipsml report: NAME vN"``).
    intro : sequence of Section
        Sections shown before the report's own (``hipsml demo`` puts its synthetic sky here);
        their figures are copied from ``Figure.source`` into ``figures/``. Every section is
        numbered in order.
    timings : sequence of (step, seconds, note)
        A table of how long each step took, at the top of the page and in ``report.json``
        (``hipsml demo`` gives its steps').

    Raises
    ------
    OutputError
        ``out`` is a file, or a folder holding something other than a hipsml report.
    InvalidInputError
        A bad channel choice, a SOM of other channels, a run folder without ``metrics.json``.

    Examples
    --------
    >>> write_report("demo-output/datasets/demo@v1", "report").name  # add som=SOMDIR, cnn=[RUNDIR, ...]
    'index.html'
    """
    from hipsml import __version__
    from hipsml.dataset import Dataset, open_dataset

    now = now_iso()
    folder = user_path(out, what="out")
    check_report_folder(folder)
    ds = dataset if isinstance(dataset, Dataset) else open_dataset(dataset)
    arg = _q(f"{ds.path}@v{ds.version}")
    runs = [user_path(r, what="cnn") for r in cnn]
    som_path = None if som is None else user_path(som, what="som")
    with staged_folder(folder) as staging:
        (staging / "figures").mkdir()
        sections = list(intro) + [_dataset_section(ds, arg, staging, channels)]
        if som_path is not None:
            sections.append(_som_section(ds, arg, som_path, staging, channels))
        sections += [_cnn_section(ds, arg, run, k + 1, staging, channels) for k, run in enumerate(runs)]
        _copy_figures(sections, staging / "figures")
        sections = [replace(s, title=f"{k}. {s.title}") for k, s in enumerate(sections, start=1)]
        name = title or f"hipsml report: {ds.attrs.get('name') or ds.path.name} v{ds.version}"
        command = (
            f"hipsml report {arg}"
            + (f" --som {_q(som_path)}" if som_path else "")
            + "".join(f" --cnn {_q(r)}" for r in runs)
            + f" --out {_q(folder)}"
            + (f" --channels {_q(channels)}" if channels is not None else "")
        )
        header = [
            f"Made by hipsml {__version__} on {now}. Every command below runs in {_q(Path.cwd())}, the folder "
            f"this page was made in; the report (every section from the dataset on) is made again by: {command}"
        ]
        rows = [(step, f"{seconds:.1f}", note) for step, seconds, note in timings]
        page = render_html(name, header, rows, sections)
        figures = [f"figures/{f.name}" for s in sections for f in s.figures]
        marker = {
            "kind": _KIND,
            "dataset": {"path": str(ds.path.resolve()), "version": ds.version, "hash": ds.hash},
            "som": str(som_path) if som_path else None,
            "cnn": [str(r) for r in runs],
            "figures": figures,
            "timings": {step: seconds for step, seconds, _ in timings},
        }
        atomic_write_bytes(staging / _MARKER, json.dumps(marker, indent=2).encode("utf-8"))
        atomic_write_bytes(staging / "index.html", page.encode("utf-8"))
    return folder / "index.html"
