"""The CNN trained straight from the sky (``source="sky"``) and with interpolated pixel rotations.

A small real sky (``hipsml.sky.make_sky``, two bands, 120 labelled sources) and a dataset cut from
it (32x32 at 4"/px) are built in ``tmp_path``. What a sky run trains on is seen by wrapping the real
``train_step`` (it still computes); the expected batches are cut here with ``hipsml.cutouts`` and
standardised with numpy from the run's saved statistics. The pixel rotation is checked against
``scipy.ndimage.rotate``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dataset_helpers import recipe_data, small_sky
from scipy import ndimage

import hipsml
from hipsml.cli import main
from hipsml.errors import HipsmlError, InvalidInputError, SurveyNotFoundError
from hipsml.train import CNNConfig, augment, rotate_pixels, sky_batches, train_cnn
from hipsml.train.cnn import _train as _cnn_train

TINY = {"stem_channels": 8, "stem_stride": 2, "widths": [8, 16], "groups": 4, "batch_size": 16, "learning_rate": 5e-3}


@pytest.fixture(autouse=True, scope="module")
def strict_dtype_promotion():
    with jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> Path:
    return small_sky(tmp_path_factory.mktemp("cnn-sky"))


@pytest.fixture(scope="module")
def ds(sky, tmp_path_factory) -> hipsml.Dataset:
    # 120 cutouts of 2 x 32 x 32 (r, radio), healpix splits 60/20/20
    return hipsml.extract_dataset(recipe_data(sky, tmp_path_factory.mktemp("cnn-sky-ds") / "ds"))


@pytest.fixture
def trained_batches(monkeypatch) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """``(images, labels, pixel_rotation)`` of every training step, on the way into the real ``train_step``."""
    seen: list[tuple[np.ndarray, np.ndarray, bool]] = []
    real = _cnn_train.train_step

    def recording(model, opt_state, images, labels, *args, **kwargs):
        seen.append((np.asarray(images), np.asarray(labels), kwargs["pixel_rotation"]))
        return real(model, opt_state, images, labels, *args, **kwargs)

    monkeypatch.setattr(_cnn_train, "train_step", recording)
    return seen


def leaves(model) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


def standardised(images: np.ndarray, stats: dict) -> np.ndarray:
    mean = np.asarray(stats["mean"])[None, :, None, None]
    std = np.asarray(stats["std"])[None, :, None, None]
    return np.nan_to_num((images - mean) / std, nan=0.0)


def test_a_sky_epoch_trains_on_fresh_rotated_cuts_not_the_stored_cutouts(ds, sky, tmp_path, trained_batches):
    result = train_cnn(ds, {**TINY, "source": "sky", "seed": 4}, workdir=tmp_path / "run", epochs=1)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["source"] == "sky" and run["config"]["source"] == "sky" and metrics["source"] == "sky"
    assert result.history[0]["source"] == "sky"
    train = ds.split("train")
    assert len(trained_batches) == train.size // 16 and metrics["test"]["count"] == ds.split("test").size
    # this epoch's first batch: its targets cut at their angles, standardised with the stored split's statistics
    plan = sky_batches(ds, split="train", seed=4, epoch=0, batch_size=16, drop_last=True, nan_to=None)
    rows = next(iter(plan)).rows
    aug = plan.augmentation().select(rows)
    surveys = [hipsml.open_survey(sky / "r"), hipsml.open_survey(sky / "radio")]
    cut = np.concatenate([hipsml.cutouts(surveys, ([aug.ra[j]], [aug.dec[j]]), size=32, pixel_scale=4.0,
                                         rotation=aug.rotation[j]).images for j in range(rows.size)])  # fmt: skip
    images, labels, rotated = trained_batches[0]
    np.testing.assert_allclose(images, standardised(cut, run["normalisation"]["stats"]), atol=1e-5)
    assert labels.tolist() == ds.column("label")[rows].tolist()
    stored = standardised(ds.images.oindex[rows].astype(np.float64), run["normalisation"]["stats"])
    assert np.abs(images - stored).max() > 1.0  # not the stored (unrotated) cutouts
    assert run["normalisation"]["stats"]["source"]["split"] == "train" and not rotated


def test_pixel_rotation_reaches_every_training_step(ds, tmp_path, trained_batches):
    train_cnn(ds, {**TINY, "pixel_rotation": True}, workdir=tmp_path / "run", epochs=1)
    assert len(trained_batches) == ds.split("train").size // 16
    assert all(rotated for _, _, rotated in trained_batches)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["pixel_rotation"] is True


def test_resuming_a_sky_run_gives_the_uninterrupted_state(ds, tmp_path):
    options = {**TINY, "source": "sky", "epochs": 2, "patience": None, "sky_shift_pixels": 0.5}
    whole = train_cnn(ds, options, workdir=tmp_path / "whole")

    def crash(record):
        if record["epoch"] == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cnn(ds, options, workdir=tmp_path / "parts", on_epoch=crash)
    resumed = train_cnn(ds, options, workdir=tmp_path / "parts", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    for a, b in zip(leaves(resumed.model), leaves(whole.model), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidInputError, match="source"):
        train_cnn(ds, {**options, "source": "dataset", "sky_shift_pixels": 0.0}, workdir=tmp_path / "parts",
                  resume=True)  # fmt: skip


def test_cli_trains_from_the_sky(ds, tmp_path, capsys, trained_batches):
    config = tmp_path / "cnn.yaml"
    config.write_text("cnn:\n  epochs: 1\n  stem_channels: 8\n  stem_stride: 2\n  widths: [8, 16]\n")
    out = tmp_path / "clirun"
    args = ["train", "cnn", "--dataset", str(ds.path), "--config", str(config), "--batch-size", "16"]
    assert main([*args, "--source", "sky", "--seed", "2", "--out", str(out)]) == 0
    assert "cut from the sky" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["config"]["source"] == "sky"
    rows = next(iter(sky_batches(ds, split="train", seed=2, batch_size=16, drop_last=True))).rows
    assert trained_batches[0][1].tolist() == ds.column("label")[rows].tolist()
    assert main([*args, "--source", "skyy", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'sky'" in err and not (tmp_path / "bad").exists()


def test_bad_sky_options_are_one_line_errors(ds):
    cases = [({"source": "skyy"}, "did you mean 'sky'"),
             ({"source": "sky", "sky_shift_pixels": -1.0}, "sky_shift_pixels must be a number in"),
             ({"source": "sky", "sky_scale_jitter": 1.0}, r"sky_scale_jitter must be a number in \[0, 1\)"),
             ({"sky_shift_pixels": 0.5}, "applies to source: sky"),
             ({"source": "sky", "pixel_rotation": True}, "pixel_rotation interpolates"),
             ({"pixel_rotation": "yes"}, "pixel_rotation must be true or false"),
             ({"sky_scale_jiter": 0.1}, "did you mean 'sky_scale_jitter'")]  # fmt: skip
    for options, message in cases:
        with pytest.raises(InvalidInputError, match=message) as info:
            CNNConfig.from_mapping(options)
        assert "\n" not in str(info.value)


def test_moved_surveys_are_a_one_line_error_naming_them(sky, tmp_path, capsys):
    moved = shutil.copytree(sky, tmp_path / "sky")
    small = hipsml.extract_dataset(recipe_data(moved, tmp_path / "ds"))
    moved.rename(tmp_path / "elsewhere")
    with pytest.raises(SurveyNotFoundError, match=f"cut from the survey at {moved / 'r'}") as info:
        train_cnn(small, {**TINY, "source": "sky"}, workdir=tmp_path / "run")
    assert "\n" not in str(info.value) and isinstance(info.value, HipsmlError)
    assert not (tmp_path / "run" / "run.json").exists()  # nothing written: a later run may use the folder
    code = main(["train", "cnn", "--dataset", str(small.path), "--source", "sky", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(moved / "r") in err


def test_rotate_pixels_is_bilinear_rotation_with_zero_corners():
    x = np.random.default_rng(1).random((4, 2, 12, 12)).astype(np.float32)
    angles = np.array([10.0, 90.0, 181.5, 300.0], dtype=np.float32)
    got = np.asarray(rotate_pixels(jnp.asarray(x), jnp.asarray(angles)))
    for i in range(4):
        ref = ndimage.rotate(x[i], float(angles[i]), axes=(2, 1), reshape=False, order=1, mode="grid-constant",
                             cval=0.0, prefilter=False)  # fmt: skip
        np.testing.assert_allclose(got[i], ref, atol=1e-5)
    np.testing.assert_allclose(got[1], np.rot90(x[1], 1, axes=(1, 2)), atol=1e-5)  # 90 degrees: an exact turn


def test_augment_with_pixel_rotation_interpolates_any_angle():
    ones = jnp.ones((64, 1, 9, 9), dtype=jnp.float32)
    y = np.asarray(augment(ones, key=jax.random.PRNGKey(5), pixel_rotation=True))
    assert np.allclose(y[:, 0, 4, 4], 1.0)  # the centre stays
    corners = y[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners.max(axis=1) < 0.99).sum() >= 60  # corners come from outside unless the angle is ~0
    exact = np.asarray(augment(ones, key=jax.random.PRNGKey(5)))
    assert np.array_equal(exact, np.asarray(ones))  # without: pixel permutations only
