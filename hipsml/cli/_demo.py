"""hipsml demo: the end-to-end demo."""

from __future__ import annotations

import argparse


def _cmd_demo(args: argparse.Namespace) -> int:
    from hipsml.demo import run_demo

    run_demo(args.directory, progress=not args.quiet, train=not args.no_train)
    return 0


def add_demo_commands(sub: argparse._SubParsersAction) -> None:
    """Add hipsml demo to the ``hipsml`` parser."""
    demo = sub.add_parser(
        "demo", help="render the embedded demo survey, build a dataset, train a SOM and a CNN, write a report",
        description="Render a seeded synthetic sky into DIR/sky, extract the demo dataset (DIR/demo.yaml) into "
        "DIR/datasets/demo and draw DIR/preview.png; then train a SOM (DIR/som) and a CNN (DIR/cnn) briefly and "
        "write DIR/report/index.html: every figure with its summary and the command that makes it again, and the "
        "SOM explorer. A second run reuses the sky, the dataset version and the SOM and CNN made with the same "
        "options from it.",
    )  # fmt: skip
    demo.add_argument("directory", nargs="?", default="demo-output", help="output folder")
    demo.add_argument("--no-train", action="store_true", help="stop after the dataset and its preview")
    demo.set_defaults(func=_cmd_demo)
