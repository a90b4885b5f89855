"""The SOM explorer: a static folder (page, data.js, thumbnails, FITS) checked file by file and in a real browser.

The dataset is extracted from a seeded synthetic sky in tmp_path (16x16 cutouts, two bands);
the SOMs are tiny (3x3, numrot 4). Expected galleries and outliers are computed here with
plain numpy from the mapping's arrays, never by the code under test. The browser test drives
Debian's chromium through chromedriver (selenium) and skips only when neither can be found.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from dataset_helpers import with_default_sigint
from PIL import Image
from test_som_dataset import SOM_OPTIONS, extract_small_dataset

from hipsml.cli import main
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train import SOM, SOMConfig, SOMMapping, read_som_mapping, train_som, write_som_mapping
from hipsml.train.som._explorer import explorer_server, plan_explorer, write_explorer
from hipsml.train.som._layout import plot_centres

HEX_OPTIONS = {**SOM_OPTIONS, "layout": "hexagonal"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return extract_small_dataset(tmp_path_factory.mktemp("som-explorer-dataset"))


@pytest.fixture(scope="module")
def hex_som(dataset):
    return train_som(dataset, epochs=2, progress=False, **HEX_OPTIONS)


@pytest.fixture(scope="module")
def hex_explorer(dataset, hex_som, tmp_path_factory):
    """A hexagonal SOM's explorer with k=5, top=7, and the mapping it shows."""
    mapping = hex_som.map(dataset)
    folder = write_explorer(
        hex_som, dataset, tmp_path_factory.mktemp("explorer") / "explorer", mapping=mapping, k=5, top=7
    )
    return folder, mapping


def read_data_js(folder: Path) -> dict:
    text = (folder / "data.js").read_text(encoding="utf-8")
    prefix = "window.HIPSML_EXPLORER = "
    assert text.startswith(prefix) and text.rstrip().endswith(";")
    return json.loads(text[len(prefix) :].rstrip().removesuffix(";"))


def expected_gallery(mapping: SOMMapping, neuron: int, k: int) -> list[int]:
    """Dataset rows of the k cutouts whose BMU is ``neuron``, smallest distance first (ties: lower row)."""
    members = [
        (float(mapping.distance[i]), int(mapping.rows[i]))
        for i in range(mapping.bmu.size)
        if int(mapping.bmu[i]) == neuron
    ]
    return [row for _, row in sorted(members)[:k]]


def expected_outliers(mapping: SOMMapping, top: int) -> list[int]:
    ranked = sorted(range(mapping.bmu.size), key=lambda i: (-float(mapping.distance[i]), i))
    return [int(mapping.rows[i]) for i in ranked[:top]]


def test_plan_takes_each_neurons_nearest_cutouts_and_the_farthest_overall():
    bmu = np.array([2, 0, 2, 2, 0, 2])
    distance = np.array([0.4, 0.9, 0.1, 0.4, 0.3, 0.8], np.float32)
    mapping = SOMMapping(
        bmu=bmu,
        distance=distance,
        angle=np.zeros(6),
        flipped=np.zeros(6, bool),
        config=SOMConfig(width=3, height=1),
        rows=np.array([10, 11, 12, 13, 14, 15]),
    )
    plan = plan_explorer(mapping, 3, k=3, top=2)
    assert [m.tolist() for m in plan.members] == [[4, 1], [], [2, 0, 3]]  # the 0.4 tie: lower row first
    assert plan.outliers.tolist() == [1, 5]
    assert plan.shown.tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        plan_explorer(mapping, 3, k=0)


