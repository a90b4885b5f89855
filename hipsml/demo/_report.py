"""The report of ``hipsml demo``: one static page (``report/index.html``) over the demo's figures.

:func:`report_sections` turns what the demo made (dataset, SOM, CNN run, timings) into
sections of figures, each with a text summary and the ``hipsml`` command that makes it again;
:func:`render_html` renders them as one self-contained page (inline CSS, no script, relative
links only, every text escaped); :func:`write_report` copies the figures beside it, writes the
SOM explorer into ``report/explorer`` and publishes the folder by rename, so it opens from
``file://`` and can be moved or archived whole.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hipsml._files import atomic_write_bytes, staged_folder
from hipsml.report._html import Figure, Section, render_html

if TYPE_CHECKING:  # pragma: no cover
    from hipsml.demo._steps import CnnStep, SomStep
    from hipsml.dataset import Dataset
    from hipsml.sky import SyntheticSky

__all__ = ["Figure", "Section", "DemoFacts", "report_sections", "render_html", "write_report"]

_MARKER = "report.json"


@dataclass(frozen=True)
class DemoFacts:
    """What the demo made, for the report: the demo folder as given, its dataset, sky, training steps and timings."""

    folder: Path
    shown: str
    dataset: Dataset
    sky: SyntheticSky
    preview: Path
    som: SomStep
    cnn: CnnStep
    timings: dict[str, tuple[float, str]]


def _int(n: int) -> str:
    return f"{n:,}"


def _dataset_section(facts: DemoFacts, dataset_arg: str) -> Section:
    ds = facts.dataset
    counts = np.bincount(ds.column("split"), minlength=len(ds.split_names))
    labels = ds.column("label")
    per_class = ", ".join(f"{name} {_int(int(np.count_nonzero(labels == k)))}" for k, name in enumerate(ds.label_names))
    n, c, h, w = ds.images.shape
    sky = facts.sky
    grid = Figure(
        "preview.png", facts.preview, "The cutout grid",
        [f"Four random cutouts per split and class (one row each), every cutout shown in each band "
         f"({', '.join(ds.channels)}; asinh stretch, north up).",
         f"The dataset: {_int(n)} cutouts of {c} x {h} x {w} {ds.images.dtype} in datasets/demo v{ds.version} "
         f"(content hash {ds.hash[:12]}); classes: {per_class}; splits: "
         + ", ".join(f"{s} {_int(int(k))}" for s, k in zip(ds.split_names, counts.tolist())) + "."],
        [f"hipsml preview {dataset_arg} --out preview.png"],
    )  # fmt: skip
    intro = [f"A seeded synthetic sky (sky/: {_int(sum(sky.class_counts.values()))} sources, seed {sky.seed}, "
             f"HiPS order {sky.order}, one survey per band) cut into a versioned Zarr training set by the "
             f"demo recipe demo.yaml (the same recipe as recipes/demo.yaml)."]  # fmt: skip
    return Section("dataset", "1. The training set", intro, [grid], commands=["hipsml extract demo.yaml"])


def _som_section(facts: DemoFacts, dataset_arg: str) -> Section:
    step = facts.som
    som, cfg = step.som, step.som.config
    history = som.history
    train = np.isin(step.mapping.rows, facts.dataset.split("train"))
    hits = np.bincount(step.mapping.bmu[train], minlength=som.neuron_count)
    from hipsml.train import umatrix

    u = umatrix(som)
    folder = step.folder
    how = "reused from an earlier run; trained" if step.reused else "trained"
    proto = Figure("som-prototypes.png", folder / "prototypes.png", "SOM prototypes",
                   [f"The prototypes (channels {', '.join(facts.dataset.channels)}, side by side) of a {cfg.layout} {cfg.width} x {cfg.height} "
                    f"SOM: {som.neuron_count} neurons of {cfg.neuron_dim} x {cfg.neuron_dim} pixels, {cfg.numrot} "
                    f"rotations{' and flips' if cfg.flip else ''}, {len(history)} epochs on the "
                    f"{_int(int(train.sum()))} train cutouts ({cfg.normalise} normalised); {how} in "
                    f"{step.seconds:.1f} s."], [step.command])  # fmt: skip
    hit = Figure("som-hits.png", folder / "hits.png", "SOM hit counts",
                 [f"Train cutouts per neuron (best match): at most {int(hits.max())} (neuron {int(hits.argmax())}), "
                  f"{int(np.count_nonzero(hits == 0))} empty neurons of {som.neuron_count}."], [step.command])  # fmt: skip
    umat = Figure("som-umatrix.png", folder / "umatrix.png", "SOM U-matrix",
                  [f"Mean distance from each prototype to its grid neighbours: {float(u.min()):.4g} to "
                   f"{float(u.max()):.4g} (high values: borders between groups of prototypes)."], [step.command])
    errors = Figure("som-errors.png", folder / "errors.png", "SOM training errors",
                    ["Quantisation error per epoch: " + ", ".join(f"{r.quantisation_error:.4g}" for r in history)
                     + "; topographic error per epoch: " + ", ".join(f"{r.topographic_error:.4f}" for r in history)
                     + "."], [step.command])  # fmt: skip
    mapped = step.mapping
    intro = [f"Every cutout of the dataset mapped onto the SOM ({_int(mapped.bmu.size)} cutouts, stored beside the "
             f"version in {step.mapping_folder.resolve().relative_to(facts.folder.resolve()).as_posix()}): quantisation error "
             f"{mapped.quantisation_error:.4g}, topographic error {mapped.topographic_error:.4f}. The explorer shows "
             "each prototype's nearest cutouts and the outliers."]  # fmt: skip
    commands = [f"hipsml som map som --dataset {dataset_arg}",
                f"hipsml som explore som --dataset {dataset_arg} --out report/explorer"]
    return Section("som", "2. A self-organizing map (rotation- and flip-invariant)", intro,
                   [proto, hit, umat, errors], links=[("Open the SOM explorer", "explorer/index.html")],
                   commands=commands)  # fmt: skip


def _cnn_section(facts: DemoFacts) -> Section:
    step = facts.cnn
    m, names = step.metrics, step.metrics["label_names"]
    history = m["history"]
    best = history[m["best_epoch"] - 1]  # metrics.json counts epochs from 1
    shown = m.get("test") or m.get("val")
    how = "reused from an earlier run; trained" if step.reused else "trained"
    rate = float(np.median([r["images_per_second"] for r in history[1:]] or [history[0]["images_per_second"]]))
    curves = Figure("cnn-curves.png", step.folder / "curves.png", "CNN loss and accuracy",
                    [f"Loss and accuracy per epoch, train (augmented) and validation: {m['epochs_run']} epochs run "
                     f"(of at most {step.run['config']['epochs']}{', stopped early' if m['stopped_early'] else ''}); "
                     f"the best, by validation loss, is epoch {m['best_epoch']} (validation loss "
                     f"{best.get('val_loss', float('nan')):.4f}, accuracy {best.get('val_accuracy', float('nan')):.3f}). "
                     f"A residual CNN of {_int(step.run['parameters'])} parameters, {how} in {step.seconds:.1f} s "
                     f"(about {rate:,.0f} images/s after the first epoch)."], [step.command])  # fmt: skip
    figures = [curves]
    if shown is not None:
        confusion = np.asarray(shown["confusion"], dtype=np.int64)
        per_class = [("n/a" if v is None else f"{v:.3f}") for v in shown["per_class"]]
        header = ["true \\ predicted", *names, "accuracy"]
        rows = [[names[i], *[str(int(v)) for v in confusion[i]], per_class[i]] for i in range(len(names))]
        figures.append(Figure(
            "cnn-confusion.png", step.folder / "confusion.png", "CNN confusion matrix",
            [f"The {shown['split']} split ({_int(shown['count'])} cutouts) classified by the best model: accuracy "
             f"{shown['accuracy']:.3f}. Per class: " + ", ".join(f"{n} {a}" for n, a in zip(names, per_class)) + "."],
            [step.command], table=(header, rows), table_id="confusion"))  # fmt: skip
    intro = ["A small residual network (equinox + optax) trained on the train split with exact 90-degree turns and "
             "flips, class weights and early stopping on the validation split."]
    return Section("cnn", "3. A CNN classifier", intro, figures, commands=["hipsml predict cnn --dataset "
                                                                           + _dataset_arg(facts)])


def _dataset_arg(facts: DemoFacts) -> str:
    return f"datasets/demo@v{facts.dataset.version}"


def report_sections(facts: DemoFacts) -> list[Section]:
    """The report's sections: the training set, the SOM, the CNN (figures, summaries, commands)."""
    arg = _dataset_arg(facts)
    return [_dataset_section(facts, arg), _som_section(facts, arg), _cnn_section(facts)]


