"""hipsml sky make: a synthetic labelled sky."""

from __future__ import annotations

import argparse


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


def add_sky_commands(sub: argparse._SubParsersAction) -> None:
    """Add hipsml sky make to the ``hipsml`` parser."""
    sky = sub.add_parser("sky", help="synthetic labelled surveys")
    sky_sub = sky.add_subparsers(dest="sky_command", required=True, metavar="ACTION")
    make = sky_sub.add_parser("make", help="render a seeded synthetic labelled sky into HiPS surveys")
    make.add_argument("directory", help="output folder: one HiPS per band plus catalogue.ecsv")
    make.add_argument("--sources", type=int, default=2000, help="number of sources")
    make.add_argument("--seed", type=int, default=0, help="random seed")
    make.add_argument("--order", type=int, default=8, help="HiPS max order")
    make.add_argument("--tile-width", type=int, default=256, help="tile width, a power of two")
    make.add_argument(
        "--frame",
        default="icrs",
        choices=["icrs", "equatorial", "galactic", "ecliptic"],
        help="coordinate frame of the surveys",
    )
    make.add_argument("--ra", type=float, default=150.0, help="region centre RA, deg")
    make.add_argument("--dec", type=float, default=2.0, help="region centre Dec, deg")
    make.add_argument("--radius", type=float, default=0.5, help="region radius, deg")
    make.add_argument("--formats", default="fits", help="comma-separated tile formats: fits[,png]")
    make.set_defaults(func=_cmd_sky_make)
