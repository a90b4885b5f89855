"""What the ``hipsml`` subcommands share: the parser class, argument types, options from a YAML file and
flags, the per-epoch line of the training commands, and writing a command line back out."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = [
    "CommandParser",
    "DefaultsHelpFormatter",
    "OptionFlags",
    "add_option_flags",
    "cli_command",
    "non_negative_int",
    "options_from",
    "positive_int",
    "print_epoch",
    "read_config_file",
]


_ActionT = TypeVar("_ActionT", bound=argparse.Action)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` text that ends each option's help with ``(default: X)``.

    Options whose default is ``None`` (nothing is passed on) and on/off flags (``store_true``:
    off unless given) show no default, except the option flags of a training command: those show
    the config class's default (looked up only when help is printed, so that building the parser
    imports no training code).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        config_default = getattr(action, "config_default", None)
        if config_default is not None:
            return f"{action.help} (default: {config_default()})"
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


#: a command's option flags: flag -> (option name, type), as its parser declares them
OptionFlags = dict[str, tuple[str, Any]]


def add_option_flags(
    parser: argparse.ArgumentParser,
    flags: OptionFlags,
    *,
    hints: dict[str, str] | None = None,
    defaults: Callable[[], Any] | None = None,
) -> None:
    """Add one ``--flag`` per option of ``flags`` to ``parser`` (integers positive, ``seed`` from 0).

    ``defaults`` returns the config object whose attributes are the options' defaults; ``--help``
    shows them (it is called only then).
    """
    for flag, (name, kind) in flags.items():
        typ = (non_negative_int if name == "seed" else positive_int) if kind is int else kind
        action = parser.add_argument(
            flag, dest=name, type=typ, help=f"override the option {name}{(hints or {}).get(name, '')}"
        )
        if defaults is not None:
            action.config_default = lambda name=name: getattr(defaults(), name)  # type: ignore[attr-defined]


def options_from(args: argparse.Namespace, flags: OptionFlags, *, section: str, example: str) -> dict[str, Any]:
    """A command's options: its ``--config`` file (under ``section:``, optionally), then its flags (the flags win)."""
    options = read_config_file(args.config, section=section, example=example) if args.config else {}
    for _flag, (name, _type) in flags.items():
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    return options


def print_epoch(record: Any, total: int, first: bool, measured: str) -> None:
    """One line per training epoch, alike for the SOM and the CNN: its number, ``measured``, its speed."""
    note = " (includes compiling)" if first else ""
    print(f"epoch {record.epoch + 1}/{total}: {measured}, {record.images_per_second:,.0f} images/s{note}", flush=True)


def cli_command(words: list[str], options: Mapping[str, Any], flags: OptionFlags) -> str:
    """The ``hipsml`` command line ``words`` followed by one flag per option, shell-quoted.

    ``flags`` maps a flag to ``(option name, type)``, as the command's parser declares them; an
    option without a flag cannot be given on the command line and is refused.

    Examples
    --------
    >>> cli_command(["hipsml", "som", "train"], {"width": 7}, {"--width": ("width", int)})
    'hipsml som train --width 7'
    """
    by_name = {name: flag for flag, (name, _type) in flags.items()}
    missing = sorted(set(options) - set(by_name))
    if missing:
        raise ValueError(f"options without a command-line flag: {', '.join(missing)}")
    parts = list(words)
    for name, value in options.items():
        parts += [by_name[name], str(value)]
    return shlex.join(parts)