def test_the_folder_holds_the_page_its_data_thumbnails_and_fits(dataset, hex_som, hex_explorer):
    folder, mapping = hex_explorer
    for name in ("index.html", "explorer.js", "explorer.css", "data.js", "explorer.json"):
        assert (folder / name).is_file(), name
    for name in ("index.html", "explorer.js", "explorer.css"):  # self-contained: nothing from the network
        text = (folder / name).read_text()
        assert "http://" not in text and "https://" not in text and "fetch(" not in text, name
    data = read_data_js(folder)
    assert data["som"]["layout"] == "hexagonal" and data["som"]["neuron_count"] == 7 == len(data["neurons"])
    hits = np.bincount(mapping.bmu, minlength=7)
    centres = plot_centres(hex_som.config)
    ids, ra, dec = dataset.column("id"), dataset.column("ra"), dataset.column("dec")
    labels, names = dataset.column("label"), dataset.label_names
    for n, neuron in enumerate(data["neurons"]):
        assert neuron["neuron"] == n and neuron["hits"] == hits[n]
        assert (neuron["x"], neuron["y"]) == pytest.approx(tuple(centres[n]))
        assert [data["cutouts"][j]["row"] for j in neuron["members"]] == expected_gallery(mapping, n, 5)
        with Image.open(folder / neuron["image"]) as png:
            assert png.size == (16, 16) and png.mode == "L"
    assert [data["cutouts"][j]["row"] for j in data["outliers"]] == expected_outliers(mapping, 7)
    assert sum(min(h, 5) for h in hits) <= len(data["cutouts"]) <= sum(min(h, 5) for h in hits) + 7
    position = {int(r): i for i, r in enumerate(mapping.rows)}
    for cutout in data["cutouts"]:
        row, i = cutout["row"], position[cutout["row"]]
        assert cutout["id"] == str(ids[row]) and cutout["label"] == names[labels[row]]
        assert cutout["ra"] == pytest.approx(float(ra[row]), abs=1e-12) and cutout["dec"] == pytest.approx(
            float(dec[row]), abs=1e-12
        )
        assert cutout["bmu"] == mapping.bmu[i] and cutout["distance"] == pytest.approx(float(mapping.distance[i]))
        assert cutout["angle"] == mapping.angle[i] and cutout["flipped"] == bool(mapping.flipped[i])
        with fits.open(folder / cutout["fits"]) as hdus:  # the linked FITS holds that cutout
            assert np.array_equal(hdus[0].data, np.asarray(dataset.images[row]), equal_nan=True)
        with Image.open(folder / cutout["image"]) as png:
            assert png.size == (16, 16)
    marker = json.loads((folder / "explorer.json").read_text())
    assert marker["kind"] == "hipsml-som-explorer" and marker["dataset"]["hash"] == dataset.hash


