"""The CNN commands of ``hipsml``: ``cnn train`` (alias ``train cnn``) and ``predict``.

Each parses its arguments, checks what it can before any work, calls the library and prints what it did.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hipsml.cli._common import OptionFlags, add_option_flags, non_negative_int, options_from, print_epoch

__all__ = ["add_cnn_commands"]

logger = logging.getLogger(__name__)

#: command-line overrides of CNN options: flag -> (option name, type)
CNN_FLAGS: OptionFlags = {
    "--epochs": ("epochs", int),
    "--batch-size": ("batch_size", int),
    "--learning-rate": ("learning_rate", float),
    "--patience": ("patience", int),
    "--precision": ("precision", str),
    "--normalise": ("normalise", str),
    "--seed": ("seed", int),
    "--source": ("source", str),
    "--sky-shift-pixels": ("sky_shift_pixels", float),
    "--sky-scale-jitter": ("sky_scale_jitter", float),
}


def _cnn_defaults() -> Any:
    from hipsml.train import CNNConfig

    return CNNConfig()


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from hipsml.errors import InvalidInputError
    from hipsml.train import CNNConfig

    options = options_from(args, CNN_FLAGS, section="cnn", example="epochs: 20, batch_size: 128")
    try:
        CNNConfig.from_mapping(options)  # bad keys and values fail before the dataset is read
    except InvalidInputError as exc:
        raise InvalidInputError(f"{args.config}: {exc}" if args.config else str(exc)) from None
    return options


def _print_epoch(record: Any, total: int, first: bool) -> None:
    val = ""
    if "val_loss" in record:
        val = f", val loss {record.val_loss:.4f}, val accuracy {record.val_accuracy:.4f}"
    print_epoch(record, total, first, f"loss {record.train_loss:.4f}, accuracy {record.train_accuracy:.4f}{val}")


def _cmd_train_cnn(args: argparse.Namespace) -> int:
    from hipsml._files import user_path
    from hipsml.dataset import open_dataset
    from hipsml.errors import OutputError
    from hipsml.train import train_cnn

    out = user_path(args.out, what="--out")
    if (out / "run.json").is_file() and not args.resume:
        raise OutputError(f"{out} holds a CNN run already; continue it with --resume or choose a new folder")
    options = _options(args)
    ds = open_dataset(args.dataset)
    seen: list[int] = []

    def progress(record: dict[str, Any]) -> None:
        _print_epoch(record, record["epochs"], not seen)
        seen.append(record["epoch"])

    result = train_cnn(ds, options, workdir=out, resume=args.resume, init=args.init, freeze=args.freeze,
                       progress=False, on_epoch=progress)  # fmt: skip
    m = result.metrics
    shown = m.get("test") or m.get("val")
    score = f"; {shown['split']} accuracy {shown['accuracy']:.4f} on {shown['count']} cutouts" if shown else ""
    source = " (trained on cutouts cut from the sky every epoch)" if m["source"] == "sky" else ""
    print(
        f"wrote {out}{source}: best epoch {m['best_epoch']} of {m['epochs_run']}{score}; "
        f"model.eqx, metrics.json, confusion.png, curves.png"
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from hipsml.dataset import open_dataset
    from hipsml.train import predict_cnn, read_cnn_predictions
    from hipsml.train.cnn import prediction_scores

    ds = open_dataset(args.dataset)
    folder = predict_cnn(args.run, ds, split=args.split, name=args.name, overwrite=args.overwrite)
    result = read_cnn_predictions(ds, folder.name)
    counts = {n: int((result.predicted == k).sum()) for k, n in enumerate(result.label_names)}
    print(
        f"wrote {folder}: class probabilities of {len(result)} cutouts of {ds.path} v{ds.version} "
        f"(predicted: {', '.join(f'{n} {c}' for n, c in counts.items())})"
    )
    print(
        f"  probabilities: {folder / 'probabilities'} (rows: {folder / 'rows'}; "
        f"read them with hipsml.train.read_cnn_predictions(dataset, {folder.name!r}))"
    )
    scores = prediction_scores(ds, result)
    if scores:
        print(
            "  accuracy by split: "
            + ", ".join(f"{split} {s['accuracy']:.4f} ({s['correct']}/{s['count']})" for split, s in scores.items())
        )
    else:
        print("  the dataset has no labels: no accuracy")
    return 0


_TRAIN_HELP = "train a residual CNN classifier on a labelled dataset"
_TRAIN_DESCRIPTION = (
    "Train a small residual CNN on a labelled dataset's training split (exact 90-degree turns and "
    "flips as augmentation, class weights, early stopping on the validation split), checkpointing into --out "
    "after every epoch; then write metrics.json, confusion.png and curves.png there. --resume continues a run "
    "from its last finished epoch; --init fine-tunes a trained run on this dataset (new head, first K stages "
    "frozen with --freeze K). --source sky cuts every training target afresh each epoch from the dataset's "
    "surveys at a random angle (exact rotations by reprojection) instead of reading the stored cutouts."
)


def _add_train_arguments(cnn: argparse.ArgumentParser) -> None:
    cnn.add_argument("--dataset", required=True, metavar="PATH[@vN]", help="dataset folder, optionally @vN")
    cnn.add_argument("--config", metavar="YAML", help="CNN options (CNNConfig names: epochs, widths, normalise, ...)")
    add_option_flags(cnn, CNN_FLAGS, hints={"source": " (dataset or sky)"}, defaults=_cnn_defaults)
    cnn.add_argument(
        "--out", required=True, metavar="RUNDIR", help="run folder (checkpoints, model, metrics, pictures)"
    )
    cnn.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    cnn.add_argument("--init", metavar="CKPT", help="fine-tune from this run folder (or its model.eqx)")
    cnn.add_argument(
        "--freeze",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="with --init: freeze the first K stages (the stem is stage 1)",
    )
    cnn.set_defaults(func=_cmd_train_cnn)


def add_cnn_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``cnn train`` (beside ``som train``), its alias ``train cnn``, and ``predict``."""
    group = sub.add_parser("cnn", help="residual CNN classifiers (cnn train)")
    group_sub = group.add_subparsers(dest="cnn_command", required=True, metavar="ACTION")
    _add_train_arguments(group_sub.add_parser("train", help=_TRAIN_HELP, description=_TRAIN_DESCRIPTION))

    train = sub.add_parser("train", help="train models on a dataset (train cnn: the same as cnn train)")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    _add_train_arguments(train_sub.add_parser("cnn", help=f"{_TRAIN_HELP} (alias of cnn train)",
                                              description=_TRAIN_DESCRIPTION))  # fmt: skip

    pred = sub.add_parser(
        "predict", help="class probabilities of a dataset by a trained CNN, stored beside the version",
        description="Classify every cutout (or one split) of a dataset version with a trained CNN run and write "
        "rows, probabilities and predicted as Zarr arrays to DATASET/derived/vN/cnn/NAME, leaving the version "
        "untouched. Several run folders (the same classes) are an ensemble: their class probabilities are averaged.",
    )  # fmt: skip
    pred.add_argument(
        "run",
        metavar="RUNDIR",
        nargs="+",
        help="a run folder (hipsml cnn train); several make an ensemble (mean class probabilities)",
    )
    pred.add_argument("--dataset", required=True, metavar="PATH[@vN]", help="dataset folder, optionally @vN")
    pred.add_argument("--split", help="classify only this split (default: every cutout)")
    pred.add_argument(
        "--name", help="name of the predictions (default: the run folder's name; FIRST-ensembleK for K runs)"
    )
    pred.add_argument("--overwrite", action="store_true", help="replace predictions of that name")
    pred.set_defaults(func=_cmd_predict)
