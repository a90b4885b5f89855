"""The ``hipsml`` command: a thin layer that parses arguments and calls the library.

A :class:`~hipsml.errors.HipsmlError` is printed as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hipsml.errors import HipsmlError

__all__ = ["main"]


def _cmd_survey_info(args: argparse.Namespace) -> int:
    from hipsml import open_survey

    survey = open_survey(args.location)
    print(survey.summary())
    return 0


def _cmd_sky_make(args: argparse.Namespace) -> int:
    from hipsml.sky import make_sky

    sky = make_sky(
        args.directory,
        n_sources=args.sources,
        seed=args.seed,
        order=args.order,
        tile_width=args.tile_width,
        frame=args.frame,
        center=(args.ra, args.dec),
        radius=args.radius,
        formats=tuple(args.formats.split(",")),
        progress=not args.quiet,
    )
    print(sky.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hipsml._demo import run_demo

    run_demo(args.directory, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hipsml`` command."""
    parser = argparse.ArgumentParser(
        prog="hipsml", description="Machine-learning training sets from HiPS sky surveys."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v INFO, -vv DEBUG)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="render the embedded demo survey and run the main job on it")
    demo.add_argument("directory", nargs="?", default="demo-output", help="output folder (default: demo-output)")
    demo.set_defaults(func=_cmd_demo)

    survey = sub.add_parser("survey", help="inspect a HiPS survey")
    survey_sub = survey.add_subparsers(dest="survey_command", required=True, metavar="ACTION")
    info = survey_sub.add_parser("info", help="print a survey's properties and tile layout")
    info.add_argument("location", help="local directory, file:// or http(s):// URL of a HiPS")
    info.set_defaults(func=_cmd_survey_info)

    sky = sub.add_parser("sky", help="synthetic labelled surveys")
    sky_sub = sky.add_subparsers(dest="sky_command", required=True, metavar="ACTION")
    make = sky_sub.add_parser("make", help="render a seeded synthetic labelled sky into HiPS surveys")
    make.add_argument("directory", help="output folder: one HiPS per band plus catalogue.ecsv")
    make.add_argument("--sources", type=int, default=2000, help="number of sources (default 2000)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--order", type=int, default=8, help="HiPS max order (default 8)")
    make.add_argument("--tile-width", type=int, default=256, help="tile width, a power of two (default 256)")
    make.add_argument("--frame", default="icrs", choices=["icrs", "equatorial", "galactic", "ecliptic"])
    make.add_argument("--ra", type=float, default=150.0, help="region centre RA, deg (default 150)")
    make.add_argument("--dec", type=float, default=2.0, help="region centre Dec, deg (default 2)")
    make.add_argument("--radius", type=float, default=0.5, help="region radius, deg (default 0.5)")
    make.add_argument("--formats", default="fits", help="comma-separated tile formats: fits[,png] (default fits)")
    make.set_defaults(func=_cmd_sky_make)
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
    except KeyboardInterrupt:
        print("hipsml: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
