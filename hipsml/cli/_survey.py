"""hipsml survey info and hipsml cutout: one survey's description, one cutout from the command line."""

from __future__ import annotations

import argparse

from hipsml.errors import InvalidInputError


def _cmd_survey_info(args: argparse.Namespace) -> int:
    from hipsml import open_survey

    survey = open_survey(args.location)
    print(survey.summary())
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
    from hipsml._files import check_writable_file, user_path
    from hipsml.extract import check_field_of_view, check_rotation, check_sky_position, output_format

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
    from hipsml.extract import cutouts, output_format, write_cutout

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


def add_survey_commands(sub: argparse._SubParsersAction) -> None:
    """Add hipsml survey info and hipsml cutout to the ``hipsml`` parser."""
    cut = sub.add_parser(
        "cutout",
        help="cut one image around a sky position out of one or several HiPS surveys",
        description="Cut one image around (RA, Dec) out of one or several HiPS surveys (their channels "
        "are stacked) and write it as FITS (with WCS and provenance), PNG (display, north up) or NPY, "
        "chosen by the extension of --out.",
    )
    cut.add_argument(
        "--hips",
        action="append",
        required=True,
        metavar="LOC",
        help="survey: local directory, file:// or http(s):// URL (repeat for more surveys)",
    )
    cut.add_argument("--ra", type=float, required=True, help="ICRS right ascension of the centre, deg")
    cut.add_argument("--dec", type=float, required=True, help="ICRS declination of the centre, deg")
    cut.add_argument("--size", type=int, default=64, help="width and height in pixels")
    scale = cut.add_mutually_exclusive_group()
    scale.add_argument(
        "--scale",
        type=float,
        metavar="ARCSEC",
        help="pixel scale, arcsec/pixel (default: the first survey's finest cell size)",
    )
    scale.add_argument("--fov", type=float, metavar="ARCSEC", help="field of view, arcsec (scale = fov / size)")
    cut.add_argument(
        "--projection",
        default="TAN",
        type=str.upper,
        choices=["TAN", "SIN"],
        help="TAN (gnomonic) or SIN (orthographic)",
    )
    cut.add_argument("--rotation", type=float, default=0.0, help="rotation of the image, deg")
    cut.add_argument(
        "--interpolation",
        default="bilinear",
        choices=["bilinear", "nearest", "bicubic"],
        help="bilinear, nearest HEALPix cell, or bicubic (Catmull-Rom)",
    )
    cut.add_argument(
        "--order",
        type=_order_arg,
        default="auto",
        metavar="auto|K",
        help="HiPS order to read (auto: the coarsest with cells no larger than a pixel)",
    )
    cut.add_argument("--out", required=True, metavar="FILE", help="output file: .fits, .png or .npy")
    cut.add_argument(
        "--stretch",
        default="auto",
        choices=["auto", "asinh", "linear"],
        help="PNG levels: asinh stretch, or linear 0..255 for surveys whose tiles are "
        "already PNG/JPEG display images (auto picks by the survey formats)",
    )
    cut.set_defaults(func=_cmd_cutout)

    survey = sub.add_parser("survey", help="inspect a HiPS survey")
    survey_sub = survey.add_subparsers(dest="survey_command", required=True, metavar="ACTION")
    info = survey_sub.add_parser("info", help="print a survey's properties and tile layout")
    info.add_argument("location", help="local directory, file:// or http(s):// URL of a HiPS")
    info.set_defaults(func=_cmd_survey_info)
