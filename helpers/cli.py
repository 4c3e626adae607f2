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

import pandas as pd

from . import distributed, prediction
from .backbone import DEFAULT_MODEL
from .caching import cache_bytes, cache_frozen_bottom, frozen_bottom_depth, worth_caching
from .checks import check_batch_size, check_positive_int, is_finite_number
from .data import SPLITS
from .devices import pick_device
from .freezing import GradualUnfreezing, freeze
from .labelled_csv import parse_tasks, read_labelled_csv
from .metrics import as_json, evaluate
from .multitask import MultiTaskSentenceTransformer, check_save_target
from .pooling import POOLING_MODES
from .precision import PRECISIONS
from .seeding import set_seed
from .training import TrainConfig, train, training_dtype
from .weighting import make_weighting

COMMANDS = ("train", "predict")
CACHE_LIMIT_GB = 2.0  # the frozen-bottom cache's default bound: room to spare on an ordinary machine
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


def _cache_limit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (is_finite_number(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"the cache limit is in GB, a finite number >= 0, got {text!r}")
    return value


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
    parser.add_argument("--tasks", type=parse_tasks, metavar="COLUMNS_OR_JSON",
                        help="the task columns, e.g. topic,sentiment (labels: the values found in each, sorted), or "
                             "a spec as JSON that also fixes the labels' order, e.g. "
                             """'{"topic": ["world", "sports"]}'; default: every column but text and split that """
                             "looks like labels (not numbers, not a different value in nearly every row). Name them "
                             "to leave out a column that describes the text (its source, its style)")
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
    parser.add_argument("--cache-limit", type=_cache_limit, default=CACHE_LIMIT_GB, metavar="GB",
                        help="the most memory the frozen bottom's cache may take, estimated before it fills: over "
                             "it, only the training split is cached (the sentences read at every step), or, if that "
                             "is over it too, nothing (each step then runs the frozen layers). 0: never cache "
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
    training_dtype(config)  # a precision this device lacks (fp16 on a CPU) is refused now too
    check_save_target(args.out)
    if config.checkpoint_dir is not None:
        check_save_target(Path(config.checkpoint_dir))
    return config


def train_command(args: argparse.Namespace, error: Error) -> None:
    """Check everything that can be checked before anything loads (bad input is a usage error), then train."""
    try:
        config = check_train_flags(args)
        frame, tasks, tasks_line = read_labelled_csv(args.data, args.tasks, config.seed)
        make_weighting(config.loss_weighting, list(tasks), config.task_weights)  # static: a weight for each task
    except (OSError, ValueError) as problem:
        error(str(problem))
    splits = {split: frame[frame["split"] == split] for split in SPLITS if (frame["split"] == split).any()}
    for split in ("train", "val"):
        if split not in splits:
            error(f"{args.data} has no {split!r} row; mark some rows {split!r} in its split column, or drop the "
                  "column for a seeded 90/10 train/val split")
    distributed.setup(config.device)
    try:
        report(tasks_line)
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


def cache_bottom(model: MultiTaskSentenceTransformer, splits: Mapping[str, pd.DataFrame], limit_gb: float) -> str:
    """Cache the frozen bottom when it pays (``worth_caching``) in one process, within ``limit_gb`` of memory by
    the estimate of ``cache_bytes``: for every split, else for the training split (read at every step), else not
    at all. Returns the line that says which (empty when nothing is frozen to cache)."""
    if not worth_caching(model):
        return ""
    bottom = f"frozen bottom of {frozen_bottom_depth(model)} layer(s)"
    if distributed.data_parallel():
        return f"{bottom} not cached under torchrun: every step runs it too"
    need = {split: cache_bytes(model.encoder, rows["text"].tolist()) for split, rows in splits.items()}
    total, limit = sum(need.values()), f"--cache-limit {limit_gb:g} GB"
    if total <= limit_gb * 1e9:
        cache_frozen_bottom(model)
        return f"{bottom} computed once per sentence and cached: about {_gb(total)}, within {limit}"
    if need["train"] <= limit_gb * 1e9:
        cache_frozen_bottom(model, training_only=True)
        return (f"{bottom} cached for the training split only: about {_gb(need['train'])}, where every split "
                f"would take {_gb(total)}, over {limit}")
    return (f"{bottom} not cached: the training split alone would take about {_gb(need['train'])}, over {limit}; "
            "every step runs it (raise --cache-limit to cache it)")


def _gb(size: float) -> str:
    return f"{size / 1e9:.3g} GB"


def run(args: argparse.Namespace, config: TrainConfig, splits: dict[str, pd.DataFrame],
        tasks: dict[str, list[str]], error: Error) -> None:
    """Train on this rank's share; rank 0 reports and writes ``args.out``."""
    if not distributed.is_main():
        warnings.simplefilter("ignore")  # one copy of each warning, from rank 0
    config.show_progress_bar = config.show_progress_bar and distributed.is_main()
    set_seed(config.seed)  # the same heads on every rank (DDP copies rank 0's anyway)
    model = build_model(args, tasks, error)
    cached = cache_bottom(model, splits, args.cache_limit)
    if cached:
        report(cached)
    unfreezing = GradualUnfreezing(model) if args.gradual_unfreezing else None
    loaders = {split: distributed.make_loader(rows, model.tokenize, tasks, args.batch_size, shuffle=split == "train",
                                              seed=config.seed) for split, rows in splits.items()}
    report(", ".join(f"{len(rows)} {split}" for split, rows in splits.items())
           + f" sentences; {distributed.world_size()} process(es), batch {args.batch_size} each; freeze {args.freeze}")
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
    dtype = training_dtype(config)
    return {"data": args.data.name, "sentences": ", ".join(f"{len(rows)} {split}" for split, rows in splits.items()),
            "freeze": "gradual unfreezing" if args.gradual_unfreezing else args.freeze,
            "batch size": f"{args.batch_size} per process, {distributed.world_size()} process(es)",
            "precision": f"{config.precision} ({str(dtype).removeprefix('torch.') if dtype else 'float32'})",
            **{name: getattr(config, name) for name in RECIPE}}


def report(line: str) -> None:
    if distributed.is_main():
        print(line, flush=True)