def test_a_rerun_replaces_the_explorer_whole_and_other_folders_are_refused(dataset, hex_som, hex_explorer, tmp_path):
    folder, mapping = hex_explorer
    copy = tmp_path / "explorer"
    shutil.copytree(folder, copy)
    (copy / "stale.txt").write_text("from an earlier run")
    assert write_explorer(hex_som, dataset, copy, mapping=mapping, k=2, top=3, channels=[1]) == copy
    assert not (copy / "stale.txt").exists() and read_data_js(copy)["k"] == 2
    assert len(read_data_js(copy)["outliers"]) == 3 and read_data_js(copy)["dataset"]["thumbnail_channels"] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explorer"]  # no staging folder left behind
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="holds no SOM explorer"):
        write_explorer(hex_som, dataset, mine, mapping=mapping)
    assert (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(OutputError, match="is a file, not a folder"):
        write_explorer(hex_som, dataset, mine / "notes.txt" / "explorer", mapping=mapping)
    with pytest.raises(InvalidInputError, match="no dataset rows"):
        write_explorer(hex_som, dataset, tmp_path / "x", mapping=hex_som.map(np.asarray(dataset.images[:4])))
    weights = np.random.default_rng(0).random((9, 2, 16, 16), dtype=np.float32)
    cartesian = SOM(SOMConfig(width=3, height=3, neuron_dim=16), weights)
    with pytest.raises(InvalidInputError, match="made by another SOM"):
        write_explorer(cartesian, dataset, tmp_path / "x", mapping=mapping)
    one_band = SOM(SOMConfig(width=3, height=3, neuron_dim=16), weights[:, :1])
    with pytest.raises(InvalidInputError, match="has 2 channels, the SOM 1"):
        write_explorer(one_band, dataset, tmp_path / "x")
    with pytest.raises(InvalidInputError, match=r"channels must be one channel \(grey\) or three"):
        write_explorer(hex_som, dataset, tmp_path / "x", mapping=mapping, channels=[0, 1])
    assert not (tmp_path / "x").exists()


def test_explore_command_uses_the_stored_mapping_and_fails_in_one_line(dataset, hex_som, tmp_path, capsys, caplog):
    somdir = tmp_path / "soms" / "tinyhex"
    hex_som.save(somdir)
    write_som_mapping(hex_som, dataset, name="tinyhex", som_path=somdir)
    write_som_mapping(hex_som, dataset, name="tinyhex-val", split="val", som_path=somdir)
    out = tmp_path / "web"
    caplog.set_level(logging.INFO, logger="hipsml.train.som._store")
    assert (
        main(
            [
                "-q",
                "som",
                "explore",
                str(somdir),
                "--dataset",
                f"{dataset.path}@v1",
                "--out",
                str(out),
                "--k",
                "3",
                "--top",
                "4",
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out and "using the stored mapping" in caplog.text
    data = read_data_js(out)
    mapping = read_som_mapping(dataset, "tinyhex")
    assert [[data["cutouts"][j]["row"] for j in n["members"]] for n in data["neurons"]] == [
        expected_gallery(mapping, n, 3) for n in range(7)
    ]
    assert [data["cutouts"][j]["row"] for j in data["outliers"]] == expected_outliers(mapping, 4)
    # a stored mapping of one split: only its cutouts are shown
    assert (
        main(
            [
                "-q",
                "som",
                "explore",
                str(somdir),
                "--dataset",
                str(dataset.path),
                "--out",
                str(out),
                "--name",
                "tinyhex-val",
                "--split",
                "val",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert {c["row"] for c in read_data_js(out)["cutouts"]} <= set(dataset.split("val").tolist())
    # errors: one line, exit 2
    for args, message in [
        (["--name", "nosuch"], "no SOM mapping 'nosuch'"),
        (["--name", "tinyhex-val"], "was not made by"),
        (["--out", str(somdir / "som.json" / "web")], "is a file, not a folder"),
        (["--out", str(somdir)], "holds no SOM explorer"),
    ]:
        argv = ["som", "explore", str(somdir), "--dataset", str(dataset.path), "--out", str(tmp_path / "web2"), *args]
        assert main(argv) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (args, err)
    assert (
        main(["som", "explore", str(tmp_path / "nosom"), "--dataset", str(dataset.path), "--out", str(tmp_path / "w")])
        == 2
    )
    assert "holds no saved SOM" in capsys.readouterr().err


def test_the_server_serves_the_folder_on_localhost_only(hex_explorer):
    folder, _ = hex_explorer
    server = explorer_server(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        for name in ("index.html", "data.js"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{name}", timeout=10) as response:
                assert response.status == 200 and response.read() == (folder / name).read_bytes()
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(InvalidInputError, match="holds no SOM explorer"):
        explorer_server(folder / "prototypes", port=0)


# --- the page in a real headless browser -------------------------------------------------------------------------


def test_clicking_a_prototype_shows_its_nearest_cutouts_in_a_browser(browser, dataset, hex_som, hex_explorer, tmp_path):
    from selenium.webdriver.common.by import By

    folder, mapping = hex_explorer
    data = read_data_js(folder)
    browser.get((folder / "index.html").resolve().as_uri())
    cells = browser.find_elements(By.CSS_SELECTOR, "#map .cell")
    assert len(cells) == 7
    # the cells sit where the prototype picture puts them: centres proportional to plot_centres
    rects = [c.rect for c in cells]
    centres = np.array([(r["x"] + r["width"] / 2, -(r["y"] + r["height"] / 2)) for r in rects])
    expected = plot_centres(hex_som.config)
    scale = rects[0]["width"]
    assert np.allclose((centres - centres[0]) / scale, expected - expected[0], atol=0.02)
    hits = np.bincount(mapping.bmu, minlength=7)
    neuron = int(np.argmax(hits))  # the busiest prototype: more cutouts than k
    assert hits[neuron] > 5
    browser.find_element(By.CSS_SELECTOR, f'#map .cell[data-neuron="{neuron}"]').click()
    cards = browser.find_elements(By.CSS_SELECTOR, "#gallery .card")
    rows = expected_gallery(mapping, neuron, 5)
    ids = [str(i) for i in dataset.column("id")[rows]]
    assert [c.find_element(By.CSS_SELECTOR, "dd.id").text for c in cards] == ids
    assert [int(c.get_attribute("data-row")) for c in cards] == rows
    shown = [float(c.find_element(By.CSS_SELECTOR, "dd.distance").text) for c in cards]
    assert shown == sorted(shown) and all(
        c.find_element(By.CSS_SELECTOR, "dd.neuron").text == str(neuron) for c in cards
    )
    link = cards[0].find_element(By.CSS_SELECTOR, "dd.fits a").get_attribute("href")
    assert link.startswith("file://") and Path(urllib.request.url2pathname(link[len("file://") :])).is_file()
    assert (
        f"Neuron {neuron}: {hits[neuron]} cutouts, the 5 nearest" == browser.find_element(By.ID, "gallery-title").text
    )
    # the heat map toggle: prototype images hidden, each cell coloured by its hit count
    cell = browser.find_element(By.CSS_SELECTOR, f'#map .cell[data-neuron="{neuron}"]')
    image = cell.find_element(By.TAG_NAME, "img")
    assert image.is_displayed() and not cell.find_element(By.CSS_SELECTOR, ".hits").is_displayed()
    browser.find_element(By.ID, "heatmap-toggle").click()
    assert not image.is_displayed() and cell.find_element(By.CSS_SELECTOR, ".hits").text == str(hits[neuron])
    colours = [c.value_of_css_property("background-color") for c in cells]
    assert colours[neuron] == _rgba(data["neurons"][neuron]["heat"]) and len(set(colours)) == len(set(hits.tolist()))
    browser.find_element(By.ID, "heatmap-toggle").click()
    assert image.is_displayed()
    # the outliers, largest distance first; clicking one selects its neuron
    outliers = browser.find_elements(By.CSS_SELECTOR, "#outliers .card")
    assert [int(c.get_attribute("data-row")) for c in outliers] == expected_outliers(mapping, 7)
    last = outliers[-1]
    bmu = int(last.find_element(By.CSS_SELECTOR, "dd.neuron").text)
    last.find_element(By.TAG_NAME, "img").click()
    assert "selected" in browser.find_element(By.CSS_SELECTOR, f'#map .cell[data-neuron="{bmu}"]').get_attribute(
        "class"
    )
    assert browser.get_log("browser") == [] if hasattr(browser, "get_log") else True
    shot = tmp_path / "explorer.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"


def _rgba(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, 1)"


def test_explore_serve_in_a_real_process_stops_on_ctrl_c(dataset, hex_som, tmp_path):
    import signal
    import subprocess
    import sys

    somdir = hex_som.save(tmp_path / "som")
    out = tmp_path / "web"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hipsml.cli",
            "-q",
            "som",
            "explore",
            str(somdir),
            "--dataset",
            str(dataset.path),
            "--out",
            str(out),
            "--k",
            "2",
            "--top",
            "2",
            "--serve",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
        preexec_fn=with_default_sigint,  # Ctrl-C reaches it even when the suite runs in the background
    )  # this checkout's hipsml
    try:
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert lines[0].startswith(f"wrote {out}") and "serving" in lines[1], (lines, process.stderr.read())
        url = lines[1].split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "data.js", timeout=10) as response:
            assert response.read() == (out / "data.js").read_bytes()
        process.send_signal(signal.SIGINT)
        # communicate drains both pipes: a child blocked writing to a full stderr pipe could never exit
        rest, err = process.communicate(timeout=120)
        assert process.returncode == 0 and "stopped" in rest, (rest, err[-2000:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
