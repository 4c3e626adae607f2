"""``python -m helpers predict``: label each text of a CSV with a saved model (flags: see ``helpers.cli``).

The output is the input, every column kept, plus two columns per task: ``<task>_predicted``, the label, and
``<task>_prob``, its probability. The input's own columns may hold the true labels under the task names, so
the predictions sit beside them. ``--out`` is written whole or not at all, and an existing file is replaced
only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from .data import load_texts
from .multitask import MultiTaskSentenceTransformer
from .precision import autocast_dtype
from .saving import replace_file


def prediction_columns(task: str) -> tuple[str, str]:
    """The output's columns for ``task``: the predicted label and its probability."""
    return f"{task}_predicted", f"{task}_prob"


def check_out(out: Path, data: Path, overwrite: bool) -> None:
    """Refuse to write over a folder, over the input, or over a file without ``overwrite``."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name, such as {out / 'predictions.csv'}")
    if out.exists() and data.exists() and os.path.samefile(out, data):
        raise ValueError(f"--out {out} is the --data file; write the predictions to another file")
    if out.exists() and not overwrite:
        raise ValueError(f"--out {out} exists; pass --overwrite to replace it, or choose another file")


def check_no_clash(data: Path, columns: Iterable[str], tasks: Iterable[str]) -> None:
    """Refuse an input that already has a prediction column: writing the prediction there would lose it."""
    clashes = [name for task in tasks for name in prediction_columns(task) if name in columns]
    if clashes:
        raise ValueError(f"{data} already has column(s) {clashes}, where the predictions go; rename them")


def predict_command(args: argparse.Namespace, error: Callable[[str], NoReturn]) -> None:
    """Check the output, the input and the model first (a problem is a usage error), then predict and write."""
    try:
        check_out(args.out, args.data, args.overwrite)
        table = load_texts(args.data)
        model = MultiTaskSentenceTransformer.load(args.model, device=args.device)
        check_no_clash(args.data, table.columns, model.tasks)
        autocast_dtype(args.precision, model.device, training=False)  # fp16 on a CPU is refused here
    except (OSError, ValueError) as problem:
        error(str(problem))
    predictions = model.predict(table["text"].tolist(), batch_size=args.batch_size, precision=args.precision,
                                show_progress_bar=args.show_progress_bar)
    for task in model.tasks:
        label, probability = prediction_columns(task)
        table[label], table[probability] = predictions[task], predictions[f"{task}_prob"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    replace_file(args.out, lambda path: table.to_csv(path, index=False))
    print(f"wrote {args.out}: {len(table)} rows, " + ", ".join(f"{task} ({', '.join(prediction_columns(task))})"
                                                                for task in model.tasks), flush=True)

