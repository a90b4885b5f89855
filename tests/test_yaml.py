"""Recipes and config files read numbers as YAML 1.2 does: ``1e-3`` is a float, not the text '1e-3'."""

from __future__ import annotations

import math

import pytest
import yaml

from hipsml._yaml import load_yaml


@pytest.mark.parametrize(("text", "value"), [
    ("1e-3", 0.001), ("1e+30", 1e30), ("-2.5E2", -250.0), (".5", 0.5), ("1.", 1.0), ("3.0e0", 3.0),
    ("10", 10), ("-7", -7), ("0x1f", 31), ("1_000", 1000),
])  # fmt: skip
def test_numbers(text, value):
    got = load_yaml(f"x: {text}")["x"]
    assert got == value and type(got) is type(value)


def test_what_is_not_a_number_stays_text_and_specials_are_floats():
    data = load_yaml("a: 1e3x\nb: e5\nc: '1e-3'\nd: .inf\ne: -.inf\nf: .nan\ng: true\nh: null")
    assert data["a"] == "1e3x" and data["b"] == "e5" and data["c"] == "1e-3"
    assert data["d"] == math.inf and data["e"] == -math.inf and math.isnan(data["f"])
    assert data["g"] is True and data["h"] is None


def test_safe_loading_refuses_python_tags():
    with pytest.raises(yaml.YAMLError):
        load_yaml("x: !!python/object/apply:os.system ['true']")


def test_plain_safe_load_is_yaml_1_1(tmp_path):
    # the reason this module exists: PyYAML alone reads 1e-3 as text
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"


def test_a_cnn_config_file_takes_exponent_numbers(tmp_path):
    from hipsml.cli._common import read_config_file

    config = tmp_path / "cnn.yaml"
    config.write_text("learning_rate: 1e-3\nweight_decay: 5e-5\n")
    options = read_config_file(str(config), section="cnn", example="learning_rate: 0.001")
    assert options == {"learning_rate": 0.001, "weight_decay": 5e-05}


def test_a_recipe_file_takes_an_exponent_pixel_scale(tmp_path):
    from hipsml.dataset import load_recipe

    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        "name: r\nsurveys: [{location: sky}]\ntargets: {file: t.csv}\n"
        "cutout: {size: 8, pixel_scale: 2e0}\noutput: {path: out}\n"
    )
    assert load_recipe(recipe_file).cutout.pixel_scale == 2.0
