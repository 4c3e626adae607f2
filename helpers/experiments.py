"""Run a training variant end to end and measure it: what notebooks 03 and 04 compare. Explained in notebook 03."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import pandas as pd
import psutil
from torch import nn
from torch.utils.data import DataLoader

from .data import TASKS, SentenceDataset, label_portions, make_loader
from .freezing import GradualUnfreezing
from .probe import fit_linear_probe
from .training import TrainConfig, evaluate, train


@contextlib.contextmanager
def measure() -> Iterator[dict]:
    """Wall time and peak growth of resident memory (RSS, MB) over the block, sampled every 25 ms.

    RSS counts everything the process holds (weights, activations, gradients, optimizer state), so
    the figure is comparable between runs in the same process, not an exact allocation count.
    """
    process = psutil.Process()
    start_rss = peak = process.memory_info().rss
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, process.memory_info().rss)
            stop.wait(0.025)  # often enough for runs of seconds; more often slows the run measured

    sampler = threading.Thread(target=sample, daemon=True)
    figures: dict = {}
    sampler.start()
    start = time.perf_counter()
    try:
        yield figures
    finally:
        figures["seconds"] = time.perf_counter() - start
        stop.set()
        sampler.join()
        figures["peak MB"] = (max(peak, process.memory_info().rss) - start_rss) / 2**20


def split_loaders(corpus: pd.DataFrame, model: nn.Module, batch_size: int = 32, seed: int = 0
                  ) -> dict[str, DataLoader]:
    """Train (shuffled, seeded), val and test loaders for ``model``'s tasks.

    Validation and test rows are sorted by length: metrics do not depend on the order, and batches of
    similar length waste little compute on padding.
    """
    def rows(split: str) -> pd.DataFrame:
        frame = corpus[corpus["split"] == split]
        return frame if split == "train" else by_length(frame)

    return {split: make_loader(rows(split), model.tokenize, model.tasks, batch_size=batch_size if split == "train"
                               else 64, shuffle=split == "train", seed=seed)
            for split in ("train", "val", "test")}


def by_length(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by text length, for evaluation batches with little padding."""
    return frame.iloc[frame["text"].str.len().argsort(kind="stable")]


def scores(results: dict[str, dict]) -> dict[str, float]:
    """Flatten ``evaluate`` output to ``{"<task> accuracy": .., "<task> macro-F1": ..}``."""
    row = {}
    for task, result in results.items():
        row[f"{task} accuracy"] = result["accuracy"]
        row[f"{task} macro-F1"] = result["macro_f1"]
    return row


def scores_by_portion(model: nn.Module, corpus: pd.DataFrame, split: str = "test", batch_size: int = 64,
                      tasks: Mapping[str, Sequence[str]] = TASKS) -> pd.DataFrame:
    """Accuracy and macro-F1 of each of the model's tasks on each portion of ``split`` that carries its label.

    Portions are different kinds of text (news with both labels, reviews with sentiment only, ...), so one
    number over all of them would hide where a model is weak. They are named from the corpus's ``tasks``,
    not the model's, so a single-task model is scored on the same portions as a multi-task one.
    """
    rows = corpus[corpus["split"] == split]
    table = {}
    for portion, part in rows.groupby(label_portions(rows, tasks)):
        for task, result in evaluate(model, make_loader(by_length(part), model.tokenize, model.tasks,
                                                        batch_size)).items():
            if result["n"]:
                table[(task, portion)] = {"accuracy": result["accuracy"], "macro-F1": result["macro_f1"],
                                          "sentences": result["n"]}
    return pd.DataFrame(table).T.rename_axis(["task", "portion"]).astype({"sentences": int})


def accuracy_by_portion(model: nn.Module, corpus: pd.DataFrame, split: str = "test",
                        tasks: Mapping[str, Sequence[str]] = TASKS) -> dict[str, float]:
    """``scores_by_portion`` as one flat row, ``{"<task> accuracy, <portion>": ...}``, for comparison tables."""
    table = scores_by_portion(model, corpus, split, tasks=tasks)
    return {f"{task} accuracy, {portion}": value for (task, portion), value in table["accuracy"].items()}


def confident_mistakes(model: nn.Module, frame: pd.DataFrame, n: int = 8,
                       tasks: Mapping[str, Sequence[str]] = TASKS) -> pd.DataFrame:
    """Per task, the ``n`` sentences of ``frame`` the model gets wrong with the highest probability.

    Low-probability errors are the expected ones; confident errors show what the model learned wrongly
    (a cue it trusts too much, a label it cannot read, or a label in the data that is itself debatable).
    """
    predictions = model.predict(frame["text"].tolist())
    portions = label_portions(frame, tasks).to_numpy()
    tables = []
    for task in model.tasks:
        truth = frame[task].to_numpy()
        wrong = frame[task].notna().to_numpy() & (predictions[task].to_numpy() != truth)
        table = pd.DataFrame({"task": task, "portion": portions[wrong], "text": frame["text"].to_numpy()[wrong],
                              "label": truth[wrong], "predicted": predictions[task].to_numpy()[wrong],
                              "probability": predictions[f"{task}_prob"].to_numpy()[wrong]})
        tables.append(table.nlargest(n, "probability"))
    return pd.concat(tables, ignore_index=True)


def run_variant(model: nn.Module, corpus: pd.DataFrame, config: TrainConfig,
                unfreezing: GradualUnfreezing | None = None, batch_size: int = 32
                ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Train ``model`` on the train split (best validation checkpoint kept), score it on the test split.

    Returns the training history and one row: test metrics per task and ``cost_row`` (parameters counted
    at the end, so gradual unfreezing reports everything it unfroze).
    """
    loaders = split_loaders(corpus, model, batch_size, seed=config.seed)
    with measure() as cost:
        history = train(model, loaders["train"], loaders["val"], config, unfreezing=unfreezing)
    row = scores(evaluate(model, loaders["test"]))
    row.update(cost_row(model, cost))
    return history, row


def cost_row(model: nn.Module, cost: dict) -> dict[str, float]:
    """What a run cost: seconds, measured peak RSS growth, parameters trained, and the memory those
    parameters need for gradients and AdamW's two moment estimates (3 x 4 bytes each, computed)."""
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"seconds": cost["seconds"], "peak MB": cost["peak MB"], "trained parameters": trained,
            "grad + AdamW MB": 12 * trained / 2**20}


def fit_heads_on_cached_embeddings(model: nn.Module, corpus: pd.DataFrame, batch_size: int = 64) -> None:
    """Heads-only training without re-running the frozen encoder every epoch.

    With the backbone frozen, its output for a sentence never changes, so each training sentence is
    encoded once and every linear head is fitted on those cached vectors (L2-regularised logistic
    regression, the linear probe). Requires linear heads (``hidden_dim=None``).
    """
    train_rows = corpus[corpus["split"] == "train"]
    features = model.encoder.encode(train_rows["text"].tolist(), batch_size=batch_size)
    labels = SentenceDataset(train_rows, model.tasks).labels
    for task, head in model.heads.items():
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head {task!r} is not linear; cached-embedding training needs hidden_dim=None")
        y = pd.Series(labels[task])
        known = (y >= 0).to_numpy()
        probe = fit_linear_probe(features[known], y[known].to_numpy(), head.out_features)
        head.load_state_dict(probe.state_dict())
