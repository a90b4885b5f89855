"""The dataset commands of ``hipsml``: ``extract``, ``datasets``, ``preview``, ``verify``.

Each parses its arguments, checks what it can before any work, calls the library and prints what it did.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex

from hipsml.cli._common import positive_int
from hipsml.errors import HipsmlError

__all__ = ["add_dataset_commands"]


def _continue_command(args: argparse.Namespace) -> str:
    """The shell command that continues this extraction (the same recipe and overrides, ``--resume``)."""
    words = ["hipsml", "extract", args.recipe]
    for flag, value in (("--output", args.output), ("--workers", args.workers), ("--scheduler", args.scheduler)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join([*words, "--resume"])


def _cmd_extract(args: argparse.Namespace) -> int:
    from hipsml.dataset import extract_dataset

    try:
        ds = extract_dataset(
            args.recipe, resume=not args.fresh, scheduler=args.scheduler, workers=args.workers, output=args.output,
            progress=not args.quiet,
        )  # fmt: skip
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"continue with: {_continue_command(args)}") from None
    except HipsmlError as exc:
        if not getattr(exc, "resumable", False):
            raise
        try:
            error = type(exc)(f"{exc}: {_continue_command(args)}")
        except TypeError:  # an error class with another signature: keep it as it is
            raise exc from None
        raise error from None
    print(ds.report.summary())
    return 0


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n}"


def _cmd_datasets(args: argparse.Namespace) -> int:
    from hipsml.dataset import VERSIONS_FILE, dataset_versions, parse_dataset_path, version_problem
    from hipsml.errors import DatasetError

    root, _ = parse_dataset_path(args.path)
    versions = dataset_versions(root)  # a one-line error when there is no dataset
    print(f"{root}")
    print(f"  {'version':<8} {'cutouts':>10} {'size':>10}  {'created (UTC)':<20} {'parent':<7} hash")
    missing = []
    for v in versions:
        problem = version_problem(root, v)
        if problem is not None:
            missing.append(f"v{v['version']} ({problem})")
            print(f"  v{v['version']:<7} MISSING: {problem}")
            continue
        created = v.get("created", "")
        try:
            created = _dt.datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            pass
        parent = f"v{v['parent']}" if v.get("parent") else "-"
        print(
            f"  v{v['version']:<7} {v['count']:>10,} {_size(int(v.get('bytes', 0))):>10}  {created:<20} "
            f"{parent:<7} {v['hash'][:16]}"
        )
    if missing:
        raise DatasetError(f"{root / VERSIONS_FILE} lists versions that are not there: {'; '.join(missing)}; "
                           "restore them or remove their entries")  # fmt: skip
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from hipsml.dataset import channel_labels, open_dataset, preview_dataset, select_channels

    ds = open_dataset(args.path)
    view = select_channels(args.channels, channel_labels(ds.channels, int(ds.images.shape[1])))
    dest = preview_dataset(ds, args.out, per_group=args.per_group, seed=args.seed, channels=args.channels)
    print(
        f"wrote {dest}: {args.per_group} cutouts per split and label of {ds.path} v{ds.version}, channels {view.label}"
    )
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from hipsml.dataset import verify_dataset

    print(verify_dataset(args.path, threads=args.threads).summary())
    return 0


def add_dataset_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``extract``, ``datasets``, ``preview`` and ``verify`` on the ``hipsml`` parser."""
    ext = sub.add_parser(
        "extract",
        help="build a versioned Zarr training set from a recipe",
        description="Build (or find) the dataset version RECIPE describes: cutouts of every target in every "
        "survey, on Dask, into DATASET/vN (Zarr v3) with reproducible splits and provenance. An unchanged "
        "recipe writes nothing; added targets reuse the previous version's chunks; an interrupted build "
        "continues from its finished units (--fresh starts it over).",
    )
    ext.add_argument("recipe", help="recipe file (YAML); see recipes/demo.yaml")
    again = ext.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted build of the same recipe from its finished units (the default)",
    )
    again.add_argument(
        "--fresh", action="store_true", help="discard an interrupted build of the same recipe and start it again"
    )
    ext.add_argument("--workers", type=positive_int, help="override compute.workers")
    ext.add_argument(
        "--scheduler",
        metavar="S",
        help="override compute.scheduler: threads, processes, tcp://host:8786, sciserver, slurm",
    )
    ext.add_argument("--output", metavar="PATH", help="override output.path")
    ext.set_defaults(func=_cmd_extract)

    lst = sub.add_parser("datasets", help="list the versions of a dataset")
    lst.add_argument("path", help="dataset folder")
    lst.set_defaults(func=_cmd_datasets)

    pre = sub.add_parser("preview", help="draw a PNG grid of a dataset's cutouts by split and label")
    pre.add_argument("path", help="dataset folder, optionally PATH@vN")
    pre.add_argument("--out", required=True, metavar="FILE", help="output PNG")
    pre.add_argument("--per-group", type=positive_int, default=4, help="cutouts per split and label")
    pre.add_argument("--seed", type=int, default=0, help="which random cutouts (a seed)")
    pre.add_argument(
        "--channels",
        metavar="C[,C,C]",
        help="channels to draw: one name or index (grey) or three (RGB), e.g. r, 2,1,0 or radio,i,g "
        "(default: every channel side by side, up to 4)",
    )
    pre.set_defaults(func=_cmd_preview)

    ver = sub.add_parser(
        "verify",
        help="hash every file of a dataset version against its manifest",
        description="Check every file of DATASET's version against the manifest written when it was published "
        "(size and sha256) and name every file that is missing, changed, a symlink or not in the manifest. "
        "Exits 2 when anything differs.",
    )
    ver.add_argument("path", help="dataset folder, optionally PATH@vN")
    ver.add_argument("--threads", type=positive_int, help="hashing threads (default: the CPU count, at most 16)")
    ver.set_defaults(func=_cmd_verify)