def check_report_folder(folder: Path) -> None:
    """Refuse a ``folder`` that exists and is not an earlier demo report (a file, or a folder of other things)."""
    from hipsml.demo._steps import check_step_folder

    check_step_folder(folder, _MARKER, "demo report")


def _header(facts: DemoFacts) -> list[str]:
    import jax

    from hipsml import __version__

    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    ds, som, cnn = facts.dataset, facts.som, facts.cnn
    shown = cnn.metrics.get("test") or cnn.metrics.get("val")
    score = f"{shown['split']} accuracy {shown['accuracy']:.3f} on {_int(shown['count'])} cutouts" if shown else "no test split"
    total = sum(seconds for seconds, _ in facts.timings.values())
    return [f"In short: {_int(len(ds))} labelled cutouts ({', '.join(ds.channels)}); a {som.som.config.layout} "
            f"{som.som.config.width} x {som.som.config.height} SOM with quantisation error "
            f"{som.mapping.quantisation_error:.4g}; a CNN with {score}; {total:.0f} s in all.",
            f"Made by hipsml {__version__} on {now}, on {platform.machine()} with {os.cpu_count()} cores "
            f"(JAX on {jax.default_backend()}).",
            f"Every command below runs in the demo folder: cd {shlex.quote(facts.shown)}; the whole report is "
            f"made again by: hipsml demo {shlex.quote(facts.shown)}"]  # fmt: skip


