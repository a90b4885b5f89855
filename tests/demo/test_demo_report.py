"""The end-to-end demo at a reduced size: sky, dataset, SOM, CNN and the report page, checked file by file and in a browser.

One demo runs per module (80 sources, a 3x3 hexagonal SOM, 2 CNN epochs). The page is written by
``hipsml.report.write_report`` (the page of ``hipsml report``) with the demo's sky and timings
ahead of it. Every number the page shows is compared with the file it comes from
(``metrics.json``, the stored SOM mapping and predictions), read here independently; the commands
the page prints are run and must remake the figures; the page is opened from ``file://`` in a
real headless chromium (skipped only when none).
"""

from __future__ import annotations

import json
import os
import shlex
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import zarr

from hipsml.cli import main
from hipsml.demo._run import run_demo
from hipsml.errors import OutputError
from hipsml.train import load_som, plot_prototypes, read_som_mapping

SKY = {"n_sources": 80, "order": 7, "tile_width": 64, "radius": 0.45}
SOM = {"layout": "hexagonal", "width": 3, "height": 3, "numrot": 4, "neuron_dim": 64, "epochs": 2, "seed": 0}
CNN = {"epochs": 2, "batch_size": 16, "seed": 0}


class Page(HTMLParser):
    """What a test needs of the report page: image sources, link targets, command lines, tables and the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.commands: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.text: list[str] = []
        self._pre = False
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"] or "")
        elif tag == "a":
            self.links.append(a["href"] or "")
        elif tag == "pre" and a.get("class") == "command":
            self._pre = True
            self.commands.append("")
        elif tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre = False
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._pre:
            self.commands[-1] += data
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The reduced demo (printing nothing) and its folder."""
    parent = tmp_path_factory.mktemp("demo")
    here = os.getcwd()
    os.chdir(parent)  # the demo folder given relative to the working folder, as `make demo` gives it
    try:  # a space in its name: the printed commands must quote it
        result = run_demo("demo out", progress=False, verbose=False, som_options=SOM, cnn_options=CNN, **SKY)
    finally:
        os.chdir(here)
    return parent / "demo out", result


def page_of(folder: Path) -> Page:
    return Page((folder / "report" / "index.html").read_text(encoding="utf-8"))


def command(page: Page, *words: str) -> list[str]:
    """The one printed command starting with ``hipsml WORDS``, as argv for :func:`hipsml.cli.main`."""
    found = [shlex.split(c) for c in page.commands if shlex.split(c)[: len(words) + 1] == ["hipsml", *words]]
    assert found, (words, page.commands)
    return found[0][1:]


