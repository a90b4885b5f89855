"""The SOM and the CNN speak one dialect (issue 14 §2): the same inputs, config, split, resume, records,
progress and result objects; the old shapes keep working with a DeprecationWarning."""

from __future__ import annotations

import inspect
import json

import jax
import numpy as np
import pytest
from dataset_helpers import make_dataset

import hipsml
from hipsml.cli import main
from hipsml.dataset import as_dataset, derived_names
from hipsml.errors import InvalidInputError, OutputError
from hipsml.train import (
    CNN,
    CNNConfig,
    CNNPredictions,
    EpochRecord,
    SOMConfig,
    cnn_prediction_names,
    load_cnn,
    load_som,
    predict_cnn,
    read_cnn_predictions,
    read_som_mapping,
    som_mapping_names,
    train_cnn,
    train_som,
    write_som_mapping,
)

SOM = {"width": 2, "height": 2, "numrot": 4, "neuron_dim": 16, "init": "random", "seed": 3, "epochs": 2}
CNN_OPTIONS = {
    "stem_channels": 8,
    "stem_stride": 2,
    "widths": [8, 16],
    "groups": 4,
    "batch_size": 16,
    "epochs": 1,
    "patience": None,
}


@pytest.fixture(autouse=True)
def strict_dtype_promotion():
    with jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> hipsml.Dataset:
    return make_dataset(tmp_path_factory.mktemp("one") / "shapes", n=96, channels=1)


@pytest.fixture(scope="module")
def run(ds, tmp_path_factory):
    """A one-epoch CNN run, trained from a ``"PATH@v1"`` string with a mapping config and split= keyword."""
    return train_cnn(
        f"{ds.path}@v1", CNN_OPTIONS, split="train", workdir=tmp_path_factory.mktemp("run") / "run", progress=False
    )


def test_a_path_string_a_dataset_and_a_mapping_config_work_for_both(ds, run, tmp_path):
    by_path = train_som(f"{ds.path}@v1", dict(SOM), split="train", progress=False)
    by_dataset = train_som(ds, SOMConfig.from_mapping(SOM), split="train", progress=False)
    np.testing.assert_array_equal(by_path.weights, by_dataset.weights)
    assert by_path.training["count"] == ds.split("train").size and by_path.training["hash"] == ds.hash
    assert run.config.train_split == "train" and run.config.stem_channels == 8  # the mapping was read
    assert json.loads((run.workdir / "run.json").read_text())["dataset"]["hash"] == ds.hash
    with pytest.raises(InvalidInputError, match="unknown SOM option 'widht'; did you mean 'width'"):
        train_som(ds, {"widht": 5}, progress=False)
    with pytest.raises(InvalidInputError, match="unknown CNN option 'epoch'; did you mean 'epochs'"):
        train_cnn(str(ds.path), {"epoch": 1}, workdir=tmp_path / "x")
    with pytest.raises(InvalidInputError, match="config must be a SOMConfig, a mapping or None, got int"):
        train_som(ds, 5, progress=False)


def test_from_mapping_has_one_shape_on_both_configs():
    assert SOMConfig.from_mapping({"height": 3}, base=SOMConfig(width=5)).width == 5
    assert CNNConfig.from_mapping({"epochs": 3}, base=CNNConfig(seed=9)).seed == 9
    assert SOMConfig.from_mapping().width == SOMConfig().width and CNNConfig.from_mapping() == CNNConfig()
    with pytest.warns(DeprecationWarning, match="base=BASE"):
        assert SOMConfig.from_mapping({"height": 3}, SOMConfig(width=5)).width == 5


def test_split_is_a_keyword_train_where_a_model_learns_every_row_where_it_maps(ds, run, tmp_path):
    for fn in (train_som, train_cnn):
        assert inspect.signature(fn).parameters["split"].default == "train"
        assert inspect.signature(fn).parameters["split"].kind is inspect.Parameter.KEYWORD_ONLY
    som = train_som(ds, SOM, split="val", progress=False)
    assert som.training["split"] == "val" and som.training["count"] == ds.split("val").size
    assert np.array_equal(som.map(ds).rows, np.arange(len(ds)))  # maps every row by default
    assert np.array_equal(load_cnn(run.workdir).predict(ds).rows, np.arange(len(ds)))
    assert np.array_equal(ds.split(None), np.arange(len(ds)))  # Dataset.split(None) agrees with the loaders
    with pytest.raises(InvalidInputError, match="split must name the split a CNN trains on"):
        train_cnn(ds, CNN_OPTIONS, split=None, workdir=tmp_path / "none")
    with pytest.raises(InvalidInputError, match="disagree"):
        train_cnn(ds, CNN_OPTIONS, split="val", train_split="test", workdir=tmp_path / "both")


