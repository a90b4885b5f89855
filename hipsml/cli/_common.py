"""What the ``hipsml`` subcommands share: argument types and reading a YAML options file."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["positive_int", "non_negative_int", "read_config_file"]


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
    from hipsml.errors import InputFileError, InvalidInputError

    source = user_path(path, what="--config")
    what = f"{section.upper()} config"
    try:
        text = read_regular_file(source, limit=1 << 20, what=what)
    except (FileNotFoundError, NotADirectoryError):
        raise InputFileError(f"no {what} file {source}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{source} is not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(data, dict) and set(data) == {section}:
        data = data[section]
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source} must hold a mapping of {section.upper()} options ({example}, ...)")
    return data
