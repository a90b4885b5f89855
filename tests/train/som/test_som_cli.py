"""The ``hipsml som`` commands: train (progress, pictures, resume), map (beside the version), outliers.

The commands run in-process through ``hipsml.cli.main`` on a dataset extracted into tmp_path;
the SOMs are 3x3 with numrot 4 on 16x16 cutouts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from test_som_dataset import SOM_OPTIONS, extract_small_dataset, tree_digest

from hipsml.cli import main
from hipsml.train import load_som, read_som_mapping, som_outliers, train_som

FLAGS = ["--width", "3", "--height", "3", "--numrot", "4", "--neuron-dim", "16", "--init", "random", "--seed", "7"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return extract_small_dataset(tmp_path_factory.mktemp("som-cli-dataset"))


def test_train_map_outliers_from_the_command_line(dataset, tmp_path, capsys):
    somdir = tmp_path / "soms" / "tiny"
    before = tree_digest(dataset.location)
    code = main(
        ["-q", "som", "train", "--dataset", f"{dataset.path}@v1", *FLAGS, "--epochs", "2", "--out", str(somdir)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        "epoch 1/2: " in out
        and "(includes compiling)" in out
        and "epoch 2/2:" in out
        and "images/s" in out
        and "quantisation error" in out
    )
    for name in ("som.json", "weights.npz", "prototypes.png", "hits.png", "umatrix.png", "errors.png"):
        assert (somdir / name).is_file(), name
    for name in ("prototypes.png", "hits.png", "umatrix.png", "errors.png"):
        assert (somdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    som = load_som(somdir)
    assert len(som.history) == 2 and som.training["split"] == "train" and som.training["hash"] == dataset.hash
    assert np.array_equal(som.training_rows, dataset.split("train"))
    # the same SOM as the library trains
    same = train_som(dataset, epochs=2, progress=False, **SOM_OPTIONS)
    assert np.array_equal(som.weights, same.weights)

    assert main(["-q", "som", "map", str(somdir), "--dataset", str(dataset.path)]) == 0
    out = capsys.readouterr().out
    folder = dataset.path / "derived" / "v1" / "som" / "tiny"
    assert f"wrote {folder}" in out
    group = zarr.open_group(folder, mode="r")
    assert np.array_equal(group["bmu"][:], som.map(dataset).bmu)
    assert tree_digest(dataset.location) == before
    assert (
        main(["-q", "som", "map", str(somdir), "--dataset", str(dataset.path), "--split", "val", "--name", "val"]) == 0
    )
    assert np.array_equal(read_som_mapping(dataset, "val").rows, dataset.split("val"))
    capsys.readouterr()

    png = tmp_path / "outliers.png"
    assert (
        main(["-q", "som", "outliers", str(somdir), "--dataset", str(dataset.path), "--top", "6", "--out", str(png)])
        == 0
    )
    out = capsys.readouterr().out
    with Image.open(png) as picture:
        assert picture.format == "PNG"
    first = int(som_outliers(read_som_mapping(dataset, "tiny"), top=1)[0])
    line = out.splitlines()[2].split()
    assert line[0] == "1" and int(line[1]) == first and line[2] == str(dataset.column("id")[first])


def test_resume_continues_the_saved_training(dataset, tmp_path, capsys):
    somdir = tmp_path / "som"
    args = ["-q", "som", "train", "--dataset", str(dataset.path), *FLAGS, "--out", str(somdir)]
    assert main([*args, "--epochs", "1"]) == 0
    assert len(load_som(somdir).history) == 1
    capsys.readouterr()
    # without --resume the folder is not overwritten
    assert main([*args, "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--resume" in err
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch 2/3:" in out and "epoch 3/3:" in out and "epoch 1/3:" not in out
    resumed = load_som(somdir)
    assert [r.epoch for r in resumed.history] == [0, 1, 2]
    # constant schedule: the same SOM as three uninterrupted epochs
    whole = train_som(dataset, epochs=3, progress=False, **SOM_OPTIONS)
    assert np.array_equal(resumed.weights, whole.weights)
    (somdir / "hits.png").unlink()  # as if stopped after the last epoch, before the pictures
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (somdir / "hits.png").read_bytes()[:4] == b"\x89PNG"
    # a changed option is refused
    assert main([*args[:-2], "--numrot", "8", "--epochs", "4", "--out", str(somdir), "--resume"]) == 2
    assert "numrot=4 -> 8" in capsys.readouterr().err


def test_bad_config_is_one_line_with_a_hint_and_exit_2(dataset, tmp_path, capsys):
    config = tmp_path / "som.yaml"
    config.write_text("widht: 3\nnumrot: 4\n")
    code = main(["som", "train", "--dataset", str(dataset.path), "--config", str(config), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "did you mean 'width'" in err
    assert not (tmp_path / "s").exists()
    assert (
        main(["som", "train", "--dataset", str(dataset.path), "--layout", "hexagonl", "--out", str(tmp_path / "s")])
        == 2
    )
    assert "did you mean 'hexagonal'" in capsys.readouterr().err
    assert (
        main(["som", "train", "--dataset", str(dataset.path), "--split", "trian", *FLAGS, "--out", str(tmp_path / "s")])
        == 2
    )
    assert "no split 'trian'" in capsys.readouterr().err
    assert main(["som", "map", str(tmp_path / "nosom"), "--dataset", str(dataset.path)]) == 2
    assert "holds no saved SOM" in capsys.readouterr().err


def test_a_real_hipsml_process_reports_a_bad_option_in_one_line(tmp_path):
    config = tmp_path / "som.yaml"
    config.write_text("som:\n  numrots: 8\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hipsml.cli",
            "som",
            "train",
            "--dataset",
            str(tmp_path / "none"),
            "--config",
            str(config),
            "--out",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )  # this checkout's hipsml, not an installed one
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["hipsml: error: unknown SOM option 'numrots'; did you mean 'numrot'?"]
