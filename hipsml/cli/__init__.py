"""The ``hipsml`` command: each command parses its arguments, checks them and calls the library.

A :class:`~hipsml.errors.HipsmlError` is printed as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hipsml.cli._cnn import CNN_FLAGS
from hipsml.cli._common import cli_command
from hipsml.cli._som import SOM_FLAGS
from hipsml.errors import HipsmlError

__all__ = ["CNN_FLAGS", "SOM_FLAGS", "build_parser", "cli_command", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hipsml`` command (every subcommand's ``--help`` shows the defaults)."""
    from hipsml.cli._common import CommandParser

    parser = CommandParser(prog="hipsml", description="Machine-learning training sets from HiPS sky surveys.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v INFO, -vv DEBUG)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from hipsml.cli._demo import add_demo_commands

    add_demo_commands(sub)

    from hipsml.cli._dataset import add_dataset_commands

    add_dataset_commands(sub)

    from hipsml.cli._som import add_som_commands

    add_som_commands(sub)

    from hipsml.cli._cnn import add_cnn_commands

    add_cnn_commands(sub)

    from hipsml.cli._survey import add_survey_commands

    add_survey_commands(sub)

    from hipsml.cli._sky import add_sky_commands

    add_sky_commands(sub)

    from hipsml.cli._report import add_report_commands

    add_report_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hipsml`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except HipsmlError as exc:
        message = " ".join(str(exc).split())
        print(f"hipsml: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a command may say how to continue in the interrupt's message
        print("hipsml: interrupted" + (f"; {exc}" if str(exc) else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
