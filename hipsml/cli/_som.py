"""The SOM commands of ``hipsml``: ``som train``, ``som map``, ``som outliers``, ``som explore``.

Each parses its arguments, checks what it can before any work, calls the library and prints what it did.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, cast

from hipsml.cli._common import OptionFlags, add_option_flags, options_from, positive_int, print_epoch

__all__ = ["add_som_commands"]

logger = logging.getLogger(__name__)

#: command-line overrides of SOM options: flag -> (option name, type)
SOM_FLAGS: OptionFlags = {
    "--epochs": ("epochs", int),
    "--layout": ("layout", str),
    "--width": ("width", int),
    "--height": ("height", int),
    "--numrot": ("numrot", int),
    "--neuron-dim": ("neuron_dim", int),
    "--mode": ("mode", str),
    "--batch-size": ("batch_size", int),
    "--init": ("init", str),
    "--seed": ("seed", int),
    "--normalise": ("normalise", str),
}

#: help of ``--channels`` on the commands that draw pictures (the explorer's default differs)
_CHANNELS_HELP = (
    "channels to draw: one name or index (grey) or three (RGB), e.g. r, 2,1,0 or radio,i,g "
    "(default: every channel side by side, up to 4)"
)


def _som_defaults() -> Any:
    from hipsml.train import SOMConfig

    return SOMConfig()


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """SOM options from ``--config`` and the override flags (the flags win)."""
    return options_from(args, SOM_FLAGS, section="som", example="width: 10, numrot: 360")


def _print_epoch(record: Any, total: int, first: bool) -> None:
    print_epoch(record, total, first, f"quantisation error {record.quantisation_error:.5g}, "
                f"topographic error {record.topographic_error:.4f}")  # fmt: skip


def _split(text: str | None) -> str | None:
    """``--split``: a split name; ``all`` (or none given, where allowed) for every cutout."""
    return None if text in (None, "all") else text


def _view(channels: str | None, ds: Any) -> Any:
    """The :class:`~hipsml.dataset._pictures.ChannelView` of ``--channels`` on the dataset ``ds``."""
    from hipsml.dataset import channel_labels, select_channels

    return select_channels(channels, channel_labels(ds.channels, int(ds.images.shape[1])))


def _cmd_train(args: argparse.Namespace) -> int:
    from hipsml._files import user_path
    from hipsml.dataset import open_dataset
    from hipsml.errors import OutputError
    from hipsml.train import SOMConfig, load_som, plot_som_pictures, train_som, training_summary
    from hipsml.train.som import SOM_PICTURES, check_som_memory

    out = user_path(args.out, what="--out")
    options = _options(args)
    SOMConfig.from_mapping(options)  # bad keys and values fail before the dataset is read
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder for the SOM")
    previous = None
    if (out / "som.json").is_file():
        if not args.resume:
            raise OutputError(f"{out} holds a SOM already; continue it with --resume or choose a new folder")
        previous = load_som(out)
    elif out.is_dir() and any(out.iterdir()) and not args.resume:
        raise OutputError(f"{out} is not empty and holds no SOM; choose a new or empty folder")
    ds = open_dataset(args.dataset)
    _view(args.channels, ds)  # a bad channel choice fails before the training, not after it
    base = None
    if previous is not None:
        base = previous.config  # the saved options; flags and --config may change epochs only
        done = len(previous.history)
        target = options.get("epochs", base.epochs)
        if done >= target:
            if not all((out / name).is_file() for name in SOM_PICTURES):  # stopped before the pictures
                plot_som_pictures(previous, previous.map(ds, split=_split(args.split)), out, channels=args.channels)
            print(f"{out}: already trained {done} of {target} epochs; nothing to do")
            return 0
        print(f"resuming {out} at epoch {done + 1} of {target}")
    config = SOMConfig.from_mapping(options, base=base)
    side = ds.images.shape[-1]
    split = _split(args.split)
    held = len(ds) if split is None else ds.split(split).size
    check_som_memory(config.resolved(side), ds.images.shape[1], side, count=held)  # before anything is said or done
    total = config.epochs
    first = len(previous.history) if previous is not None else 0
    # what is about to happen, and a progress bar through every epoch (stderr; -q: no bars)
    print(training_summary(ds, base, split=_split(args.split), **options), file=sys.stderr, flush=True)
    som = train_som(
        ds,
        base,
        split=_split(args.split),
        progress=not args.quiet,
        workdir=out,
        resume=args.resume,
        on_epoch=lambda record: _print_epoch(record, total, record.epoch == first),
        **options,
    )
    mapping = som.map(ds, split=_split(args.split))
    pictures = plot_som_pictures(som, mapping, out, channels=args.channels)
    print(
        f"wrote {out}: {som.config.layout} {som.config.width}x{som.config.height} SOM of "
        f"{som.config.neuron_dim}-pixel neurons, trained {len(som.history)} epochs on {len(mapping.bmu)} "
        f"cutouts of {ds.path} v{ds.version} (split {args.split}); pictures: "
        f"{', '.join(p.name for p in pictures)} (prototypes: channels {_view(args.channels, ds).label})"
    )
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from hipsml.dataset import open_dataset
    from hipsml.train import load_som

    return load_som(args.som), open_dataset(args.dataset)


def _mapping_name(args: argparse.Namespace) -> str:
    return args.name or Path(args.som).expanduser().resolve().name


def _cmd_map(args: argparse.Namespace) -> int:
    from hipsml.dataset import hipsml_attrs
    from hipsml.train import write_som_mapping

    som, ds = _load(args)
    folder = write_som_mapping(
        som,
        ds,
        name=_mapping_name(args),
        split=_split(args.split),
        overwrite=args.overwrite,
        som_path=args.som,
        progress=not args.quiet,
    )
    import zarr

    attrs = hipsml_attrs(zarr.open_group(folder, mode="r"))
    print(
        f"wrote {folder}: {attrs['count']} cutouts of {ds.path} v{ds.version}, "
        f"quantisation error {attrs['quantisation_error']:.5g}, topographic error {attrs['topographic_error']:.4f}"
    )
    return 0


def _cmd_outliers(args: argparse.Namespace) -> int:
    from hipsml._files import check_writable_file
    from hipsml.train import plot_outliers, stored_som_mapping
    from hipsml.train.som import ranked_positions

    check_writable_file(args.out, what="--out")  # before any mapping
    som, ds = _load(args)
    name, split = _mapping_name(args), _split(args.split)
    mapping = stored_som_mapping(som, ds, name, split=split) or som.map(ds, split=split, progress=not args.quiet)
    dest = plot_outliers(ds, mapping, args.out, top=args.top, channels=args.channels)
    positions = ranked_positions(mapping, args.top)
    ids = ds.column("id")
    labels, names = (ds.column("label"), ds.label_names) if ds.label_names else (None, None)
    shown = " (the first 10 below)" if len(positions) > 10 else ""
    print(
        f"wrote {dest}: the {len(positions)} cutouts farthest from their prototypes, channels "
        f"{_view(args.channels, ds).label}{shown}"
    )
    print(f"  {'rank':>4} {'row':>8} {'id':>14} {'distance':>10} {'neuron':>6}" + ("  label" if names else ""))
    assert mapping.rows is not None  # a mapping of a Dataset keeps its rows
    for rank, k in enumerate(positions[:10], 1):
        row = int(mapping.rows[k])
        label = f"  {names[int(labels[row])]}" if names and labels is not None else ""
        print(
            f"  {rank:>4} {row:>8} {str(ids[row]):>14} {float(mapping.distance[k]):>10.5g} "
            f"{int(mapping.bmu[k]):>6}{label}"
        )
    return 0


def _explore_mapping(args: argparse.Namespace, som: Any, ds: Any) -> Any:
    """The mapping to explore: ``--name`` (it must exist and be this SOM's), else the stored default, else map now."""
    from hipsml.errors import InvalidInputError
    from hipsml.train import read_som_mapping, stored_som_mapping

    split = _split(args.split)
    if args.name:
        read_som_mapping(ds, args.name)  # a missing mapping is a one-line error listing those there are
        mapping = stored_som_mapping(som, ds, args.name, split=split)
        if mapping is None:
            raise InvalidInputError(
                f"the mapping {args.name!r} of {ds.path} v{ds.version} was not made by {args.som} "
                f"(split {args.split or 'all'}); map it again with 'hipsml som map'"
            )
        return mapping
    name = _mapping_name(args)
    stored = stored_som_mapping(som, ds, name, split=split)
    if stored is not None:
        return stored
    logger.info("no stored mapping %r of this SOM; mapping %s v%d now", name, ds.path, ds.version)
    return som.map(ds, split=split, progress=not args.quiet)


def _cmd_explore(args: argparse.Namespace) -> int:
    from hipsml.train.som import check_explorer_folder, explorer_server, write_explorer

    check_explorer_folder(args.out)  # before any mapping
    som, ds = _load(args)
    mapping = _explore_mapping(args, som, ds)
    folder = write_explorer(som, ds, args.out, mapping=mapping, k=args.k, top=args.top, channels=args.channels)
    print(
        f"wrote {folder}: {som.neuron_count} prototypes, {len(mapping.bmu)} cutouts of {ds.path} v{ds.version}; "
        f"open {(folder / 'index.html').resolve().as_uri()}"
    )
    if not args.serve:
        return 0
    server = explorer_server(folder, port=args.port)
    host, port = cast("tuple[str, int]", server.server_address[:2])  # an AF_INET server on 127.0.0.1
    print(f"serving {folder} at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}")
    return value


def add_som_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``som train``, ``som map``, ``som outliers`` and ``som explore`` on the ``hipsml`` parser."""
    som = sub.add_parser("som", help="rotation- and flip-invariant self-organizing maps (PINK's algorithm)")
    som_sub = som.add_subparsers(dest="som_command", required=True, metavar="ACTION")

    train = som_sub.add_parser(
        "train",
        help="train a SOM on a dataset split",
        description="Train a rotation- and flip-invariant SOM on a dataset split (cutouts min-max normalised "
        "by default), saving it to --out after every epoch; then draw its prototypes, hit counts, U-matrix "
        "and error curves there. --resume continues a partial training from its last saved epoch. It prints "
        "the effective options first (SOMConfig's defaults: a 10x10 cartesian map, numrot 360, one epoch, "
        "from zero) and a progress bar through every epoch.",
    )
    train.add_argument("--dataset", required=True, metavar="PATH[@vN]", help="dataset folder, optionally @vN")
    train.add_argument("--split", default="train", help="split to train on ('all': every cutout)")
    train.add_argument("--config", metavar="YAML", help="SOM options (SOMConfig names: width, numrot, sigma, ...)")
    add_option_flags(train, SOM_FLAGS, defaults=_som_defaults)
    train.add_argument("--out", required=True, metavar="SOMDIR", help="folder of the SOM (and its pictures)")
    train.add_argument("--channels", metavar="C[,C,C]", help=_CHANNELS_HELP)
    train.add_argument("--resume", action="store_true", help="continue the partial training saved in --out")
    train.set_defaults(func=_cmd_train)

    mp = som_sub.add_parser(
        "map",
        help="map a dataset onto a SOM; store the mapping beside the version",
        description="Map every cutout (or one split) of a dataset version onto a SOM and write bmu, distance, "
        "angle, flipped and rows as Zarr arrays to DATASET/derived/vN/som/NAME, leaving the version untouched.",
    )
    mp.add_argument("som", metavar="SOMDIR", help="a SOM folder (hipsml som train)")
    mp.add_argument("--dataset", required=True, metavar="PATH[@vN]", help="dataset folder, optionally @vN")
    mp.add_argument("--name", help="mapping name (default: the SOM folder's name)")
    mp.add_argument("--split", help="map only this split (default: every cutout)")
    mp.add_argument("--overwrite", action="store_true", help="replace another mapping of that name")
    mp.set_defaults(func=_cmd_map)

    out = som_sub.add_parser(
        "outliers",
        help="draw the cutouts farthest from their prototypes",
        description="Rank a dataset's cutouts by the distance to their best-matching prototype (largest first) "
        "and draw the top ones as a PNG grid with id and distance. Uses the stored mapping NAME when it was "
        "made by this SOM, otherwise maps the dataset now.",
    )
    out.add_argument("som", metavar="SOMDIR", help="a SOM folder")
    out.add_argument("--dataset", required=True, metavar="PATH[@vN]", help="dataset folder, optionally @vN")
    out.add_argument("--top", type=positive_int, default=100, help="how many outliers")
    out.add_argument("--out", required=True, metavar="PNG", help="output PNG")
    out.add_argument("--name", help="stored mapping to use (default: the SOM folder's name)")
    out.add_argument("--split", help="rank only this split (default: every cutout)")
    out.add_argument("--channels", metavar="C[,C,C]", help=_CHANNELS_HELP)
    out.set_defaults(func=_cmd_outliers)

    ex = som_sub.add_parser(
        "explore",
        help="write a static web page to browse the SOM and its cutouts (--serve: serve it)",
        description="Write a self-contained SOM explorer folder (HTML, JS, PNG thumbnails, FITS cutouts; opens from "
        "file://): the prototypes on the map with a hit-count heat map, the K cutouts nearest to each prototype "
        "(id, ra, dec, label, distance, angle, flip, FITS link) and the TOP outliers. Uses the stored mapping NAME "
        "when it was made by this SOM, otherwise maps the dataset now. --serve then serves it on 127.0.0.1.",
    )
    ex.add_argument("som", metavar="SOMDIR", help="a SOM folder")
    ex.add_argument("--dataset", required=True, metavar="PATH[@vN]", help="dataset folder, optionally @vN")
    ex.add_argument("--out", required=True, metavar="FOLDER", help="the explorer folder (replaced when it holds one)")
    ex.add_argument("--k", type=positive_int, default=12, help="cutouts shown per prototype")
    ex.add_argument("--top", type=positive_int, default=50, help="outliers listed")
    ex.add_argument("--name", help="stored mapping to use; it must exist (default: the SOM folder's name, if stored)")
    ex.add_argument("--split", help="explore only this split (default: every cutout)")
    ex.add_argument(
        "--channels",
        metavar="C[,C,C]",
        help="thumbnail channels: one name or index (grey) or three (RGB), e.g. r or 2,1,0 (default 0,1,2 or 0)",
    )
    ex.add_argument("--serve", action="store_true", help="then serve the folder on 127.0.0.1 until Ctrl-C")
    ex.add_argument("--port", type=_port, default=8000, help="port for --serve (0: any free port)")
    ex.set_defaults(func=_cmd_explore)