def test_resume_is_an_output_folder_plus_resume_true_for_both(ds, tmp_path):
    def stop_after_first(record):
        if record.epoch == 0:
            raise KeyboardInterrupt

    whole = train_som(ds, SOM, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_som(ds, SOM, workdir=tmp_path / "som", on_epoch=stop_after_first, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_cnn(ds, {**CNN_OPTIONS, "epochs": 2}, workdir=tmp_path / "cnn", on_epoch=stop_after_first, progress=False)
    som = train_som(ds, workdir=tmp_path / "som", resume=True, progress=False)  # the saved options
    cnn = train_cnn(ds, workdir=tmp_path / "cnn", resume=True, progress=False)
    assert [r.epoch for r in som.history] == [0, 1] and [r.epoch for r in cnn.history] == [0, 1]
    np.testing.assert_array_equal(som.weights, whole.weights)  # as if never interrupted
    first = json.loads((tmp_path / "cnn" / "metrics.json").read_text())["history"][0]
    assert cnn.history[0]["train_loss"] == first["train_loss"]
    for call in (
        lambda: train_som(ds, SOM, workdir=tmp_path / "som", progress=False),
        lambda: train_cnn(ds, CNN_OPTIONS, workdir=tmp_path / "cnn", progress=False),
    ):
        with pytest.raises(OutputError, match="continue it with resume=True or choose a new folder") as error:
            call()
        assert "--" not in str(error.value)  # a library message names no command-line flag
    with pytest.raises(InvalidInputError, match="resume=True continues the SOM saved in workdir"):
        train_som(ds, SOM, resume=True, progress=False)


def test_the_old_som_resume_shape_still_works_with_a_warning(ds, tmp_path):
    with pytest.warns(DeprecationWarning, match="workdir=FOLDER"):
        partial = train_som(ds, {**SOM, "epochs": 1}, checkpoint=tmp_path / "som", progress=False)
    with pytest.warns(DeprecationWarning, match="resume=True"):
        som = train_som(ds, SOM, checkpoint=tmp_path / "som", resume=load_som(tmp_path / "som"), progress=False)
    assert len(partial.history) == 1 and len(som.history) == 2 and len(load_som(tmp_path / "som").history) == 2


def test_on_epoch_gets_one_record_type_and_progress_is_on_by_default(ds, tmp_path, capsys):
    records = []
    assert inspect.signature(train_som).parameters["progress"].default is True
    assert inspect.signature(train_cnn).parameters["progress"].default is True
    som = train_som(ds, SOM, on_epoch=records.append)
    cnn = train_cnn(ds, CNN_OPTIONS, workdir=tmp_path / "cnn", on_epoch=records.append)
    bars = capsys.readouterr().err
    assert "SOM epoch 2/2" in bars and "CNN epoch 1/1" in bars  # the default draws a bar for both
    assert [type(r) for r in records] == [EpochRecord] * 3
    assert list(som.history) == records[:2] and list(cnn.history) == records[2:]
    for r in records:
        assert r.epoch == r["epoch"] and r.seconds > 0 and r.images_per_second > 0
        assert json.loads(json.dumps(r)) == dict(r)
    assert records[0].quantisation_error > 0 and 0 <= records[2].train_accuracy <= 1
    with pytest.raises(AttributeError, match="no 'train_loss'"):
        _ = records[0].train_loss


def test_load_cnn_predicts_in_memory_what_predict_cnn_stores(ds, run):
    folder = predict_cnn(run.workdir, f"{ds.path}@v1", name="p")
    stored = read_cnn_predictions(str(ds.path), "p")
    assert isinstance(stored, CNNPredictions) and folder.name == "p"
    assert stored.label_names == ["point", "blob", "ring"] and np.array_equal(stored.rows, np.arange(len(ds)))
    assert stored.attrs["kind"] == "cnn-predictions" and stored.attrs["dataset"]["hash"] == ds.hash
    cnn = load_cnn(run.workdir)
    assert isinstance(cnn, CNN) and cnn.label_names == stored.label_names
    memory = cnn.predict(np.asarray(ds.images[:]))  # raw cutouts, NaN corners included
    assert memory.rows is None
    np.testing.assert_allclose(memory.probabilities, stored.probabilities, atol=1e-5)
    assert np.array_equal(memory.predicted, stored.predicted)
    assert memory.predicted_names[:3] == [stored.label_names[k] for k in stored.predicted[:3]]
    with pytest.raises(InvalidInputError, match="takes 1 channels"):
        cnn.predict(np.zeros((2, 3, 16, 16), np.float32))


def test_old_result_shapes_still_work_with_a_warning(ds, run):
    with pytest.warns(DeprecationWarning, match=r"\.model and \.run"):
        model, saved = load_cnn(run.workdir)
    assert saved["label_names"] == ["point", "blob", "ring"] and model.spec.num_classes == 3
    predict_cnn(run.workdir, ds, split="val", name="old", overwrite=True)
    with pytest.warns(DeprecationWarning, match="predictions.rows"):
        assert read_cnn_predictions(ds, "old")["rows"].tolist() == ds.split("val").tolist()
    with pytest.warns(DeprecationWarning, match="predict_cnn"):
        assert hipsml.predict is predict_cnn
    assert hipsml.predict_cnn is predict_cnn and hipsml.load_cnn is load_cnn
    with pytest.warns(DeprecationWarning, match="version=VERSION"):
        assert hipsml.open_dataset(ds.path, 1).version == 1
    assert hipsml.open_dataset(ds.path, version=1).version == 1


def test_derived_results_are_listed_alike(ds, run):
    som = train_som(ds, SOM, progress=False)
    write_som_mapping(som, str(ds.path), name="m")
    predict_cnn(run.workdir, ds, split="test", name="c")
    assert "m" in som_mapping_names(f"{ds.path}@v1") and derived_names(ds, "som") == som_mapping_names(ds)
    assert "c" in cnn_prediction_names(ds) and derived_names(ds, "cnn") == cnn_prediction_names(str(ds.path))
    assert np.array_equal(read_som_mapping(str(ds.path), "m").rows, np.arange(len(ds)))
    assert (ds.path / "derived" / "v1" / "cnn" / "c" / "zarr.json").is_file()
    with pytest.raises(hipsml.errors.DatasetNotFoundError, match="predictions there: .*c"):
        read_cnn_predictions(ds, "nosuch")
    other = train_som(ds, {**SOM, "seed": 4}, progress=False)
    for call in (lambda: write_som_mapping(other, ds, name="m"), lambda: predict_cnn(run.workdir, ds, name="c")):
        with pytest.raises(OutputError, match="give another name or overwrite=True") as error:
            call()
        assert "--" not in str(error.value)  # a library message names no command-line flag
    with pytest.raises(InvalidInputError, match="CNN predictions name must be"):
        predict_cnn(run.workdir, ds, name="../x")
    assert as_dataset(ds) is ds and as_dataset(f"{ds.path}@v1").hash == ds.hash
    with pytest.raises(InvalidInputError, match="expected a hipsml Dataset or a dataset path"):
        as_dataset(3)


@pytest.mark.parametrize("command", [["cnn", "train"], ["train", "cnn"]])
def test_cnn_train_sits_beside_som_train_and_train_cnn_stays(ds, tmp_path, command, capsys):
    out, config = tmp_path / "cli", tmp_path / "cnn.yaml"
    config.write_text("cnn:\n  stem_channels: 8\n  stem_stride: 2\n  widths: [8, 16]\n  batch_size: 16\n")
    args = [*command, "--dataset", f"{ds.path}@v1", "--config", str(config), "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    assert "epoch 1/1: loss" in capsys.readouterr().out and (out / "model.eqx").is_file()
    assert main(args) == 2  # the folder holds a run: the CLI says so in one line
    assert "--resume" in capsys.readouterr().err


def test_cutouts_take_survey_locations_as_sky_batches_do(tmp_path):
    import typing

    from hipsml.sky import render_function_hips

    root = render_function_hips(
        tmp_path / "s", lambda ra, dec: ra + 10 * dec, order=3, tile_width=64, region=(40.0, 20.0, 4.0)
    )
    where = ([40.0, 41.0], [20.0, 19.5])
    opened = hipsml.cutouts(hipsml.open_survey(root), where, size=8, pixel_scale=60.0)
    for given in (str(root), root, [str(root), root]):
        by_location = hipsml.cutouts(given, where, size=8, pixel_scale=60.0)
        channels = 2 if isinstance(given, list) else 1
        np.testing.assert_array_equal(by_location.images, np.concatenate([opened.images] * channels, axis=1))
    assert typing.get_type_hints(hipsml.extract_dataset)["return"] is hipsml.Dataset
    assert "pixel_scale" in typing.get_type_hints(hipsml.cutouts)
