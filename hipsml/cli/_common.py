"""What the ``hipsml`` subcommands share: the parser class, argument types and reading a YAML options file."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

__all__ = ["CommandParser", "DefaultsHelpFormatter", "non_negative_int", "positive_int", "read_config_file"]


_ActionT = TypeVar("_ActionT", bound=argparse.Action)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` text that ends each option's help with ``(default: X)``.

    Options whose default is ``None`` (nothing is passed on) and on/off flags (``store_true``:
    off unless given) show no default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """The parser of ``hipsml`` and of every subcommand: its ``--help`` shows each option's default.

    ``add_subparsers`` makes subparsers of the parent's class, so every command added with
    ``sub.add_parser(...)``, at any depth, gets :class:`DefaultsHelpFormatter`. An option with a
    default but no help text gets ``default: X`` as its help, so no default goes unseen.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def _add_action(self, action: _ActionT) -> _ActionT:
        if not action.help and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            action.help = "default: %(default)s"
        return super()._add_action(action)


def _integer(text: str, minimum: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argument that must be an integer >= 1."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argument that must be an integer >= 0."""
    return _integer(text, 0, "an integer >= 0")


def read_config_file(path: str, *, section: str, example: str) -> dict[str, Any]:
    """The options of a YAML file: a mapping, optionally under one top-level ``section:`` key.

    Raises
    ------
    InputFileError
        No such file (or not a regular file, or too large).
    InvalidInputError
        Not YAML, or not a mapping (the message shows ``example``).
    """
    import yaml

    from hipsml._files import read_regular_file, user_path
    from hipsml._yaml import load_yaml
    from hipsml.errors import InputFileError, InvalidInputError

    source = user_path(path, what="--config")
    what = f"{section.upper()} config"
    try:
        text = read_regular_file(source, limit=1 << 20, what=what)
    except (FileNotFoundError, NotADirectoryError):
        raise InputFileError(f"no {what} file {source}") from None
    try:
        data = load_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(data, dict) and set(data) == {section}:
        data = data[section]
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source} must hold a mapping of {section.upper()} options ({example}, ...)")
    return data
