"""Issue 13: the SOM refuses what it cannot do, in one line, before allocating or writing anything.

Each test builds its hostile input itself: options that would allocate until killed, forged and
damaged save folders, a diverging neighbourhood, a SOM mapped onto images of another size, PINK
files with negative counts.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
from dataset_helpers import generated_dataset

from hipsml._memory import ENV_VAR
from hipsml.cli import main
from hipsml.errors import InvalidInputError, ResourceLimitError, TrainingDivergedError
from hipsml.train import (
    SOM,
    SOMConfig,
    load_som,
    read_pink_data,
    read_pink_som,
    train_som,
    write_som_mapping,
)
from hipsml.train._checks import check_model_matches
from hipsml.train.som._limits import som_memory_estimate


@pytest.fixture
def budget(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1GiB")


def images(n=6, side=8, seed=0):
    return np.random.default_rng(seed).random((n, 1, side, side), dtype=np.float32)


# -- §2 memory: refused from the options, before anything is allocated ---------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"width": 10000, "height": 10000, "neuron_dim": 8},
        {"width": 2, "height": 2, "neuron_dim": 100000},
        {"width": 2, "height": 2, "numrot": 1000000},
    ],
    ids=["map", "neuron_dim", "numrot"],
)
def test_huge_options_are_refused_with_estimate_and_budget(budget, options):
    with pytest.raises(ResourceLimitError) as info:
        train_som(images(), progress=False, **{"numrot": 4, **options})
    message = str(info.value)
    assert "\n" not in message and "memory budget of 1.0 GiB" in message
    assert "needs about" in message
    assert "HIPSML_MEMORY_BUDGET" in message


def test_the_budget_is_what_decides(monkeypatch):
    # hand-worked estimate of a 2x2 map, 8-pixel neurons, numrot 4 with flips (8 transforms, 1 interpolated
    # angle), 6 images: neurons 3*4*64*4 = 3072, grid 16*45 = 720, tables 3*8*64*4 + 1*64*4*8 = 8192,
    # search 6*(1*64 + 4*8)*4 = 2304, a chunk of images 6*64*4 = 1536: 15824 bytes (15.5 KiB); the 6
    # training images held twice (as read, normalised) add 2*6*64*4 = 3072: 18896 bytes (18.5 KiB)
    config = SOMConfig(width=2, height=2, numrot=4, neuron_dim=8)
    assert som_memory_estimate(config, 1, 8, chunk=6) == 15824
    assert som_memory_estimate(config, 1, 8, chunk=6, count=6) == 18896
    monkeypatch.setenv(ENV_VAR, "18KiB")
    with pytest.raises(ResourceLimitError, match=r"trained on 6 images needs about 18.5 KiB, more than the memory "
                       r"budget of 18.0 KiB"):  # fmt: skip
        train_som(images(), config, progress=False)
    monkeypatch.setenv(ENV_VAR, "19KiB")
    assert train_som(images(), config, progress=False).weights.shape == (4, 1, 8, 8)


def saved_som(tmp_path):
    som = SOM(SOMConfig(width=2, height=1, neuron_dim=4, numrot=4), np.zeros((2, 1, 4, 4), np.float32))
    return som.save(tmp_path / "som")


def npz_with(member_bytes: bytes, other: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.npy", member_bytes)
        for name, array in other.items():
            inner = io.BytesIO()
            np.save(inner, array)
            archive.writestr(f"{name}.npy", inner.getvalue())
    return buffer.getvalue()


def _npy(shape, payload: bytes) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return out.getvalue() + payload


def test_weights_header_claiming_2_to_the_40_floats_is_refused(tmp_path, budget):
    folder = saved_som(tmp_path)
    (folder / "weights.npz").write_bytes(npz_with(_npy((2**40,), b"\0" * 16), {}))
    with pytest.raises(ResourceLimitError) as info:
        load_som(folder)
    assert "shape (1099511627776,)" in str(info.value) and "4.0 TiB" in str(info.value)
    assert "memory budget of 1.0 GiB" in str(info.value)


def test_weights_header_disagreeing_with_its_size_is_refused(tmp_path):
    folder = saved_som(tmp_path)
    (folder / "weights.npz").write_bytes(npz_with(_npy((2, 1, 4, 4), b"\0" * 16), {}))
    with pytest.raises(InvalidInputError, match=r"claims shape \(2, 1, 4, 4\) \(128 bytes\) but stores 16"):
        load_som(folder)


# -- §3 damaged SOM folders ----------------------------------------------------------------------


def test_truncated_weights_is_refused(tmp_path):
    folder = saved_som(tmp_path)
    raw = (folder / "weights.npz").read_bytes()
    (folder / "weights.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InvalidInputError, match=r"weights.npz.*damaged"):
        load_som(folder)


def test_missing_weights_is_refused(tmp_path):
    folder = saved_som(tmp_path)
    (folder / "weights.npz").unlink()
    with pytest.raises(InvalidInputError, match="holds no weights.npz"):
        load_som(folder)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ([], r"not a hipsml SOM \(format 'list'\)"),
        ({"format": "hipsml-som"}, "field 'config' is missing"),
        (
            {"format": "hipsml-som", "config": {}, "weights_shape": [2, 1, 4, 4], "history": [{"epoch": 0}]},
            "bad history",
        ),
    ],
    ids=["list", "no-config", "bad-history"],
)
def test_damaged_som_json_is_refused(tmp_path, meta, expected):
    folder = saved_som(tmp_path)
    raw = np.load(folder / "weights.npz")
    weights = raw["weights"]
    buffer = io.BytesIO()
    np.savez(buffer, weights=weights)  # no archived copy of som.json: the damaged som.json is what is read
    (folder / "weights.npz").write_bytes(buffer.getvalue())
    (folder / "som.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match=expected):
        load_som(folder)


# -- §3 options that cannot work, and divergence ---------------------------------------------------


@pytest.mark.parametrize("name", ["damping", "sigma", "damping_end", "sigma_end"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_sigma_and_damping_are_refused(name, value):
    with pytest.raises(InvalidInputError, match=f"SOM option {name} must be a positive finite number"):
        SOMConfig(**{name: value})


def test_divergence_stops_at_the_first_non_finite_epoch(tmp_path):
    with pytest.raises(TrainingDivergedError) as info:
        train_som(images(), width=2, height=2, numrot=4, neuron_dim=8, damping=1e38, epochs=3, shuffle=False,
                  progress=False, checkpoint=tmp_path / "ck")  # fmt: skip
    message = str(info.value)
    assert "SOM training diverged in epoch 1" in message and "damping 1e+38" in message
    assert not (tmp_path / "ck").exists()  # the diverged epoch is not saved as a checkpoint


# -- §3 a SOM mapped onto data it was not trained for ---------------------------------------------


def test_mapping_images_of_another_size_is_refused_and_survives_a_save(tmp_path):
    som = train_som(images(side=16), width=2, height=1, numrot=4, neuron_dim=16, progress=False)
    assert som.images == {"size": 16, "channels": 1, "channel_names": None}
    loaded = load_som(som.save(tmp_path / "som"))
    for model in (som, loaded):
        with pytest.raises(InvalidInputError, match="trained on 16-pixel images; the array has 8-pixel images"):
            model.map(images(side=8))


def test_channel_count_and_names_must_match():
    with pytest.raises(InvalidInputError, match="trained on 2 channels; ds v1 has 1 channels"):
        check_model_matches({"size": 8, "channels": 2}, {"size": 8, "channels": 1}, model="the SOM", data="ds v1")
    with pytest.raises(InvalidInputError, match="trained on channels g, r; ds v1 has r, g"):
        check_model_matches({"channel_names": ["g", "r"]}, {"channel_names": ["r", "g"]}, model="the SOM", data="ds v1")
    check_model_matches(
        {"size": 8, "channels": 1}, {"size": 8, "channels": 1, "channel_names": ["r"]}, model="the SOM", data="ds v1"
    )  # unknown names are not compared


# -- §3 PINK files with negative counts or dimensions ---------------------------------------------


@pytest.mark.parametrize(
    ("ints", "expected"),
    [
        ((2, 0, 0, -1, 0, 2, 4, 4), "negative number of entries"),
        ((2, 0, 0, 1, 0, 2, 4, -4), r"dimensions \[4, -4\]"),
        ((2, 0, 0, -2, 0, 2, -4, 4), "negative number of entries"),
    ],
)
def test_pink_data_with_negative_counts_is_refused(tmp_path, ints, expected):
    path = tmp_path / "data.bin"
    path.write_bytes(struct.pack(f"<{len(ints)}i", *ints) + b"\0" * 64)
    with pytest.raises(InvalidInputError, match=expected):
        read_pink_data(path)


def test_pink_som_with_negative_dimension_is_refused(tmp_path):
    path = tmp_path / "som.bin"
    path.write_bytes(struct.pack("<11i", 2, 1, 0, 0, 2, -2, 3, 0, 2, 2, 2) + b"\0" * 64)
    with pytest.raises(InvalidInputError, match=r"SOM layout \(dimensions \[-2, 3\]"):
        read_pink_som(path)


# -- the same through datasets and the command line --------------------------------------------------


def test_som_trained_on_a_dataset_refuses_other_channel_names(tmp_path):
    ds = generated_dataset(tmp_path / "gr", n=8)
    som = train_som(ds, split=None, width=2, height=1, numrot=4, neuron_dim=8, progress=False)
    assert som.images == {"size": 8, "channels": 2, "channel_names": ["g", "r"]}
    swapped = generated_dataset(tmp_path / "rg", n=8, channels=("r", "g"))
    with pytest.raises(InvalidInputError, match="trained on channels g, r; .*rg v1 has r, g"):
        write_som_mapping(som, swapped, name="m")
    assert not (tmp_path / "rg" / "derived").exists()


def test_cli_som_map_of_another_size_and_a_huge_map_exit_2(tmp_path, capsys):
    big = generated_dataset(tmp_path / "big", n=8, size=16)
    small = generated_dataset(tmp_path / "small", n=8, size=8)
    somdir = tmp_path / "som"
    train_som(big, split=None, width=2, height=1, numrot=4, neuron_dim=16, progress=False).save(somdir)
    capsys.readouterr()
    code = main(["som", "map", str(somdir), "--dataset", str(small.path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "trained on 16-pixel images" in err[0] and "8-pixel" in err[0]

    out = tmp_path / "huge"
    code = main(["som", "train", "--dataset", str(small.path), "--width", "10000", "--height", "10000",
                 "--numrot", "4", "--neuron-dim", "8", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "memory budget" in err[0] and "10000x10000" in err[0]
    assert not (out / "som.json").exists()
