"""The end-to-end demo at a reduced size: sky, dataset, SOM, CNN and the report page, checked file by file and in a browser.

One demo runs per module (80 sources, a 3x3 hexagonal SOM, 2 CNN epochs). Every number the page
shows is compared with the file it comes from (``metrics.json``, ``som.json``, the stored SOM
mapping), read here independently; the commands the page prints are run and must remake the
figures; the page is opened from ``file://`` in a real headless chromium (skipped only when none).
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

from hipsml.demo._run import run_demo
from hipsml.cli import main
from hipsml.errors import OutputError
from hipsml.train import load_som, plot_prototypes, read_som_mapping, umatrix

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
        result = run_demo("demo out", progress=False, report=False, som_options=SOM, cnn_options=CNN, **SKY)
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
    assert marker["kind"] == "hipsml-demo-report" and marker["dataset"]["hash"] == result["dataset"].hash
    names = ["preview.png", "som-prototypes.png", "som-hits.png", "som-umatrix.png", "som-errors.png",
             "cnn-curves.png", "cnn-confusion.png"]
    assert page.images == [f"figures/{n}" for n in names] == marker["figures"]
    for ref in page.images + page.links:
        assert not urllib.parse.urlsplit(ref).scheme and not ref.startswith("/"), ref
        assert (report / urllib.parse.unquote(ref)).is_file(), ref
    # each figure is the file its step drew
    sources = {"preview.png": folder / "preview.png", "som-prototypes.png": folder / "som" / "prototypes.png",
               "som-hits.png": folder / "som" / "hits.png", "som-umatrix.png": folder / "som" / "umatrix.png",
               "som-errors.png": folder / "som" / "errors.png", "cnn-curves.png": folder / "cnn" / "curves.png",
               "cnn-confusion.png": folder / "cnn" / "confusion.png"}
    for name, source in sources.items():
        assert (report / "figures" / name).read_bytes() == source.read_bytes(), name
    # the explorer link: this SOM's explorer of this dataset version
    assert page.links == ["explorer/index.html"]
    explorer = json.loads((report / "explorer" / "explorer.json").read_text())
    assert explorer["kind"] == "hipsml-som-explorer" and explorer["dataset"]["hash"] == result["dataset"].hash
    assert sorted(p.name for p in folder.iterdir()) == ["cnn", "datasets", "demo.yaml", "preview.png", "report",
                                                        "sky", "som"]  # no staging folder left behind


def test_the_cnn_summary_and_confusion_matrix_are_those_of_metrics_json(demo):
    folder, _ = demo
    metrics = json.loads((folder / "cnn" / "metrics.json").read_text())
    test = metrics["test"]
    names = metrics["label_names"]
    page = page_of(folder)
    table = page.tables["confusion"]
    assert table[0] == ["true \\ predicted", *names, "accuracy"]
    assert [row[0] for row in table[1:]] == names
    assert [[int(v) for v in row[1:-1]] for row in table[1:]] == test["confusion"]
    assert [row[-1] for row in table[1:]] == ["n/a" if v is None else f"{v:.3f}" for v in test["per_class"]]
    text = " ".join(" ".join(page.text).split())
    assert f"The test split ({test['count']} cutouts) classified by the best model: accuracy {test['accuracy']:.3f}." in text
    assert f"{metrics['epochs_run']} epochs run (of at most {CNN['epochs']}" in text
    assert f"the best, by validation loss, is epoch {metrics['best_epoch'] + 1}" in text
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
    text = " ".join(" ".join(page_of(folder).text).split())
    hits = np.bincount(mapping.bmu[np.isin(mapping.rows, ds.split("train"))], minlength=7)
    assert hits.sum() == ds.split("train").size and mapping.bmu.size == len(ds)
    assert (f"Train cutouts per neuron (best match): at most {hits.max()} (neuron {hits.argmax()}), "
            f"{np.count_nonzero(hits == 0)} empty neurons of 7.") in text
    assert ("Quantisation error per epoch: " + ", ".join(f"{r.quantisation_error:.4g}" for r in som.history)) in text
    assert len(som.history) == SOM["epochs"]
    assert (f"({len(ds)} cutouts, stored beside the version in datasets/demo/derived/v1/som/som): quantisation error "
            f"{attrs['quantisation_error']:.4g}, topographic error {attrs['topographic_error']:.4f}") in text
    u = umatrix(som)
    assert f"{u.min():.4g} to {u.max():.4g}" in text
    assert "hexagonal 3 x 3 SOM: 7 neurons of 64 x 64 pixels, 4 rotations and flips, 2 epochs" in text
    # the picture is this SOM's prototypes, drawn again here
    assert plot_prototypes(som, tmp_path / "p.png").read_bytes() == (folder / "report/figures/som-prototypes.png").read_bytes()


def test_the_printed_commands_remake_the_figures(demo, monkeypatch, capsys):
    folder, result = demo
    page = page_of(folder)
    assert "cd 'demo out';" in " ".join(page.text)
    monkeypatch.chdir(folder)  # the page says: every command runs in the demo folder
    assert main(["-q", *command(page, "preview")]) == 0
    assert (folder / "preview.png").read_bytes() == (folder / "report/figures/preview.png").read_bytes()
    argv = command(page, "som", "train")
    assert argv[argv.index("--out") + 1] == "som-again"
    assert main(["-q", *argv]) == 0
    again, som = load_som(folder / "som-again"), load_som(folder / "som")
    assert again.config == som.config and np.array_equal(again.weights, som.weights)
    for name in ("prototypes.png", "hits.png", "umatrix.png", "errors.png"):
        assert (folder / "som-again" / name).read_bytes() == (folder / "som" / name).read_bytes(), name
    assert main(["-q", *command(page, "som", "map")]) == 0  # the stored mapping is this SOM's: kept
    assert main(["-q", *command(page, "extract")]) == 0 and "unchanged" in capsys.readouterr().out
    argv = command(page, "cnn", "train")
    assert main(["-q", *argv]) == 0
    remade = json.loads((folder / "cnn-again" / "metrics.json").read_text())
    metrics = json.loads((folder / "cnn" / "metrics.json").read_text())
    assert remade["test"]["confusion"] == metrics["test"]["confusion"] and remade["epochs_run"] == metrics["epochs_run"]


def test_a_second_run_reuses_what_is_unchanged_and_retrains_what_is_not(demo):
    folder, first = demo
    (folder / "report" / "stale.txt").write_text("from an earlier report")
    again = run_demo(folder, progress=False, report=False, som_options=SOM, cnn_options=CNN, **SKY)
    assert again["sky_reused"] and again["dataset"].report.created is False
    assert again["som"].reused and again["cnn"].reused
    assert np.array_equal(again["som"].som.weights, first["som"].som.weights)
    assert not (folder / "report" / "stale.txt").exists()  # the report folder is replaced whole
    text = " ".join(page_of(folder).text)
    assert "reused from an earlier run" in text
    shorter = run_demo(folder, progress=False, report=False, som_options=SOM, cnn_options={**CNN, "epochs": 1}, **SKY)
    assert shorter["som"].reused and not shorter["cnn"].reused
    assert json.loads((folder / "cnn" / "metrics.json").read_text())["epochs_run"] == 1
    assert "1 epochs run (of at most 1" in " ".join(" ".join(page_of(folder).text).split())
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(("name", "message"), [("report", "holds no demo report"), ("som", "holds no SOM"),
                                                ("cnn", "holds no CNN run")])
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
        run_demo(tmp_path / "d", progress=False, report=False, **SKY)


def test_the_page_shows_its_figures_and_summaries_in_a_browser(browser, demo):
    from selenium.webdriver.common.by import By

    folder, result = demo
    browser.get((folder / "report" / "index.html").resolve().as_uri())
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 7
    widths = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert all(complete and width > 0 for complete, width in widths), widths
    metrics = json.loads((folder / "cnn" / "metrics.json").read_text())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert f"accuracy {metrics['test']['accuracy']:.3f}" in body
    assert f"The dataset: {len(result['dataset'])} cutouts of 4 x 64 x 64 float32 in datasets/demo v1" in body
    cells = browser.find_elements(By.CSS_SELECTOR, "#confusion tbody td")
    assert [c.text for c in cells][:4] == [str(v) for v in metrics["test"]["confusion"][0]]
    assert len(browser.find_elements(By.CSS_SELECTOR, "pre.command")) >= 7
    browser.find_element(By.LINK_TEXT, "Open the SOM explorer").click()
    assert browser.current_url.endswith("/report/explorer/index.html")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map .cell")) == 7
    assert browser.find_element(By.ID, "title").text.startswith("SOM explorer: demo v1")
