"""The ``hipsml report`` command: parse, check, call :func:`hipsml.report.write_report`, print."""

from __future__ import annotations

import argparse

__all__ = ["add_report_commands"]


def _cmd_report(args: argparse.Namespace) -> int:
    from hipsml.report import write_report

    index = write_report(args.dataset, args.out, som=args.som, cnn=args.cnn or (), channels=args.channels)
    parts = (
        ["the dataset"]
        + (["the SOM and its explorer"] if args.som else [])
        + [f"{len(args.cnn)} CNN run{'s' if len(args.cnn) > 1 else ''}"] * bool(args.cnn)
    )
    print(f"wrote {index.parent}: {', '.join(parts)}; open {index.resolve().as_uri()}")
    return 0


def add_report_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``report`` on the ``hipsml`` parser."""
    rep = sub.add_parser(
        "report",
        help="write a static report page for a dataset, its SOM and its CNN runs",
        description="Write FOLDER/index.html (self-contained, relative links): the dataset summary with the "
        "coverage per channel, the cutout grid, the SOM pictures with the label purity per neuron and its "
        "explorer, and per CNN run its curves, accuracy per split and class, confusion matrix and most "
        "confident mistakes; each figure with the command that makes it again. A run's predictions are "
        "read from beside the dataset version, or made and stored there.",
    )
    rep.add_argument("dataset", metavar="DATASET[@vN]", help="dataset folder, optionally @vN")
    rep.add_argument("--som", metavar="SOMDIR", help="a SOM folder (hipsml som train)")
    rep.add_argument("--cnn", metavar="RUN", action="append", help="a CNN run folder (repeat for several)")
    rep.add_argument("--out", required=True, metavar="FOLDER", help="the report folder (replaced when it holds one)")
    rep.add_argument(
        "--channels",
        metavar="C[,C,C]",
        help="channels of the pictures: one name or index (grey) or three (RGB) (default: side by side)",
    )
    rep.set_defaults(func=_cmd_report)
