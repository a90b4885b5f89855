"""The ``hipsml`` command: a thin layer that parses arguments and calls the library.

A :class:`~hipsml.errors.HipsmlError` is printed as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hipsml.errors import HipsmlError, InvalidInputError

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


def _order_arg(text: str) -> str | int:
    """``--order``: ``auto`` or a non-negative integer."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a non-negative integer, got {text!r}")
    return value


def _survey_location(text: str) -> str:
    """A ``--hips`` value: ``~`` and ``~user`` expanded (an unknown user is a one-line error); URLs as given."""
    from hipsml._files import user_path

    return str(user_path(text, what="--hips")) if text.startswith("~") else text


def _check_cutout_args(args: argparse.Namespace) -> None:
    """Refuse bad positions, fields and output paths before any survey is opened."""
    from hipsml._files import user_path
    from hipsml.extract._geometry import check_field_of_view, check_rotation, check_sky_position
    from hipsml._files import check_writable_file
    from hipsml.extract._output import output_format

    user_path(args.out, what="--out")  # None-like, NUL, ~nouser
    output_format(args.out)  # an unknown extension
    check_sky_position(args.ra, args.dec)
    check_rotation(args.rotation)
    if args.scale is not None:
        check_field_of_view(args.size, args.scale, args.projection)
    elif args.fov is not None:
        if not (args.fov > 0 and args.fov < float("inf")):
            raise InvalidInputError(f"--fov must be a positive, finite number of arcsec, got {args.fov!r}")
        check_field_of_view(args.size, args.fov / args.size if args.size > 0 else args.fov, args.projection)
    check_writable_file(args.out, what="--out", probe=True)  # a name too long, a read-only folder


def _cmd_cutout(args: argparse.Namespace) -> int:
    from hipsml import open_survey
    from hipsml.extract import cutouts
    from hipsml.extract._output import output_format, write_cutout

    _check_cutout_args(args)
    surveys = [open_survey(_survey_location(location)) for location in args.hips]
    result = cutouts(
        surveys,
        ([args.ra], [args.dec]),
        size=args.size,
        pixel_scale=args.scale,
        fov=args.fov,
        projection=args.projection,
        rotation=args.rotation,
        interpolation=args.interpolation,
        order=args.order,
    )
    options = {}
    if output_format(args.out) == "png":
        stretch = args.stretch
        if stretch == "auto":
            # tiles that exist only as PNG/JPEG are display images already: keep their levels
            stretch = "linear" if all("fits" not in sv.formats for sv in surveys) else "asinh"
        options["stretch"] = stretch
    dest = write_cutout(args.out, result, 0, **options)
    covered = float(result.mask.mean()) * 100.0
    orders = ", ".join(str(k) for k in result.orders)
    print(
        f"wrote {dest}: {result.images.shape[1]} x {result.size} x {result.size} at "
        f"{result.pixel_scale:.4g} arcsec/pixel, {result.projection} {result.interpolation}, "
        f"HiPS order {orders}, {covered:.1f}% covered"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hipsml._demo import run_demo

    run_demo(args.directory, progress=not args.quiet, train=not args.no_train)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hipsml`` command."""
    parser = argparse.ArgumentParser(
        prog="hipsml", description="Machine-learning training sets from HiPS sky surveys."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v INFO, -vv DEBUG)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="render the embedded demo survey, build a dataset, train a SOM and a CNN, write a report",
        description="Render a seeded synthetic sky into DIR/sky, extract the demo dataset (DIR/demo.yaml) into "
        "DIR/datasets/demo and draw DIR/preview.png; then train a SOM (DIR/som) and a CNN (DIR/cnn) briefly and "
        "write DIR/report/index.html: every figure with its summary and the command that makes it again, and the "
        "SOM explorer. A second run reuses the sky, the dataset version and the SOM and CNN made with the same "
        "options from it.",
    )  # fmt: skip
    demo.add_argument("directory", nargs="?", default="demo-output", help="output folder (default: demo-output)")
    demo.add_argument("--no-train", action="store_true", help="stop after the dataset and its preview")
    demo.set_defaults(func=_cmd_demo)

    cut = sub.add_parser(
        "cutout",
        help="cut one image around a sky position out of one or several HiPS surveys",
        description="Cut one image around (RA, Dec) out of one or several HiPS surveys (their channels "
        "are stacked) and write it as FITS (with WCS and provenance), PNG (display, north up) or NPY, "
        "chosen by the extension of --out.",
    )
    cut.add_argument("--hips", action="append", required=True, metavar="LOC",
                     help="survey: local directory, file:// or http(s):// URL (repeat for more surveys)")
    cut.add_argument("--ra", type=float, required=True, help="ICRS right ascension of the centre, deg")
    cut.add_argument("--dec", type=float, required=True, help="ICRS declination of the centre, deg")
    cut.add_argument("--size", type=int, default=64, help="width and height in pixels (default 64)")
    scale = cut.add_mutually_exclusive_group()
    scale.add_argument("--scale", type=float, metavar="ARCSEC",
                       help="pixel scale, arcsec/pixel (default: the first survey's finest cell size)")
    scale.add_argument("--fov", type=float, metavar="ARCSEC", help="field of view, arcsec (scale = fov / size)")
    cut.add_argument("--projection", default="TAN", type=str.upper, choices=["TAN", "SIN"],
                     help="TAN (gnomonic, default) or SIN (orthographic)")
    cut.add_argument("--rotation", type=float, default=0.0, help="rotation of the image, deg (default 0)")
    cut.add_argument("--interpolation", default="bilinear", choices=["bilinear", "nearest", "bicubic"],
                     help="bilinear (default), nearest HEALPix cell, or bicubic (Catmull-Rom)")
    cut.add_argument("--order", type=_order_arg, default="auto", metavar="auto|K",
                     help="HiPS order to read (default auto: the coarsest with cells no larger than a pixel)")
    cut.add_argument("--out", required=True, metavar="FILE", help="output file: .fits, .png or .npy")
    cut.add_argument("--stretch", default="auto", choices=["auto", "asinh", "linear"],
                     help="PNG levels: asinh stretch, or linear 0..255 for surveys whose tiles are "
                          "already PNG/JPEG display images (default auto picks by the survey formats)")
    cut.set_defaults(func=_cmd_cutout)

    from hipsml._cli_dataset import add_dataset_commands

    add_dataset_commands(sub)

    from hipsml._cli_som import add_som_commands

    add_som_commands(sub)

    from hipsml._cli_cnn import add_cnn_commands

    add_cnn_commands(sub)

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
