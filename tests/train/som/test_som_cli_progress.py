"""``hipsml som train`` says what it is about to do, then shows a progress bar through every epoch."""

from __future__ import annotations

import re

import pytest
from test_som_dataset import extract_small_dataset

from hipsml.cli import build_parser, main
from hipsml.train import SOMConfig, training_summary

FLAGS = ["--width", "3", "--height", "2", "--numrot", "4", "--neuron-dim", "16", "--init", "random", "--seed", "7"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return extract_small_dataset(tmp_path_factory.mktemp("som-progress-dataset"))


def test_the_configuration_line_then_a_bar_through_every_epoch(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # draw every update (tqdm otherwise waits 0.1 s between draws)
    n = len(dataset)  # 120 cutouts: two chunks of the online mode (64 + 56) per epoch
    code = main(["som", "train", "--dataset", f"{dataset.path}@v1", "--split", "all", *FLAGS, "--epochs", "2",
                 "--mode", "online", "--out", str(tmp_path / "som")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.err.replace("\r", "\n").splitlines()
    config = [line for line in lines if line.startswith("training a SOM: ")]
    assert config == [
        (
            "training a SOM: layout cartesian, width 3, height 2, numrot 4 (8 transforms with flips), neuron_dim 16, "
            "epochs 2, from random, online mode, sigma 1.1, damping 0.2, normalise minmax, seed 7, "
            f"on {n} images of 2×16×16 ({dataset.path}@v1 split all)"
        )
    ]
    assert lines.index(config[0]) < min(i for i, line in enumerate(lines) if "SOM epoch" in line)  # first
    for epoch in (1, 2):
        bar = [line for line in lines if line.startswith(f"SOM epoch {epoch}/2")]
        counts = [int(m.group(1)) for line in bar if (m := re.search(rf"\| (\d+)/{n} ", line))]
        assert 64 in counts and counts[-1] == n, (epoch, counts)  # it moves within the epoch
    assert "epoch 2/2: " in captured.out  # the per-epoch summary is still on stdout


def test_quiet_keeps_the_configuration_line_and_drops_the_bars(dataset, tmp_path, capsys):
    assert main(["-q", "som", "train", "--dataset", str(dataset.path), *FLAGS, "--out", str(tmp_path / "q")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("training a SOM: layout cartesian, width 3, height 2,") and "split train)" in err
    assert "SOM epoch" not in err and err.count("\n") == 1


def test_the_summary_and_the_help_agree_with_somconfig(dataset):
    # the library's summary, with the defaults: what a bare `hipsml som train` does
    line = training_summary(dataset)
    d = SOMConfig()
    assert line.startswith(f"training a SOM: layout {d.layout}, width {d.width}, height {d.height}, numrot {d.numrot} "
                           f"({2 * d.numrot} transforms with flips), neuron_dim ")  # fmt: skip
    assert f"epochs {d.epochs}, from {d.init}, " in line and "normalise minmax" in line
    assert line.endswith(f"on {len(dataset.split('train'))} images of 2×16×16 ({dataset.path}@v1 split train)")
    # the defaults the help text names are SOMConfig's
    sub = build_parser()._subparsers._group_actions[0].choices["som"]._subparsers._group_actions[0]
    text = " ".join(sub.choices["train"].format_help().split())
    assert (
        f"a {d.width}x{d.height} {d.layout} map, numrot {d.numrot}, one epoch, from {d.init}"
    ) in text and d.epochs == 1
