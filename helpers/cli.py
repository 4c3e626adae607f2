"""``python -m helpers``: the command line. ``train`` fine-tunes a MultiTaskSentenceTransformer on a labelled
CSV; ``predict`` labels the texts of a CSV with a saved model (see ``helpers.prediction``).

``python -m helpers --data ...``, without a command, still trains. Training runs in one process or, under
``torchrun -m helpers train``, data-parallel over several GPUs or machines (see ``helpers.distributed`` and
the README, "Beyond one machine"). Every ``TrainConfig`` field is a flag, and every flag takes effect.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from . import distributed, prediction
from .backbone import DEFAULT_MODEL
from .caching import cache_frozen_bottom, frozen_bottom_depth
from .checks import check_batch_size, check_positive_int
from .data import SPLITS, check_corpus, read_table, require_columns
from .devices import pick_device
from .freezing import GradualUnfreezing, freeze
from .metrics import as_json, evaluate
from .multitask import MultiTaskSentenceTransformer, check_save_target, check_tasks
from .pooling import POOLING_MODES
from .precision import PRECISIONS, autocast_dtype
from .seeding import set_seed
from .training import TrainConfig, train

COMMANDS = ("train", "predict")
VAL_SHARE = 0.1  # of the rows, when the CSV has no split column
RECIPE = ("epochs", "lr", "head_lr", "weight_decay", "layer_decay", "warmup_ratio", "max_grad_norm", "loss_weighting",
          "task_weights", "metric", "early_stopping_patience", "seed")  # the TrainConfig fields a model card shows
Error = Callable[[str], NoReturn]  # a parser's error(): prints its usage and the message, exits with status 2


def _optional(kind: type) -> Callable[[str], object]:
    def parse(text: str) -> object:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names it in errors: "invalid float value: 'x'"
    return parse


def checked_int(check: Callable[[int], object]) -> Callable[[str], int]:
    """An argparse type: an int that ``check`` (from ``helpers.checks``) accepts; its error becomes the flag's."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        try:
            check(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    return parse


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"a\": 1}}', got {text!r}")
    return value


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``head_lr`` -> ``--head-lr``), typed and explained by the field."""
    group = parser.add_argument_group("training (helpers.TrainConfig)", "'none' sets an optional value to None")
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        hint = hints[field.name]
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        options = {"default": default, "help": field.metadata["help"] + " (default: %(default)s)"}
        if hint is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is dict:
            options["type"] = _json_object
        elif type(None) in typing.get_args(hint):
            options["type"] = _optional(typing.get_args(hint)[0])
        else:
            options["type"] = hint
        group.add_argument("--" + field.name.replace("_", "-"), **options)


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, metavar="CSV",
                        help="CSV with a text column, one column per task (labels; empty = missing) and "
                             "optionally split (train/val/test; without it: a seeded 90/10 train/val split)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the model (with its model card, README.md), history.csv and metrics.json: "
                             "new, empty, or holding a model saved earlier (whose files are replaced; other files "
                             "stay)")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME_OR_DIR",
                        help="backbone: a Hugging Face name or a local folder (default: %(default)s)")
    parser.add_argument("--tasks", type=_json_object,
                        help='task spec as JSON, e.g. \'{"topic": ["world", "sports"], "sentiment": [...]}\'; '
                             "default: every column but text and split, with the labels found in it (sorted)")
    parser.add_argument("--batch-size", type=checked_int(check_batch_size), default=32, metavar="N",
                        help="sentences per step and process; under torchrun, N processes take N x this per "
                             "step (default: %(default)s)")
    parser.add_argument("--pooling", choices=POOLING_MODES,
                        help="token vectors -> sentence vector (default: the pooling a sentence-transformers "
                             "folder declares, else mean)")
    parser.add_argument("--max-seq-length", type=checked_int(lambda n: check_positive_int("max_seq_length", n)),
                        metavar="N", help="truncate sentences to this many tokens (default: the model's own limit)")
    parser.add_argument("--freeze", default="none", metavar="STRATEGY",
                        help="what stays frozen (helpers.freeze): none, backbone (heads only), embeddings, "
                             "bottom:K (the embeddings and the lowest K layers), head:TASK. A frozen bottom of at "
                             "least one layer is computed once per sentence and kept in memory, in one process "
                             "(not under torchrun): each step then costs what the layers above it cost. "
                             "(default: %(default)s)")
    parser.add_argument("--gradual-unfreezing", action="store_true",
                        help="train the heads first, then unfreeze one more encoder layer from the top at each "
                             "stage (one process only; stages: one per epoch, or --unfreeze-every steps)")
    parser.add_argument("--language", default="en",
                        help="language code of the texts, for the model card (default: %(default)s)")
    _add_config_flags(parser)
    parser.set_defaults(show_progress_bar=sys.stdout.isatty(), run=train_command, error=parser.error)


def _add_predict_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="folder of a saved model (python -m helpers train --out, or model.save)")
    parser.add_argument("--data", type=Path, required=True, metavar="CSV",
                        help="CSV with a text column (one sentence per row); its other columns are copied over")
    parser.add_argument("--out", type=Path, required=True, metavar="CSV",
                        help="CSV to write: the input's columns, then for each task <task>_predicted (the label) "
                             "and <task>_prob (its probability)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--batch-size", type=checked_int(check_batch_size), default=32, metavar="N",
                        help="sentences per forward pass (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps "
                                                         "(default: %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="see helpers.precision; auto is float32 on a CPU (default: %(default)s)")
    parser.add_argument("--show-progress-bar", action=argparse.BooleanOptionalAction, default=sys.stdout.isatty(),
                        help="a bar over the batches (default: on in a terminal)")
    parser.set_defaults(run=prediction.predict_command, error=parser.error)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Train a MultiTaskSentenceTransformer on a labelled CSV, or label the texts of a CSV with a "
                    "saved one. Without a command, the flags are train's. Under torchrun "
                    "(torchrun --nproc-per-node N -m helpers train ...) training runs data-parallel.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,predict}")
    _add_train_flags(commands.add_parser("train", help="fine-tune a model on a labelled CSV",
                                         description="Fine-tune a MultiTaskSentenceTransformer on a labelled CSV."))
    _add_predict_flags(commands.add_parser("predict", help="label the texts of a CSV with a saved model",
                                           description="Label each text of a CSV with a saved model."))
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags; ``run`` and ``error`` are the command's. A first argument that names no command (the form
    from before there were two, ``python -m helpers --data ...``) means ``train``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "train")
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    args.run(args, args.error)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe; its own checks reject bad values."""
    return TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)})