def test_the_report_folder_is_self_contained_and_every_reference_resolves(demo):
    folder, result = demo
    report = folder / "report"
    assert (folder.parent / result["index"]) == report / "index.html"
    text = (report / "index.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "<script" not in text
    page = page_of(folder)
    marker = json.loads((report / "report.json").read_text())
    assert marker["kind"] == "hipsml-report" and marker["dataset"]["hash"] == result["dataset"].hash
    assert list(marker["timings"]) == ["sky", "dataset", "SOM", "CNN"]
    names = [
        "preview.png",
        "som-prototypes.png",
        "som-hits.png",
        "som-umatrix.png",
        "som-errors.png",
        "cnn1-curves.png",
        "cnn1-confusion.png",
    ]
    figures = [i for i in page.images if i.startswith("figures/")]
    assert figures == [f"figures/{n}" for n in names] == marker["figures"]
    mistakes = [i for i in page.images if not i.startswith("figures/")]  # the CNN's most confident mistakes
    assert mistakes == [f"mistakes/cnn1/m{k:03d}.png" for k in range(len(mistakes))] and mistakes
    for ref in page.images + page.links:
        assert not urllib.parse.urlsplit(ref).scheme and not ref.startswith("/"), ref
        assert (report / urllib.parse.unquote(ref)).is_file(), ref
    # the figures that the steps drew too are the same pictures
    sources = {
        "preview.png": folder / "preview.png",
        "som-prototypes.png": folder / "som" / "prototypes.png",
        "som-umatrix.png": folder / "som" / "umatrix.png",
        "som-errors.png": folder / "som" / "errors.png",
    }
    for name, source in sources.items():
        assert (report / "figures" / name).read_bytes() == source.read_bytes(), name
    # the explorer link: this SOM's explorer of this dataset version
    assert page.links == ["explorer/index.html"]
    explorer = json.loads((report / "explorer" / "explorer.json").read_text())
    assert explorer["kind"] == "hipsml-som-explorer" and explorer["dataset"]["hash"] == result["dataset"].hash
    assert sorted(p.name for p in folder.iterdir()) == [
        "cnn",
        "datasets",
        "demo.yaml",
        "preview.png",
        "report",
        "sky",
        "som",
    ]  # no staging folder left behind


def test_the_cnn_accuracy_per_split_and_class_is_that_of_metrics_json(demo):
    folder, _ = demo
    metrics = json.loads((folder / "cnn" / "metrics.json").read_text())
    test = metrics["test"]
    names = metrics["label_names"]
    page = page_of(folder)
    table = page.tables["cnn1-accuracy"]
    assert table[0] == ["split", "cutouts", "accuracy", *names]
    (row,) = [r for r in table[1:] if r[0] == "test"]
    assert row == [
        "test",
        str(test["count"]),
        f"{test['accuracy']:.4f}",
        *["n/a" if v is None else f"{v:.4f}" for v in test["per_class"]],
    ]
    text = " ".join(" ".join(page.text).split())
    assert f"The test split ({test['count']} cutouts), rows true, columns predicted." in text
    assert f"{metrics['epochs_run']} epochs run; the best (marked) is epoch {metrics['best_epoch']}." in text
    # the timings table names every step with its seconds
    timings = page.tables["timings"]
    assert [row[0] for row in timings] == ["step", "sky", "dataset", "SOM", "CNN"]
    assert all(float(row[1]) >= 0 for row in timings[1:])


def test_the_som_summaries_are_those_of_the_saved_som_and_mapping(demo, tmp_path):
    folder, result = demo
    ds = result["dataset"]
    som = load_som(folder / "som")
    mapping = read_som_mapping(ds, "som")
    attrs = zarr.open_group(folder / "datasets" / "demo" / "derived" / "v1" / "som" / "som", mode="r").attrs["hipsml"]
    page = page_of(folder)
    text = " ".join(" ".join(page.text).split())
    assert mapping.bmu.size == len(ds) and len(som.history) == SOM["epochs"]
    assert (
        f"the stored mapping 'som'; quantisation error {attrs['quantisation_error']:.4g}, topographic error "
        f"{attrs['topographic_error']:.4f}."
    ) in text
    assert f"Cutouts per neuron ({len(ds)} mapped, the stored mapping 'som')." in text
    assert "hexagonal 3 x 3 SOM (7 neurons of 64 x 64 pixels, 4 rotations and flips), 2 epochs." in text
    # the label purity per neuron, by hand from the stored mapping
    labels = ds.column("label")[mapping.rows]
    expected = []
    for n in range(7):
        counts = np.bincount(labels[mapping.bmu == n], minlength=len(ds.label_names))
        if counts.sum():
            expected.append(
                [str(n), str(counts.sum()), ds.label_names[int(counts.argmax())], f"{counts.max() / counts.sum():.3f}"]
            )
    assert page.tables["purity"][1:] == expected
    # the picture is this SOM's prototypes, drawn again here
    assert (
        plot_prototypes(som, tmp_path / "p.png").read_bytes()
        == (folder / "report/figures/som-prototypes.png").read_bytes()
    )


def test_the_printed_commands_remake_the_figures(demo, monkeypatch, capsys):
    folder, result = demo
    page = page_of(folder)
    parent = folder.parent
    assert f"Every command below runs in {shlex.quote(str(parent))}, the folder this page was made in" in " ".join(
        page.text
    )
    assert "hipsml demo 'demo out'" in page.commands  # quoted: the folder name has a space
    monkeypatch.chdir(parent)  # the page says: every command runs in the folder the demo ran in
    assert main(["-q", *command(page, "preview")]) == 0
    assert (parent / "preview.png").read_bytes() == (folder / "report/figures/preview.png").read_bytes()
    argv = command(page, "som", "train")
    assert argv[argv.index("--out") + 1] == "demo out/som-again" and argv[argv.index("--split") + 1] == "train"
    assert main(["-q", *argv]) == 0
    again, som = load_som(folder / "som-again"), load_som(folder / "som")
    assert again.config == som.config and np.array_equal(again.weights, som.weights)
    for name in ("prototypes", "umatrix", "errors"):
        assert (folder / "som-again" / f"{name}.png").read_bytes() == (
            folder / f"report/figures/som-{name}.png"
        ).read_bytes()
    assert main(["-q", *command(page, "extract")]) == 0 and "unchanged" in capsys.readouterr().out
    argv = command(page, "cnn", "train")
    assert argv[argv.index("--out") + 1] == "demo out/cnn-again"
    assert main(["-q", *argv]) == 0
    remade = json.loads((folder / "cnn-again" / "metrics.json").read_text())
    metrics = json.loads((folder / "cnn" / "metrics.json").read_text())
    assert remade["test"]["confusion"] == metrics["test"]["confusion"] and remade["epochs_run"] == metrics["epochs_run"]


def test_a_second_run_reuses_what_is_unchanged_and_retrains_what_is_not(demo):
    folder, first = demo
    (folder / "report" / "stale.txt").write_text("from an earlier report")
    again = run_demo(folder, progress=False, verbose=False, som_options=SOM, cnn_options=CNN, **SKY)
    assert again["sky_reused"] and again["dataset"].report.created is False
    assert again["som"].reused and again["cnn"].reused
    assert np.array_equal(again["som"].som.weights, first["som"].som.weights)
    assert not (folder / "report" / "stale.txt").exists()  # the report folder is replaced whole
    timings = page_of(folder).tables["timings"]
    assert [row[2].startswith("reused") for row in timings[1:]] == [True, False, True, True]  # the dataset: unchanged
    shorter = run_demo(folder, progress=False, verbose=False, som_options=SOM, cnn_options={**CNN, "epochs": 1}, **SKY)
    assert shorter["som"].reused and not shorter["cnn"].reused
    assert json.loads((folder / "cnn" / "metrics.json").read_text())["epochs_run"] == 1
    assert "1 epochs run; the best (marked) is epoch 1." in " ".join(" ".join(page_of(folder).text).split())
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("name", "message"), [("report", "holds no hipsml report"), ("som", "holds no SOM"), ("cnn", "holds no CNN run")]
)
def test_a_foreign_output_folder_is_refused_before_any_work(tmp_path, capsys, name, message):
    (tmp_path / "d" / name).mkdir(parents=True)
    (tmp_path / "d" / name / "notes.txt").write_text("mine")
    assert main(["demo", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [name]  # no sky rendered
    assert (tmp_path / "d" / name / "notes.txt").read_text() == "mine"
    (tmp_path / "d" / name / "notes.txt").unlink()
    (tmp_path / "d" / name).rmdir()
    (tmp_path / "d" / name).write_text("a file")
    with pytest.raises(OutputError, match="is a file"):
        run_demo(tmp_path / "d", progress=False, verbose=False, **SKY)


def test_the_page_shows_its_figures_and_summaries_in_a_browser(browser, demo):
    from selenium.webdriver.common.by import By

    folder, result = demo
    browser.get((folder / "report" / "index.html").resolve().as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 7 + len(browser.find_elements(By.CSS_SELECTOR, "#cnn1-mistakes li")) > 7
    widths = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert all(complete and width > 0 for complete, width in widths), widths
    metrics = json.loads((folder / "cnn" / "metrics.json").read_text())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert f"{len(result['dataset'])} cutouts of 4 x 64 x 64 float32 in demo v1" in body
    rows = [
        [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#cnn1-accuracy tbody tr")
    ]
    assert [r[0] for r in rows] == ["train", "val", "test"]
    assert rows[2][2] == f"{metrics['test']['accuracy']:.4f}"
    assert len(browser.find_elements(By.CSS_SELECTOR, "pre.command")) >= 7
    browser.find_element(By.LINK_TEXT, "Open the SOM explorer").click()
    assert browser.current_url.endswith("/report/explorer/index.html")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map .cell")) == 7
    assert browser.find_element(By.ID, "title").text.startswith("SOM explorer: demo v1")
