"""Issue 13: the CNN refuses what it cannot do, in one line, before a run folder is created.

Each test builds its hostile input itself: a tiny labelled Zarr dataset of 8x8 shapes
(``dataset_helpers.generated_dataset``), options that cannot work or would not fit memory, a
diverging learning rate, damaged run folders, and datasets of another cutout size or other
channels for ``predict_cnn``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dataset_helpers import generated_dataset

from hipsml._memory import ENV_VAR
from hipsml.cli import main
from hipsml.errors import InvalidInputError, ResourceLimitError, TrainingDivergedError
from hipsml.train import predict_cnn, train_cnn

TINY = {"stem_channels": 4, "stem_stride": 2, "widths": [4], "groups": 2, "batch_size": 8, "epochs": 1,
        "warmup_epochs": 0, "normalise": "none"}  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generated_dataset(tmp_path_factory.mktemp("ds") / "small")


@pytest.fixture(scope="module")
def trained(small, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "run"
    train_cnn(small, TINY, workdir=workdir)
    return workdir


# -- refused before anything is written -----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "expected"),
    [
        (
            {"widths": [100000, 100000]},
            ResourceLimitError,
            r"CNN of widths \[100000, 100000\].*memory budget of 1.0 GiB",
        ),
        ({"stem_stride": 1000}, InvalidInputError, "stem_stride 1000 is larger than the 8-pixel images"),
        ({"batch_size": 100000}, InvalidInputError, "batch_size 100000 is larger than the training split"),
    ],
    ids=["widths", "stride", "batch"],
)
def test_impossible_runs_are_refused_before_the_folder_exists(small, tmp_path, monkeypatch, options, error, expected):
    monkeypatch.setenv(ENV_VAR, "1GiB")
    workdir = tmp_path / "run"
    with pytest.raises(error, match=expected) as info:
        train_cnn(small, {**TINY, **options}, workdir=workdir)
    assert "\n" not in str(info.value)
    assert not workdir.exists()  # so the corrected rerun is not "holds a CNN run already"


def test_one_class_is_not_a_classification_task(tmp_path):
    ds = generated_dataset(tmp_path / "one", labels=[0] * 32)
    with pytest.raises(
        InvalidInputError, match="split 'train' of .* holds only class dot: a classifier needs at least 2"
    ):
        train_cnn(ds, TINY, workdir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_corrected_rerun_after_a_refusal_trains(small, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(InvalidInputError):
        train_cnn(small, {**TINY, "batch_size": 100000}, workdir=workdir)
    result = train_cnn(small, TINY, workdir=workdir)
    assert (workdir / "run.json").is_file() and len(result.history) == 1


# -- divergence ------------------------------------------------------------------------------------


def test_divergence_stops_at_the_first_non_finite_epoch_and_saves_nothing_of_it(small, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError) as info:
        train_cnn(small, {**TINY, "learning_rate": 1e30, "epochs": 3}, workdir=workdir)
    message = str(info.value)
    assert "CNN training diverged in epoch 1" in message and "learning_rate 1e+30 is too large" in message
    assert not (workdir / "model.eqx").exists() and not (workdir / "checkpoint.json").exists()
    assert not workdir.exists()  # nothing was learnt: no run is left to refuse the corrected call
    fixed = train_cnn(small, {**TINY, "epochs": 1}, workdir=workdir, progress=False)
    assert len(fixed.history) == 1 and (workdir / "model.eqx").is_file()


def test_cli_reports_divergence_in_one_line_with_exit_2(small, tmp_path, capsys):
    config = tmp_path / "cnn.json"
    config.write_text(json.dumps(TINY))
    code = main(
        [
            "train",
            "cnn",
            "--dataset",
            str(small.path),
            "--config",
            str(config),
            "--learning-rate",
            "1e30",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "diverged in epoch 1" in err[0]


# -- damaged run folders ---------------------------------------------------------------------------


def damaged(trained: Path, tmp_path: Path, damage) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    damage(copy)
    return copy


def _edit(name, change):
    def apply(folder):
        data = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps(change(data)))

    return apply


def _delete_checkpoint(folder):
    (folder / json.loads((folder / "checkpoint.json").read_text())["file"]).unlink()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_delete_checkpoint, "the checkpoint named by checkpoint.json, is missing"),
        (
            _edit("checkpoint.json", lambda d: {k: v for k, v in d.items() if k != "epoch"}),
            "checkpoint.json lacks 'epoch'",
        ),
        (_edit("run.json", lambda d: {k: v for k, v in d.items() if k != "dataset"}), "run.json lacks 'dataset'"),
        (_edit("run.json", lambda d: []), r"run.json is not a CNN run record \(a list"),
        (_edit("run.json", lambda d: {**d, "model": {"widths": "x"}}), "run.json: unreadable model"),
    ],
    ids=["no-checkpoint-file", "no-epoch", "no-dataset", "list", "bad-model"],
)
def test_damaged_run_folders_are_refused_on_resume(small, trained, tmp_path, damage, expected):
    folder = damaged(trained, tmp_path, damage)
    with pytest.raises(InvalidInputError, match=expected) as info:
        train_cnn(small, {**TINY, "epochs": 2}, workdir=folder, resume=True)
    assert "damaged" in str(info.value)


# -- models and data that do not match -------------------------------------------------------------


def test_predict_refuses_another_cutout_size(trained, tmp_path):
    bigger = generated_dataset(tmp_path / "big", size=16)
    with pytest.raises(InvalidInputError, match=r"trained on 8-pixel images; .*big.* has 16-pixel images"):
        predict_cnn(trained, bigger)
    assert not (tmp_path / "big" / "derived").exists()


def test_predict_refuses_other_channel_names(trained, tmp_path):
    swapped = generated_dataset(tmp_path / "swapped", channels=("r", "g"))
    with pytest.raises(InvalidInputError, match="trained on channels g, r; .* has r, g"):
        predict_cnn(trained, swapped)
