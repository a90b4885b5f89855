"""Every ``hipsml ... --help`` shows each option's default (the whole command tree, later commands too)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from hipsml.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree, with its command path (``("som", "train")``)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def _flat(text: str) -> str:
    return " ".join(text.split())


PARSERS = list(_parsers(build_parser()))


def test_the_walk_reaches_nested_commands() -> None:
    paths = {p for p, _ in PARSERS}
    assert {("som", "train"), ("sky", "make"), ("cutout",), ("survey", "info"), ("train", "cnn")} <= paths


@pytest.mark.parametrize("path,parser", PARSERS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_default_is_shown(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    text = _flat(parser.format_help())
    for action in parser._actions:
        if action.default in (None, argparse.SUPPRESS) or action.nargs == 0:
            continue
        if not action.option_strings and action.nargs not in ("?", "*"):
            continue  # a required positional has no default to show
        assert f"(default: {action.default})" in text or f"default: {action.default}" in text, (path, action.dest)
        # the old hand-written "(default X)" is gone: the default is said once
        assert text.count(f"default {action.default})") == 0, (path, action.dest)
    assert "(default: False)" not in text  # on/off flags show no default


def test_help_values() -> None:
    """Spot checks, by value, in the help of two commands."""
    commands = dict(PARSERS)
    cutout = _flat(commands[("cutout",)].format_help())
    assert "width and height in pixels (default: 64)" in cutout
    assert "Rom) (default: bilinear)" in cutout  # the wrap may split Catmull-Rom
    assert "--scale" in cutout and "(default: None)" not in cutout  # None defaults are not shown
    make = _flat(commands[("sky", "make")].format_help())
    assert "number of sources (default: 2000)" in make
    assert "coordinate frame of the surveys (default: icrs)" in make
    top = _flat(commands[()].format_help())
    assert "more log output (-v INFO, -vv DEBUG)" in top and "(default: 0)" not in top  # a counter, not an option value


def test_a_later_command_gets_the_defaults_formatter() -> None:
    """A command another module adds with sub.add_parser (no formatter_class) still shows its defaults."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    later = sub.add_parser("later", help="a command added later")
    nested = later.add_subparsers(dest="x").add_parser("deeper")
    nested.add_argument("--level", type=int, default=7, help="how deep")
    nested.add_argument("--style", default="plain")  # no help text
    text = _flat(nested.format_help())
    assert "how deep (default: 7)" in text and "default: plain" in text


def test_training_option_flags_show_the_config_defaults_without_importing_jax_to_build_the_parser(capsys):
    import subprocess
    import sys

    from hipsml.cli import main
    from hipsml.train import CNNConfig, SOMConfig

    for words, config, flags in (
        (["som", "train"], SOMConfig(), {"--width": "width", "--numrot": "numrot", "--epochs": "epochs"}),
        (["cnn", "train"], CNNConfig(), {"--learning-rate": "learning_rate", "--batch-size": "batch_size"}),
    ):
        with pytest.raises(SystemExit):
            main([*words, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for flag, name in flags.items():
            assert f"override the option {name} (default: {getattr(config, name)})" in text, (flag, text)
    code = "import sys; from hipsml.cli import build_parser; build_parser(); print('jax' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
