"""The CSV that ``python -m helpers train`` learns from: which of its columns are tasks, and its rows, split.

``--tasks`` names the tasks: as a comma-separated list of columns (``topic,sentiment``, labels from the data) or
as JSON (``{"topic": ["world", "sports"]}``, which also fixes the labels and their order). Without it, every
column but ``text`` and ``split`` whose values look like labels is a task: a column of numbers (an id, a count, a
score), one with a different value in nearly every row (an identifier, a name) or one with a single value is
not, and the line the command prints names each column it left out and why. A column that describes the text
(its source, its style) looks like labels too: name the tasks with ``--tasks`` to leave it out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .data import check_corpus, read_table, require_columns
from .multitask import check_tasks

VAL_SHARE = 0.1  # of the rows, when the CSV has no split column
ID_SHARE = 0.5  # more distinct values than this share of a column's filled cells: an identifier, not labels
TaskSpec = Mapping[str, Sequence[str]] | Sequence[str] | None  # what --tasks gives: a spec, column names, nothing


def parse_tasks(text: str) -> dict | list[str]:
    """An argparse type for ``--tasks``: a JSON object (a task spec), or comma-separated column names."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"topic\": [\"a\", \"b\"]}}', "
                                             f"got {text!r}")
        return value
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, each once, such as "
                                         f"'topic,sentiment', got {text!r}")
    return names


def why_not_labels(values: pd.Series) -> str | None:
    """Why a column's filled cells do not look like labels (None: they do)."""
    distinct = values.unique()
    if len(distinct) < 2:
        return f"{len(distinct)} distinct value(s)"
    if pd.to_numeric(pd.Series(distinct), errors="coerce").notna().all():
        return "numbers: an id, a count or a score?"
    if len(distinct) > ID_SHARE * len(values):
        return f"{len(distinct)} distinct values in {len(values)} rows: an identifier?"
    return None


def task_spec(path: Path, table: pd.DataFrame, tasks: TaskSpec = None) -> tuple[dict[str, list[str]], str]:
    """The task spec of a CSV read by ``read_table``, and a line that says which columns became tasks.

    ``tasks``: a spec (used as given), column names (labels: the values found in each, sorted) or None (every
    column that looks like labels, see the module docstring).
    """
    if isinstance(tasks, Mapping):
        spec = check_tasks(tasks)
        return spec, f"tasks (from --tasks): {_listing(spec)}"
    named = tasks is not None
    require_columns(path, table, ["text", *(tasks or [])])
    columns = list(tasks) if named else [column for column in table.columns if column not in ("text", "split")]
    found = {column: sorted(set(table[column]) - {""}) for column in columns}
    skipped = {} if named else {column: why for column in columns
                                if (why := why_not_labels(table.loc[table[column] != "", column])) is not None}
    spec = {column: labels for column, labels in found.items() if column not in skipped}
    unused = "; not tasks: " + ", ".join(f"{column} ({why})" for column, why in skipped.items()) if skipped else ""
    if not spec:
        raise ValueError(f"{path} has no column of labels next to text (and split){unused}; give each task a column "
                         "of labels, or name the task columns with --tasks, e.g. --tasks topic,sentiment")
    for name, labels in spec.items():
        if len(labels) < 2:
            raise ValueError(f"{path}, column {name!r} holds {len(labels)} distinct label(s) {labels}; a task needs "
                             "at least 2")
    source = "from --tasks" if named else "every column that looks like labels; choose with --tasks a,b"
    return check_tasks(spec), f"tasks ({source}): {_listing(spec)}{unused}"


def _listing(spec: Mapping[str, Sequence[str]]) -> str:
    return ", ".join(f"{task} ({len(labels)} labels)" for task, labels in spec.items())


def read_labelled_csv(path: Path, tasks: TaskSpec = None, seed: int = 42
                      ) -> tuple[pd.DataFrame, dict[str, list[str]], str]:
    """The CSV, read once, as ``load_corpus`` returns it and checked by it (so with its errors), its task spec and
    the line that says which columns became tasks (``task_spec``). Without a split column, the rows get a seeded
    90/10 train/val split.
    """
    table = read_table(path)
    spec, line = task_spec(path, table, tasks)
    frame = check_corpus(path, table, spec, require_split=False)
    frame = frame[[column for column in ("text", "split", *spec) if column in frame.columns]]  # columns not tasks go
    if "split" not in frame.columns:
        val_rows = np.random.default_rng(seed).permutation(len(frame))[:max(1, round(VAL_SHARE * len(frame)))]
        frame.insert(1, "split", "train")
        frame.loc[val_rows, "split"] = "val"
    return frame, spec, line
