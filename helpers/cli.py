"""``python -m helpers``: train a MultiTaskSentenceTransformer on your own labelled CSV.

The same command runs in one process or, under ``torchrun -m helpers``, data-parallel over several GPUs or
machines (see ``helpers.distributed`` and the README, "Beyond one machine"). Every ``TrainConfig`` field is
a flag, and every flag takes effect.
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

import numpy as np
import pandas as pd

from . import distributed
from .backbone import DEFAULT_MODEL
from .checks import is_positive_int
from .data import load_corpus
from .freezing import GradualUnfreezing
from .metrics import as_json, evaluate
from .multitask import MultiTaskSentenceTransformer, check_save_target, check_tasks
from .pooling import POOLING_MODES
from .seeding import set_seed
from .training import TrainConfig, train

VAL_SHARE = 0.1  # of the rows, when the CSV has no split column


def _optional(kind: type) -> Callable[[str], object]:
    def parse(text: str) -> object:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__  # argparse names it in errors: "invalid float value: 'x'"
    return parse


def _positive_int(text: str) -> int:
    if not text.isdigit() or not is_positive_int(int(text)):
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return int(text)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Train a MultiTaskSentenceTransformer on a labelled CSV. Under torchrun "
                    "(torchrun --nproc-per-node N -m helpers ...) it trains data-parallel.")
    parser.add_argument("--data", type=Path, required=True,
                        help="CSV with a text column, one column per task (labels; empty = missing) and "
                             "optionally split (train/val/test; without it: a seeded 90/10 train/val split)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the model, history.csv and metrics.json: new, empty, or holding a model "
                             "saved earlier (which is replaced)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="backbone: a Hugging Face name or a local folder (default: %(default)s)")
    parser.add_argument("--tasks", type=_json_object,
                        help='task spec as JSON, e.g. \'{"topic": ["world", "sports"], "sentiment": [...]}\'; '
                             "default: every column but text and split, with the labels found in it (sorted)")
    parser.add_argument("--batch-size", type=_positive_int, default=32,
                        help="sentences per step and process; under torchrun, N processes take N x this per "
                             "step (default: %(default)s)")
    parser.add_argument("--pooling", choices=POOLING_MODES, default="mean",
                        help="token vectors -> sentence vector (default: %(default)s)")
    parser.add_argument("--max-seq-length", type=_positive_int,
                        help="truncate sentences to this many tokens (default: the model's own limit)")
    parser.add_argument("--gradual-unfreezing", action="store_true",
                        help="train the heads first, then unfreeze one more encoder layer from the top at each "
                             "stage (one process only; stages: one per epoch, or --unfreeze-every steps)")
    _add_config_flags(parser)
    parser.set_defaults(show_progress_bar=sys.stdout.isatty())
    return parser


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the flags describe; its own checks reject bad values."""
    return TrainConfig(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)})


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
    """The CSV as ``load_corpus`` returns it, checked by it (so with its errors), and the task spec.

    Without ``tasks`` they come from the columns (``infer_tasks``). Without a split column, the rows get a
    seeded 90/10 train/val split.
    """
    if tasks is None:
        load_corpus(path, {}, require_split=False)  # the file itself first: encoding, CSV, header, texts
        tasks = infer_tasks(path, pd.read_csv(path, dtype=str, keep_default_na=False))
    tasks = check_tasks(tasks)
    frame = load_corpus(path, tasks, require_split=False)
    if "split" not in frame.columns:
        val_rows = np.random.default_rng(seed).permutation(len(frame))[:max(1, round(VAL_SHARE * len(frame)))]
        frame.insert(1, "split", "train")
        frame.loc[val_rows, "split"] = "val"
    return frame, tasks


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = train_config(args)
        if config.unfreeze_every is not None and not args.gradual_unfreezing:
            raise ValueError("--unfreeze-every sets the length of a gradual-unfreezing stage; add "
                             "--gradual-unfreezing, or drop --unfreeze-every")
        if args.gradual_unfreezing and distributed.world_size_from_environment() > 1:
            raise ValueError("--gradual-unfreezing cannot run under torchrun: DDP synchronises only the "
                             "parameters trainable when it wraps the model; drop the flag or run one process")
        check_save_target(args.out)
        frame, tasks = read_labelled_csv(args.data, args.tasks, config.seed)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    splits = {split: rows for split, rows in frame.groupby("split")}
    for split in ("train", "val"):
        if split not in splits:
            parser.error(f"{args.data} has no {split!r} row; mark some rows {split!r} in its split column, or drop "
                         "the column for a seeded 90/10 train/val split")
    distributed.setup(config.device)
    try:
        run(args, config, splits, tasks)
    finally:
        distributed.teardown()


def run(args: argparse.Namespace, config: TrainConfig, splits: dict[str, pd.DataFrame],
        tasks: dict[str, list[str]]) -> None:
    """Train on this rank's share; rank 0 reports and writes ``args.out``."""
    if not distributed.is_main():
        warnings.simplefilter("ignore")  # one copy of each warning, from rank 0
    config.show_progress_bar = config.show_progress_bar and distributed.is_main()
    set_seed(config.seed)  # the same heads on every rank (DDP copies rank 0's anyway)
    model = MultiTaskSentenceTransformer(tasks, args.model, pooling=args.pooling, max_seq_length=args.max_seq_length)
    unfreezing = GradualUnfreezing(model) if args.gradual_unfreezing else None
    loaders = {split: distributed.make_loader(rows, model.tokenize, tasks, args.batch_size, shuffle=split == "train",
                                              seed=config.seed) for split, rows in splits.items()}
    report(", ".join(f"{len(rows)} {split}" for split, rows in splits.items()) + " sentences; tasks "
           + ", ".join(f"{task} ({len(labels)} labels)" for task, labels in tasks.items())
           + f"; {distributed.world_size()} process(es), batch {args.batch_size} each")
    history = train(model, loaders["train"], loaders["val"], config, unfreezing=unfreezing)
    metrics = {split: as_json(evaluate(model, loaders[split], precision=config.precision), tasks)
               for split in ("val", "test") if split in loaders}
    if distributed.is_main():
        model.save(args.out)
        history.to_csv(args.out / "history.csv", index=False)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for split, results in metrics.items():
        for task, r in results.items():
            scores = f"accuracy {r['accuracy']:.3f}  macro_f1 {r['macro_f1']:.3f}" if r["n"] else "no labels"
            report(f"{split:>5} {task:<12} {scores}  (n={r['n']})")
    report(f"wrote {args.out}: the model, history.csv, metrics.json")


def report(line: str) -> None:
    if distributed.is_main():
        print(line, flush=True)
