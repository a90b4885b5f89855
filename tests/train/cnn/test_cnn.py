"""The residual CNN on hipsml datasets: training, checkpoints and resume, predictions, fine-tuning, CLI.

The datasets are generated here: small Zarr versions of 16x16 cutouts whose classes are shapes
(a point, a wide blob, a ring, a cross) at random amplitude and sub-pixel offset under noise, with
NaN corners, so that a tiny model learns them in a few epochs on two CPU cores. Expected values
come from numpy on the raw arrays or from the saved files; where a test is about something else
(the ensemble's averaging, the stored probabilities), the inputs are normalised with the library's
own parse_normalisation, which tests/train/loaders checks against numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import zarr
from dataset_helpers import make_dataset

import hipsml
from hipsml.cli import main
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train import (
    CNNConfig,
    augment,
    load_cnn,
    parse_normalisation,
    predict_cnn,
    read_cnn_predictions,
    train_cnn,
)

TINY = {"stem_channels": 8, "stem_stride": 2, "widths": [8, 16], "groups": 4, "batch_size": 32, "learning_rate": 5e-3}


@pytest.fixture(autouse=True, scope="module")
def strict_dtype_promotion():
    with jax.numpy_dtype_promotion("strict"):
        yield


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        os.fspath(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leaves(model) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> hipsml.Dataset:
    return make_dataset(tmp_path_factory.mktemp("cnn") / "shapes", n=360)


@pytest.fixture(scope="module")
def pretrained(shapes, tmp_path_factory):
    """A run trained for 6 epochs on the three-shape dataset."""
    return train_cnn(shapes, TINY, workdir=tmp_path_factory.mktemp("runs") / "shapes", epochs=6, patience=None)


def test_one_epoch_writes_the_run_folder(shapes, tmp_path):
    result = train_cnn(shapes, TINY, workdir=tmp_path / "run", epochs=1)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "run.json",
        "model.eqx",
        "checkpoint.json",
        "checkpoints",
        "metrics.json",
        "confusion.png",
        "curves.png",
    } <= names
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    test_rows = shapes.split("test")
    confusion = np.array(metrics["test"]["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == test_rows.size
    truth = np.bincount(shapes.column("label")[test_rows], minlength=3)
    assert confusion.sum(axis=1).tolist() == truth.tolist()
    assert metrics["test"]["accuracy"] == pytest.approx(np.trace(confusion) / test_rows.size)
    assert len(metrics["history"]) == 1 and result.history[0]["epoch"] == 0
    assert result.history[0]["step"] == shapes.split("train").size // 32
    assert result.checkpoint == tmp_path / "run" / "model.eqx"
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["label_names"] == ["point", "blob", "ring"] and run["model"]["in_channels"] == 2
    assert run["normalisation"]["name"] == "standardise" and len(run["normalisation"]["stats"]["mean"]) == 2


def test_a_separable_set_is_learned_far_above_chance(pretrained):
    assert pretrained.metrics["test"]["accuracy"] > 0.85  # chance: 1/3
    assert min(pretrained.metrics["test"]["per_class"]) > 0.6


def test_resume_after_a_crash_gives_the_uninterrupted_state(shapes, tmp_path):
    options = {**TINY, "epochs": 2, "patience": None}
    whole = train_cnn(shapes, options, workdir=tmp_path / "whole")

    def crash(record):
        if record["epoch"] == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cnn(shapes, options, workdir=tmp_path / "parts", on_epoch=crash)
    assert json.loads((tmp_path / "parts" / "checkpoint.json").read_text())["epoch"] == 0
    with pytest.raises(OutputError, match="resume"):
        train_cnn(shapes, options, workdir=tmp_path / "parts")
    resumed = train_cnn(shapes, options, workdir=tmp_path / "parts", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    for a, b in zip(leaves(resumed.model), leaves(whole.model), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidInputError, match="learning_rate"):
        train_cnn(shapes, {**options, "learning_rate": 0.1}, workdir=tmp_path / "parts", resume=True)


def test_predictions_land_beside_the_version_which_stays_unchanged(shapes, pretrained):
    version = shapes.path / "v1"
    before = tree_digest(version)
    folder = predict_cnn(pretrained.workdir, shapes, split="test", name="shapes-test")
    assert folder == shapes.path / "derived" / "v1" / "cnn" / "shapes-test"
    assert tree_digest(version) == before
    got = read_cnn_predictions(shapes, "shapes-test")
    rows = shapes.split("test")
    assert got.rows.tolist() == rows.tolist()
    # the same probabilities from the raw arrays: training statistics, NaN -> 0, the saved model
    loaded = load_cnn(pretrained.workdir)
    model, run = loaded.model, loaded.run
    images = parse_normalisation(run["normalisation"])(np.asarray(shapes.images[:])[rows])
    images = np.nan_to_num(images, nan=0.0)
    expected = np.asarray(jax.nn.softmax(jax.vmap(model)(jnp.asarray(images)), axis=1))
    np.testing.assert_allclose(got.probabilities, expected, atol=1e-5)
    assert got.predicted.tolist() == expected.argmax(axis=1).tolist()
    assert zarr.open_group(folder)["predicted"].attrs["names"] == ["point", "blob", "ring"]
    with pytest.raises(OutputError, match="exists"):
        predict_cnn(pretrained.workdir, shapes, split="test", name="shapes-test")


def _probabilities_by_hand(workdir: Path, ds: hipsml.Dataset, rows: np.ndarray) -> np.ndarray:
    loaded = load_cnn(workdir)
    model, run = loaded.model, loaded.run
    images = np.nan_to_num(parse_normalisation(run["normalisation"])(np.asarray(ds.images[:])[rows]), nan=0.0)
    return np.asarray(jax.nn.softmax(jax.vmap(model)(jnp.asarray(images)), axis=1))


def test_an_ensemble_of_runs_averages_their_probabilities(shapes, pretrained, tmp_path):
    other = train_cnn(shapes, {**TINY, "seed": 7, "normalise": "minmax"}, workdir=tmp_path / "other", epochs=2)
    folder = predict_cnn([pretrained.workdir, other.workdir], shapes, split="val")
    assert folder.name == "shapes-ensemble2"
    got = read_cnn_predictions(shapes, folder.name)
    rows = shapes.split("val")
    assert got.rows.tolist() == rows.tolist()
    # each member normalises the cutouts its own way; the ensemble is the plain mean
    expected = (
        _probabilities_by_hand(pretrained.workdir, shapes, rows) + _probabilities_by_hand(other.workdir, shapes, rows)
    ) / 2
    np.testing.assert_allclose(got.probabilities, expected, atol=1e-5)
    assert got.predicted.tolist() == expected.argmax(axis=1).tolist()
    members = got.attrs["ensemble"]
    assert [m["path"] for m in members] == [str(pretrained.workdir.resolve()), str((tmp_path / "other").resolve())]
    assert got.attrs["model"] == members[0]


def test_an_ensemble_refuses_runs_with_other_classes(shapes, pretrained, tmp_path):
    crosses = make_dataset(tmp_path / "crosses", n=120, classes=("point", "cross", "ring"), seed=3)
    run = train_cnn(crosses, TINY, workdir=tmp_path / "crosses-run", epochs=1)
    with pytest.raises(InvalidInputError, match="share their classes"):
        predict_cnn([pretrained.workdir, run.workdir], shapes, split="val", name="mixed")
    assert not (shapes.path / "derived" / "v1" / "cnn" / "mixed").exists()
    with pytest.raises(InvalidInputError, match="at least one"):
        predict_cnn([], shapes)


def test_fine_tuning_freezes_what_it_says(pretrained, tmp_path):
    source = load_cnn(pretrained.workdir).model
    other = make_dataset(tmp_path / "other", n=96, channels=3, classes=("ring", "cross"), seed=5)
    tuned = train_cnn(other, TINY, workdir=tmp_path / "tuned", init=pretrained.workdir, freeze=2, epochs=1)
    model = tuned.model
    assert model.head.weight.shape == (2, 16) and model.stem.weight.shape[1] == 3  # new head, new stem
    for a, b in zip(leaves(model.stages[0]), leaves(source.stages[0]), strict=True):  # stage 2 (first residual): frozen
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(model.stages[1]), leaves(source.stages[1]), strict=True))
    run = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert run["transfer"]["freeze"] == 2 and run["transfer"]["stem_rebuilt"] is True
    with pytest.raises(InvalidInputError, match="freeze"):
        train_cnn(other, TINY, workdir=tmp_path / "x", freeze=1)


def test_fine_tuning_beats_training_from_scratch_on_a_small_set(pretrained, tmp_path):
    # another dataset: two of the shapes, noisier, labelled differently, 20 training cutouts
    small = make_dataset(
        tmp_path / "small", n=300, classes=("ring", "point"), noise=0.8, seed=11, fractions=(0.05, 0.15, 0.8)
    )
    assert small.split("train").size == 20
    options = {**TINY, "batch_size": 4, "epochs": 5, "patience": None}
    scratch = train_cnn(small, options, workdir=tmp_path / "scratch")
    tuned = train_cnn(small, options, workdir=tmp_path / "tuned", init=pretrained.workdir, freeze=1)
    # seeded: measured 0.18 against 0.45 (test loss), 1.0 against 0.98 (accuracy)
    assert tuned.metrics["test"]["loss"] < 0.7 * scratch.metrics["test"]["loss"]
    assert tuned.metrics["test"]["accuracy"] > scratch.metrics["test"]["accuracy"]


def test_augment_applies_one_exact_symmetry_per_cutout():
    x = jnp.arange(64 * 1 * 5 * 5, dtype=jnp.float32).reshape(64, 1, 5, 5)
    y = np.asarray(augment(x, key=jax.random.PRNGKey(3)))
    seen = set()
    for i in range(64):
        candidates = [
            np.rot90(img, k, axes=(1, 2)) for img in (np.asarray(x[i]), np.asarray(x[i])[..., ::-1]) for k in range(4)
        ]
        match = [j for j, c in enumerate(candidates) if np.array_equal(c, y[i])]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == set(range(8))


def test_bad_options_are_one_line_errors(shapes, tmp_path):
    with pytest.raises(InvalidInputError, match="did you mean 'epochs'"):
        CNNConfig.from_mapping({"epoch": 2})
    with pytest.raises(InvalidInputError, match="batch_size 1000 is larger"):
        train_cnn(shapes, {**TINY, "batch_size": 1000}, workdir=tmp_path / "big")


def test_metrics_count_epochs_from_one_and_the_curves_mark_the_best(pretrained):
    from hipsml.train.cnn._plots import curves_figure

    metrics = json.loads((pretrained.workdir / "metrics.json").read_text())
    losses = [r["val_loss"] for r in metrics["history"]]
    best = int(np.argmin(losses)) + 1
    assert metrics["best_epoch"] == best and "from 1" in metrics["epoch_numbering"]
    figure = curves_figure(metrics["history"], best_epoch=best)
    for ax in figure.axes:
        marks = [line for line in ax.get_lines() if line.get_label() == f"best epoch {best}"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [best, best]
        trained = next(line for line in ax.get_lines() if line.get_label() == "validation")
        assert list(trained.get_xdata()) == list(range(1, len(losses) + 1))  # the same count on the x axis


def test_cli_trains_and_predicts(shapes, pretrained, tmp_path, capsys):
    config = tmp_path / "cnn.yaml"
    config.write_text("cnn:\n  epochs: 1\n  stem_channels: 8\n  stem_stride: 2\n  widths: [8, 16]\n  batch_size: 32\n")
    out = tmp_path / "clirun"
    assert main(["train", "cnn", "--dataset", f"{shapes.path}@v1", "--config", str(config), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "epoch 1/1: loss" in text and "images/s" in text and "test accuracy" in text
    assert (out / "confusion.png").is_file() and (out / "curves.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"best epoch {metrics['best_epoch']} of 1" in text and metrics["best_epoch"] == 1  # counted alike
    assert main(["predict", str(out), "--dataset", str(shapes.path)]) == 0
    text = capsys.readouterr().out
    assert f"class probabilities of {len(shapes)} cutouts" in text
    folder = shapes.path / "derived" / "v1" / "cnn" / "clirun"
    assert f"probabilities: {folder / 'probabilities'}" in text
    # accuracy per split, by hand from the stored arrays (the classes are in the dataset's order)
    stored = zarr.open_group(folder)
    predicted, rows = stored["predicted"][:], stored["rows"][:]
    right = predicted == shapes.column("label")[rows]
    parts = []
    for s, name in enumerate(["train", "val", "test"]):
        here = shapes.column("split")[rows] == s
        parts.append(f"{name} {right[here].mean():.4f} ({int(right[here].sum())}/{int(here.sum())})")
    assert "accuracy by split: " + ", ".join(parts) in text
    probs = zarr.open_group(shapes.path / "derived" / "v1" / "cnn" / "clirun")["probabilities"][:]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert main(["predict", str(out), str(pretrained.workdir), "--dataset", str(shapes.path), "--split", "val"]) == 0
    assert "class probabilities of" in capsys.readouterr().out
    both = read_cnn_predictions(shapes, "clirun-ensemble2")
    assert len(both.attrs["ensemble"]) == 2 and both.rows.tolist() == shapes.split("val").tolist()
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 2\n")
    assert (
        main(["train", "cnn", "--dataset", str(shapes.path), "--config", str(bad), "--out", str(tmp_path / "b")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'epochs'" in err and "bad.yaml" in err


def test_bfloat16_steps_keep_float32_master_weights():
    from hipsml.train import ModelSpec, build_model, train_step
    from hipsml.train.cnn._train import _optimizer

    model = build_model(ModelSpec(1, 2, stem_channels=4, stem_stride=2, widths=(4,)), key=jax.random.PRNGKey(0))
    optimizer = _optimizer(CNNConfig(), None)
    state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    images = jnp.asarray(np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32))
    new, _, loss, _ = train_step(
        model,
        state,
        images,
        jnp.array([0, 1, 0, 1], dtype=jnp.int32),
        jnp.ones(2),
        jnp.float32(1e-2),
        key=jax.random.PRNGKey(1),
        optimizer=optimizer,
        augmented=True,
        dtype=jnp.bfloat16,
    )
    assert all(a.dtype == np.float32 for a in leaves(new)) and np.isfinite(float(loss))
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(new), leaves(model), strict=True))


@pytest.mark.gpu
def test_gpu_training_computes_in_bfloat16_and_learns(shapes, tmp_path):
    from hipsml.train.cnn._steps import compute_dtype

    assert compute_dtype("auto") == jnp.bfloat16  # auto means bf16 compute on a GPU
    result = train_cnn(shapes, TINY, workdir=tmp_path / "gpu", epochs=6, patience=None)
    assert result.metrics["test"]["accuracy"] > 0.85  # chance: 1/3
    assert all(a.dtype == np.float32 for a in leaves(result.model))  # master weights stay float32
