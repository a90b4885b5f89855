"""``hipsml report`` on a generated dataset with a tiny SOM and a tiny CNN run, read in headless Chromium.

The dataset is written here as a published Zarr version of 8x8 two-channel cutouts (a point or a
blob under noise, NaN corners in one channel). Its class and channel names are hostile HTML, so
the page must escape them. Expected values come from numpy on the stored arrays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import hipsml
from hipsml.cli import main
from hipsml.errors import OutputError
from hipsml.report import (
    confident_mistakes,
    coverage_per_channel,
    purity_per_neuron,
    write_report,
)
from hipsml.train import train_cnn, train_som

HOSTILE = "<script>window.pwned=1</script>"
CLASSES = ["point", HOSTILE]
CHANNELS = ["r<b>", "radio"]


def make_dataset(root, *, n: int = 96, size: int = 8, seed: int = 0) -> hipsml.Dataset:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    labels = rng.integers(0, 2, n)
    images = rng.normal(0.0, 0.2, (n, 2, size, size)).astype(np.float32)
    r2 = yy**2 + xx**2
    for i, k in enumerate(labels):
        images[i] += (np.exp(-r2 / 1.0) if k == 0 else np.exp(-r2 / 8.0)) * rng.uniform(1, 2)
    images[::4, 1, :2, :2] = np.nan  # a quarter of the cutouts lack 4 of 64 pixels in channel 1
    split = np.tile(np.array([0, 0, 0, 1, 2, 2], np.int8), n // 6)
    group = zarr.open_group(root / "v1", mode="w", zarr_format=3)
    group.create_array("images", data=images, chunks=(32, 2, size, size))
    group.create_array("label", data=labels.astype(np.int64), chunks=(n,)).attrs["names"] = CLASSES
    group.create_array("split", data=split, chunks=(n,)).attrs["names"] = ["train", "val", "test"]
    group.create_array("id", data=np.arange(1000, 1000 + n, dtype=np.int64), chunks=(n,))
    group.create_array("ra", data=np.linspace(10.0, 11.0, n), chunks=(n,))
    group.create_array("dec", data=np.linspace(-5.0, -4.0, n), chunks=(n,))
    group.attrs["hipsml"] = {
        "complete": True,
        "version": 1,
        "hash": f"generated-{seed}",
        "count": n,
        "channels": CHANNELS,
        "name": "mine",
        "surveys": [{"location": f"sky/{c}", "order": 8} for c in ("r", "radio")],
        "geometry": {
            "size": size,
            "pixel_scale_arcsec": 4.0,
            "projection": "TAN",
            "interpolation": "bilinear",
            "rotation": 0.0,
        },
    }
    return hipsml.open_dataset(root)


def test_the_pure_parts_by_hand():
    x = np.ones((4, 2, 2, 2), np.float32)
    x[0, 1] = np.nan
    assert coverage_per_channel(x).tolist() == [1.0, 0.75]
    assert purity_per_neuron(np.array([1, 1, 1, 1, 3]), np.array([0, 1, 1, 1, 0]), 4) == [
        (1, 4, 1, 0.75),
        (3, 1, 0, 1.0),
    ]
    p = np.array([[0.6, 0.4], [0.1, 0.9], [0.95, 0.05], [0.3, 0.7], [0.8, 0.2]])
    # wrong: 0 (0.6), 2 (0.95), 4 (0.8); right: 1, 3
    assert confident_mistakes(p, np.array([1, 1, 1, 1, 1]), 10).tolist() == [2, 4, 0]
    assert confident_mistakes(p, np.array([1, 1, 1, 1, 1]), 2).tolist() == [2, 4]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    ds = make_dataset(base / "mine")
    som = train_som(ds, width=2, height=2, numrot=4, neuron_dim=8, epochs=1, init="random", seed=1, progress=False)
    som.save(base / "som")
    train_cnn(ds, {"stem_channels": 8, "stem_stride": 2, "widths": [8], "groups": 4, "batch_size": 16,
                   "learning_rate": 5e-3}, workdir=base / "run", epochs=1)  # fmt: skip
    return base, ds


def test_hipsml_report_writes_the_page_for_your_own_data(browser, made, capsys):
    from selenium.webdriver.common.by import By

    base, ds = made
    out = base / "page"
    # predictions of one split only, stored under the run's name by the user: the report must leave them
    from hipsml.train import predict_cnn, read_cnn_predictions

    predict_cnn(base / "run", ds, split="test")
    mine = read_cnn_predictions(ds, "run")
    assert (
        main(["report", f"{ds.path}@v1", "--som", str(base / "som"), "--cnn", str(base / "run"), "--out", str(out)])
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    browser.get((out / "index.html").resolve().as_uri())
    assert browser.execute_script("return window.pwned") is None  # the class name did not run
    body = browser.find_element(By.TAG_NAME, "body").text
    assert HOSTILE in body and "r<b>" in body  # shown as text
    widths = browser.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(widths) >= 8 and all(complete and width > 0 for complete, width in widths), widths

    def table(ident):
        return [
            [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
            for row in browser.find_elements(By.CSS_SELECTOR, f"#{ident} tbody tr")
        ]

    # coverage per channel: channel 1 lacks 4 of 64 pixels in a quarter of the cutouts
    assert table("coverage") == [["r<b>", "1.0000"], ["radio", f"{1 - 0.25 * 4 / 64:.4f}"]]
    # the user's test-split predictions are as they were (the report predicted every cutout in memory)
    kept = read_cnn_predictions(ds, "run")
    assert np.array_equal(kept.rows, mine.rows) and kept.attrs["split"] == "test"
    # accuracy per split and per class, by hand from predictions of every cutout by the same model
    stored = zarr.open_group(predict_cnn(base / "run", ds, name="every"))
    rows, predicted, probabilities = stored["rows"][:], stored["predicted"][:], stored["probabilities"][:]
    truth, split = ds.column("label")[rows], ds.column("split")[rows]
    expected = []
    for s, name in enumerate(["train", "val", "test"]):
        here = split == s
        per_class = [f"{(predicted[here & (truth == k)] == k).mean():.4f}" for k in range(2)]
        expected.append([name, str(int(here.sum())), f"{(predicted[here] == truth[here]).mean():.4f}", *per_class])
    assert table("cnn1-accuracy") == expected
    # the mistakes: the most confident wrong predictions first
    wrong = np.flatnonzero(predicted != truth)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:24]
    captions = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#cnn1-mistakes li")]
    assert len(captions) == len(order) > 0
    assert captions[0] == (
        f"id {1000 + rows[order[0]]}: {CLASSES[truth[order[0]]]} taken for "
        f"{CLASSES[predicted[order[0]]]} (p={probabilities[order[0]].max():.3f})"
    )
    shown = [float(c.rsplit("p=", 1)[1].rstrip(")")) for c in captions]
    assert shown == sorted(shown, reverse=True)
    # the SOM's purity per neuron, by hand from a fresh mapping
    som = hipsml.load_som(base / "som")
    mapping = som.map(ds, progress=False)
    labels = ds.column("label")[mapping.rows]
    first = int(np.min(mapping.bmu))
    mine = labels[mapping.bmu == first]
    counts = np.bincount(mine, minlength=2)
    assert table("purity")[0] == [
        str(first),
        str(mine.size),
        CLASSES[int(counts.argmax())],
        f"{counts.max() / mine.size:.3f}",
    ]
    # the best epoch as metrics.json says, and the commands
    metrics = json.loads((base / "run" / "metrics.json").read_text())
    assert f"the best (marked) is epoch {metrics['best_epoch']}" in body
    commands = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "pre.command")]
    assert any(c.startswith("hipsml preview ") for c in commands) and any(
        c.startswith("hipsml predict ") for c in commands
    )
    browser.find_element(By.LINK_TEXT, "Open the SOM explorer").click()
    assert browser.current_url.endswith("/page/explorer/index.html")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#map .cell")) == 4


def test_a_report_replaces_an_earlier_one_and_refuses_other_folders(made, tmp_path, capsys):
    _base, ds = made
    index = write_report(ds, tmp_path / "r", channels="radio")
    assert index == tmp_path / "r" / "index.html" and "channels radio" in index.read_text()
    assert write_report(ds, tmp_path / "r") == index  # an earlier report is replaced
    assert "SOM" not in (tmp_path / "r" / "index.html").read_text().split("<h1>")[1].split("</h1>")[0]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="holds no hipsml report"):
        write_report(ds, tmp_path / "mine")
    assert main(["report", str(ds.path), "--out", str(tmp_path / "x"), "--channels", "radoi"]) == 2
    assert "unknown channel 'radoi' (did you mean 'radio'?)" in capsys.readouterr().err


def test_preview_and_som_outliers_take_channels_and_name_them(made, tmp_path, capsys):
    from PIL import Image

    base, ds = made
    assert main(["preview", str(ds.path), "--out", str(tmp_path / "p.png"), "--channels", "radio"]) == 0
    assert "channels radio" in capsys.readouterr().out
    with Image.open(tmp_path / "p.png") as picture:
        assert picture.text["channels"] == "radio"
    assert (
        main(
            [
                "som",
                "outliers",
                str(base / "som"),
                "--dataset",
                str(ds.path),
                "--top",
                "3",
                "--out",
                str(tmp_path / "o.png"),
                "--channels",
                "1,0,1",
            ]
        )
        == 0
    )
    assert "channels R=radio G=r<b> B=radio" in capsys.readouterr().out
    with Image.open(tmp_path / "o.png") as picture:
        assert picture.text["channels"] == "R=radio G=r<b> B=radio"
