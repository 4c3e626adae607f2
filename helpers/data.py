"""The labeled corpus: load and validate it, map labels to ids, batch it for training. Explained in notebook 04.

A row may leave a task's label empty (partially labeled data); that label becomes ``IGNORE_INDEX``
so the loss skips it.
"""

from __future__ import annotations

import collections
import csv
import io
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from .checks import check_batch_size, check_bool, check_choice
from .memory import return_freed_memory

TASKS: dict[str, list[str]] = {
    "topic": ["world", "sports", "business", "sci_tech"],  # the four AG News classes
    "sentiment": ["negative", "positive"],  # as in SST-2
}
SPLITS = ("train", "val", "test")
BATCHING = ("length", "random", "portion")  # how make_loader cuts training batches
IGNORE_INDEX = -100  # CrossEntropyLoss's default ignore_index
CORPUS_PATH = Path(__file__).resolve().parents[1] / "data" / "sentences.csv"
HARD_CASES_PATH = CORPUS_PATH.with_name("hard_cases.csv")  # reviews in hard patterns, kept out of training


def _problem(path: Path, line: int, column: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{path}, line {line}, column {column!r}: {value!r} is not allowed; {allowed}")


def _record_lines(text: str) -> list[int]:
    """The line each CSV record starts on, the header first: a quoted field may span lines, and lines that are
    blank or hold only spaces and tabs are skipped (as pandas skips them)."""
    lines, starts, end = text.split("\n"), [], 0
    reader = csv.reader(io.StringIO(text))
    for _ in reader:
        if lines[end].strip():
            starts.append(end + 1)
        end = reader.line_num
    return starts


def read_table(path: str | Path) -> pd.DataFrame:
    """The CSV at ``path``, every cell a str, indexed by the line each record starts on (so errors name it).

    Checked as a file: UTF-8, valid CSV, a header without a repeated column. Lines may end as on Linux and
    macOS (LF), Windows (CRLF) or old Macs (CR): all are read as Python's text files read them, so a line break
    inside a quoted field becomes LF.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 (byte {error.start}: {error.object[error.start:error.start + 4]!r}); "
                         "save the file with UTF-8 encoding") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        # header=None: a row with more fields than the header is an error, not a silently made index.
        rows = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty; it needs a header line that names its columns (text, and for training "
                         "a column per task) and one row per sentence") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path} is not valid CSV ({str(error).strip()}); a field that holds a comma or "
                         'a quote must be wrapped in double quotes, with each quote inside it doubled ("")') from None
    header = rows.iloc[0]
    if header.duplicated().any():
        raise ValueError(f"{path} repeats column(s) {sorted(set(header[header.duplicated()]))} in its header")
    return rows.iloc[1:].set_axis(header.tolist(), axis=1).set_axis(_record_lines(text)[1:], axis=0)


def require_columns(path: str | Path, table: pd.DataFrame, required: Sequence[str]) -> None:
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; found {list(table.columns)}, required {list(required)}")


def check_texts(path: str | Path, table: pd.DataFrame, unique: bool = True) -> None:
    """Every text must contain words; with ``unique`` (training data), no text may repeat."""
    seen: dict[str, int] = {}
    for line, value in table["text"].items():
        if not value.strip():
            raise _problem(path, line, "text", value, "every text must contain words")
        if unique and value in seen:
            raise _problem(path, line, "text", value, f"it repeats line {seen[value]}; keep one copy")
        seen[value] = line


def load_corpus(path: str | Path = CORPUS_PATH, tasks: Mapping[str, Sequence[str]] = TASKS,
                require_split: bool = True) -> pd.DataFrame:
    """Read and validate the corpus CSV (``text``, ``split`` and one column per task).

    Errors name the file, the line, the column and the value, and say what is allowed. Empty task
    cells are kept as missing labels (``<NA>``). With ``require_split=False`` a file may lack the split
    column (the caller splits its rows, as ``python -m helpers train`` does); one that is there is checked.
    Any other column (the project's corpus has ``style``) comes after those, as text, an empty cell as ``<NA>``.
    """
    return check_corpus(path, read_table(path), tasks, require_split)


def check_corpus(path: str | Path, table: pd.DataFrame, tasks: Mapping[str, Sequence[str]] = TASKS,
                 require_split: bool = True) -> pd.DataFrame:
    """``load_corpus`` on a table ``read_table`` read from ``path``: its checks and its result."""
    required = ["text", *(["split"] if require_split or "split" in table.columns else []), *tasks]
    require_columns(path, table, required)
    check_texts(path, table)
    checks = [("split", list(SPLITS))] if "split" in required else []
    for column, allowed in [*checks, *((task, list(labels)) for task, labels in tasks.items())]:
        empty_ok = column != "split"
        bad = ~table[column].isin(allowed + ([""] if empty_ok else []))
        if bad.any():
            line = bad.idxmax()
            hint = f"allowed: {allowed}" + (" or empty for a missing label" if empty_ok else "")
            raise _problem(path, line, column, table.at[line, column], hint)
    others = [column for column in table.columns if column not in required]
    return (table[required + others].replace({column: {"": pd.NA} for column in [*tasks, *others]})
            .reset_index(drop=True))


def load_texts(path: str | Path) -> pd.DataFrame:
    """A CSV of sentences to label: a ``text`` column of texts with words (repeats allowed), any other
    columns kept as they are, one row per record."""
    table = read_table(path)
    require_columns(path, table, ["text"])
    if table.empty:
        raise ValueError(f"{path} has a header but no rows; add one row per sentence")
    check_texts(path, table, unique=False)
    return table.reset_index(drop=True)


def label_portions(frame: pd.DataFrame, tasks: Mapping[str, Sequence[str]] = TASKS) -> pd.Series:
    """Which labels each row carries: ``aligned`` (every task), ``<task> only``, ``<a> + <b>``, or
    ``unlabelled``. Metrics are reported per portion, since each portion is a different kind of text."""
    present = frame[list(tasks)].notna()

    def name(row: pd.Series) -> str:
        labelled = [task for task in tasks if row[task]]
        if len(labelled) == len(tasks):
            return "aligned"
        if len(labelled) == 1:
            return f"{labelled[0]} only"
        return " + ".join(labelled) or "unlabelled"

    return present.apply(name, axis=1).rename("portion")


def label_maps(tasks: Mapping[str, Sequence[str]] = TASKS) -> dict[str, dict[str, int]]:
    """Label -> id for each task, from the task spec (never from whatever one split happens to hold)."""
    return {task: {label: i for i, label in enumerate(labels)} for task, labels in tasks.items()}


class SentenceDataset(Dataset):
    """Rows of a validated corpus frame as ``{"text": str, "labels": {task: id or IGNORE_INDEX}}``."""

    def __init__(self, frame: pd.DataFrame, tasks: Mapping[str, Sequence[str]] = TASKS) -> None:
        maps = label_maps(tasks)
        unknown = {task: sorted(set(frame[task].dropna()) - set(maps[task])) for task in tasks}
        if any(unknown.values()):
            raise ValueError(f"labels outside the task spec: { {t: u for t, u in unknown.items() if u} }; "
                             f"allowed: {dict(tasks)}")
        self.texts = frame["text"].tolist()
        self.labels = {task: [IGNORE_INDEX if pd.isna(label) else maps[task][label] for label in frame[task]]
                       for task in tasks}

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict:
        return {"text": self.texts[index], "labels": {task: ids[index] for task, ids in self.labels.items()}}


class Collator:
    """Tokenize a batch with dynamic padding (to its longest sentence) and stack labels per task."""

    def __init__(self, tokenize: Callable[[list[str]], dict[str, torch.Tensor]]) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[dict]) -> dict:
        batch = self.tokenize([item["text"] for item in items])
        batch["labels"] = {task: torch.tensor([item["labels"][task] for item in items])
                           for task in items[0]["labels"]}
        return batch


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of sentences of similar length, so little compute is spent on padding; under
    data-parallel training, one process's share of them.

    Each epoch (each pass over the sampler) draws a permutation from ``seed`` + the epoch number. Process
    ``rank`` of ``world_size`` takes every ``world_size``-th row of it, wrapping around so every share is
    equally long: every process then takes the same number of steps, which DDP needs. The share is cut
    into chunks of ``batch_size * chunk_batches``, each chunk sorted by length and cut into batches, and
    the batches are shuffled. Batches stay random; padding shrinks. ``chunk_batches=1`` gives plain random
    batches. With ``groups`` (one key per row), a batch never mixes rows of two groups: each group is cut into
    batches on its own, and all the batches are shuffled together, so a group's share of the steps is its share
    of the rows.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 chunk_batches: int = 16, groups: Sequence[Hashable] | None = None) -> None:
        self.lengths, self.batch_size, self.seed = list(lengths), check_batch_size(batch_size), seed
        if groups is not None and (len(groups) != len(self.lengths) or world_size > 1):
            raise ValueError(f"groups needs one key per row ({len(self.lengths)}, got {len(groups)}) and one process "
                             f"(got {world_size}): processes would hold different numbers of each group's batches")
        self.groups = list(groups) if groups is not None else [0] * len(self.lengths)
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.share = -(-len(self.lengths) // world_size)
        self.chunk = batch_size * chunk_batches

    def __len__(self) -> int:
        sizes = collections.Counter(self.groups) if self.world_size == 1 else {0: self.share}
        return sum(-(-size // self.batch_size) for size in sizes.values())

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # each pass is the next epoch, on every process alike
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        mine = [order[i % len(order)] for i in range(self.rank, self.share * self.world_size, self.world_size)]
        batches = []
        for key in dict.fromkeys(self.groups[i] for i in mine):
            rows = [i for i in mine if self.groups[i] == key]
            for start in range(0, len(rows), self.chunk):
                chunk = sorted(rows[start:start + self.chunk], key=lambda i: self.lengths[i])
                batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[position]


class MemoryReleasingLoader(DataLoader):
    """A DataLoader whose every pass starts by handing the memory freed before it back to the system
    (``helpers.memory.return_freed_memory``): a loop written by hand, which calls nothing that does, then
    starts from what the process holds, not on top of what an earlier loop left scattered. It runs once a
    pass."""

    def __iter__(self) -> Iterator:
        return_freed_memory()
        return super().__iter__()


def make_loader(frame: pd.DataFrame, tokenize: Callable[[list[str]], dict[str, torch.Tensor]],
                tasks: Mapping[str, Sequence[str]] = TASKS, batch_size: int = 32, shuffle: bool = False,
                seed: int = 0, rank: int = 0, world_size: int = 1, batching: str = "length") -> DataLoader:
    """A DataLoader over ``frame`` (over process ``rank``'s share of it, of ``world_size``).

    With ``shuffle`` (training), batches are random and seeded so runs repeat exactly; ``batching`` says how
    they are made (see ``LengthGroupedBatches``): ``length`` groups sentences of similar length (little padding),
    ``random`` does not, and ``portion`` (one process only) makes each batch of rows that carry the same tasks'
    labels, as multi-dataset training takes one dataset per batch. Without ``shuffle`` (evaluation), rows keep
    their order and a process takes every ``world_size``-th row, without padding: each row counts once in summed
    metrics.
    """
    check_batch_size(batch_size)
    check_choice("batching", batching, BATCHING)
    dataset = SentenceDataset(frame, tasks)
    if check_bool("shuffle", shuffle):
        lengths = [len(text) for text in dataset.texts]  # characters: a cheap, monotone proxy for tokens
        groups = None
        if batching == "portion":  # a row's key: which tasks it carries a label for
            groups = [tuple(ids[i] != IGNORE_INDEX for ids in dataset.labels.values()) for i in range(len(dataset))]
        sampler = LengthGroupedBatches(lengths, batch_size, seed, rank, world_size,
                                       chunk_batches=1 if batching == "random" else 16, groups=groups)
        return MemoryReleasingLoader(dataset, batch_sampler=sampler, collate_fn=Collator(tokenize))
    share = dataset if world_size == 1 else Subset(dataset, range(rank, len(dataset), world_size))
    return MemoryReleasingLoader(share, batch_size=batch_size, collate_fn=Collator(tokenize))


def by_length(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by text length, for evaluation batches with little padding."""
    return frame.iloc[frame["text"].str.len().argsort(kind="stable")]


def split_loaders(corpus: pd.DataFrame, model: torch.nn.Module, batch_size: int = 32, seed: int = 0,
                  batching: str = "length") -> dict[str, DataLoader]:
    """Train (shuffled, seeded, cut as ``batching`` says: see ``make_loader``), val and test loaders for ``model``'s
    tasks (``model.tokenize``, ``model.tasks``).

    Validation and test rows are sorted by length, in batches of 64: metrics do not depend on the order,
    and batches of similar length waste little compute on padding.
    """
    def rows(split: str) -> pd.DataFrame:
        frame = corpus[corpus["split"] == split]
        return frame if split == "train" else by_length(frame)

    return {split: make_loader(rows(split), model.tokenize, model.tasks, batch_size=batch_size if split == "train"
                               else 64, shuffle=split == "train", seed=seed, batching=batching)
            for split in ("train", "val", "test")}