def write_report(facts: DemoFacts, folder: Path) -> Path:
    """Write the report folder (``index.html``, ``figures/``, ``explorer/``, ``report.json``); return ``index.html``.

    The folder is built in a staging folder and renamed over an earlier report.

    Raises
    ------
    OutputError
        ``folder`` holds something other than a demo report, or cannot be written.
    """
    from hipsml.train import write_explorer

    check_report_folder(folder)
    sections = report_sections(facts)
    timings = [(step, f"{seconds:.1f}", note) for step, (seconds, note) in facts.timings.items()]
    page = render_html("hipsml demo report", _header(facts), timings, sections)
    figures = [f for s in sections for f in s.figures]
    with staged_folder(folder) as staging:
        (staging / "figures").mkdir()
        for fig in figures:
            shutil.copyfile(fig.source, staging / "figures" / fig.name)
        write_explorer(facts.som.som, facts.dataset, staging / "explorer", mapping=facts.som.mapping)
        marker = {"kind": "hipsml-demo-report", "dataset": {"version": facts.dataset.version,
                  "hash": facts.dataset.hash}, "figures": [f"figures/{f.name}" for f in figures],
                  "timings": {k: v[0] for k, v in facts.timings.items()}}  # fmt: skip
        atomic_write_bytes(staging / _MARKER, json.dumps(marker, indent=2).encode("utf-8"))
        atomic_write_bytes(staging / "index.html", page.encode("utf-8"))
    return folder / "index.html"