def check_train_flags(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig, once the flags are known to work together and the output folders to be safe to write."""
    config = train_config(args)
    if config.unfreeze_every is not None and not args.gradual_unfreezing:
        raise ValueError("--unfreeze-every sets the length of a gradual-unfreezing stage; add "
                         "--gradual-unfreezing, or drop --unfreeze-every")
    distributed.check_gradual_unfreezing(args.gradual_unfreezing)
    if args.gradual_unfreezing and args.freeze != "none":
        raise ValueError("--gradual-unfreezing decides what trains at each stage; drop --freeze, or drop "
                         "--gradual-unfreezing")
    if args.freeze == "all":
        raise ValueError("--freeze all leaves nothing to train; freeze 'backbone' to train the heads only")
    if config.task_weights and config.loss_weighting != "static":
        raise ValueError(f"--task-weights only apply with --loss-weighting static (it is {config.loss_weighting!r}); "
                         "add --loss-weighting static, or drop --task-weights")
    device = pick_device(config.device)  # a device this machine lacks is refused now, not after loading the model
    if device.type != "cpu" and device.index is not None and distributed.data_parallel():
        raise ValueError(f"--device {config.device} would put every process on the same device; under torchrun "
                         "each process takes GPU LOCAL_RANK of its machine: pass --device cuda (or auto)")
    check_save_target(args.out)
    if config.checkpoint_dir is not None:
        check_save_target(Path(config.checkpoint_dir))
    return config


def infer_tasks(path: Path, frame: pd.DataFrame) -> dict[str, list[str]]:
    """Every column but text and split is a task; its labels are the non-empty values found in it, sorted."""
    tasks = {column: sorted(set(frame[column]) - {""}) for column in frame.columns if column not in ("text", "split")}
    if not tasks:
        raise ValueError(f"{path} has no task column; next to text (and split), give each task a column of labels")
    for name, labels in tasks.items():
        if len(labels) < 2:
            raise ValueError(f"{path}, column {name!r} holds {len(labels)} distinct label(s) {labels}; a task needs "
                             "at least 2. Drop a column that is not a task, or name the tasks with --tasks")
    return tasks


def read_labelled_csv(path: Path, tasks: Mapping[str, Sequence[str]] | None = None, seed: int = 42
                      ) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The CSV, read once, as ``load_corpus`` returns it and checked by it (so with its errors), and the task
    spec: ``tasks``, or without it every column but text and split (``infer_tasks``). Without a split column,
    the rows get a seeded 90/10 train/val split.
    """
    table = read_table(path)
    if tasks is None:
        require_columns(path, table, ["text"])
        tasks = infer_tasks(path, table)
    tasks = check_tasks(tasks)
    frame = check_corpus(path, table, tasks, require_split=False)
    if "split" not in frame.columns:
        val_rows = np.random.default_rng(seed).permutation(len(frame))[:max(1, round(VAL_SHARE * len(frame)))]
        frame.insert(1, "split", "train")
        frame.loc[val_rows, "split"] = "val"
    return frame, tasks


def train_command(args: argparse.Namespace, error: Error) -> None:
    """Check everything that can be checked before training (bad input is a usage error), then train."""
    try:
        config = check_train_flags(args)
        frame, tasks = read_labelled_csv(args.data, args.tasks, config.seed)
    except (OSError, ValueError) as problem:
        error(str(problem))
    splits = {split: frame[frame["split"] == split] for split in SPLITS if (frame["split"] == split).any()}
    for split in ("train", "val"):
        if split not in splits:
            error(f"{args.data} has no {split!r} row; mark some rows {split!r} in its split column, or drop the "
                  "column for a seeded 90/10 train/val split")
    distributed.setup(config.device)
    try:
        run(args, config, splits, tasks, error)
    finally:
        distributed.teardown()


def build_model(args: argparse.Namespace, tasks: dict[str, list[str]], error: Error) -> MultiTaskSentenceTransformer:
    """The model with ``--freeze`` applied; a model that cannot be built or frozen so is a usage error."""
    try:
        return freeze(MultiTaskSentenceTransformer(tasks, args.model, pooling=args.pooling,
                                                   max_seq_length=args.max_seq_length), args.freeze)
    except (OSError, ValueError) as problem:
        error(str(problem))


def cache_bottom(model: MultiTaskSentenceTransformer) -> str:
    """Cache the frozen bottom when it spans the embeddings and at least one layer and this is one process;
    say what was done (see ``helpers.caching``)."""
    depth = frozen_bottom_depth(model)
    if depth < 1:
        return ""
    if distributed.data_parallel():
        return f"; frozen bottom of {depth} layer(s) not cached under torchrun"
    cache_frozen_bottom(model)
    return f"; frozen bottom of {depth} layer(s) computed once per sentence and cached"


def run(args: argparse.Namespace, config: TrainConfig, splits: dict[str, pd.DataFrame],
        tasks: dict[str, list[str]], error: Error) -> None:
    """Train on this rank's share; rank 0 reports and writes ``args.out``."""
    if not distributed.is_main():
        warnings.simplefilter("ignore")  # one copy of each warning, from rank 0
    config.show_progress_bar = config.show_progress_bar and distributed.is_main()
    set_seed(config.seed)  # the same heads on every rank (DDP copies rank 0's anyway)
    model = build_model(args, tasks, error)
    cached = cache_bottom(model)
    unfreezing = GradualUnfreezing(model) if args.gradual_unfreezing else None
    loaders = {split: distributed.make_loader(rows, model.tokenize, tasks, args.batch_size, shuffle=split == "train",
                                              seed=config.seed) for split, rows in splits.items()}
    report(", ".join(f"{len(rows)} {split}" for split, rows in splits.items()) + " sentences; tasks "
           + ", ".join(f"{task} ({len(labels)} labels)" for task, labels in tasks.items())
           + f"; {distributed.world_size()} process(es), batch {args.batch_size} each; freeze {args.freeze}{cached}")
    history = train(model, loaders["train"], loaders["val"], config, unfreezing=unfreezing)
    metrics = {split: as_json(evaluate(model, loaders[split], precision=config.precision), tasks)
               for split in ("val", "test") if split in loaders}
    if distributed.is_main():  # the side files are saved with the model: in one swap, and owned like its files
        model.save(args.out, test_scores=metrics.get("test"), training=card_training(args, config, splits),
                   language=args.language, extra_files={"history.csv": history.to_csv(index=False),
                                                        "metrics.json": json.dumps(metrics, indent=2)})
    for split, results in metrics.items():
        for task, r in results.items():
            scores = f"accuracy {r['accuracy']:.3f}  macro_f1 {r['macro_f1']:.3f}" if r["n"] else "no labels"
            report(f"{split:>5} {task:<12} {scores}  (n={r['n']})")
    report(f"wrote {args.out}: the model and its card (README.md), history.csv, metrics.json")


def card_training(args: argparse.Namespace, config: TrainConfig, splits: Mapping[str, pd.DataFrame]
                  ) -> dict[str, object]:
    """The data and the recipe, as the model card shows them: names and settings, no machine paths."""
    dtype = autocast_dtype(config.precision, pick_device(config.device), training=True)
    return {"data": args.data.name, "sentences": ", ".join(f"{len(rows)} {split}" for split, rows in splits.items()),
            "freeze": "gradual unfreezing" if args.gradual_unfreezing else args.freeze,
            "batch size": f"{args.batch_size} per process, {distributed.world_size()} process(es)",
            "precision": f"{config.precision} ({str(dtype).removeprefix('torch.') if dtype else 'float32'})",
            **{name: getattr(config, name) for name in RECIPE}}


def report(line: str) -> None:
    if distributed.is_main():
        print(line, flush=True)
