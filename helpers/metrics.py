"""How good a trained model is: loss, accuracy, macro-F1 and confusion per task, per portion of the data,
and its most confident mistakes. Explained in notebook 04.

Only rows that carry a task's label count for that task. Evaluation follows the inference precision rule
of ``helpers.precision`` (float32 on a CPU under ``auto``), like ``encode`` and ``predict``, so a score
does not depend on whether the CPU it was measured on has bf16.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .data import TASKS, by_length, label_portions, make_loader
from .devices import inference
from .losses import labelled


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of per-class F1 (classes absent from both truth and prediction count as 0)."""
    true_positive = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    denominator = predicted + actual
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return float(f1.mean())


def evaluate(model: nn.Module, loader, device: str | torch.device | None = None, precision: str = "auto"
             ) -> dict[str, dict]:
    """Per task: loss, accuracy, macro-F1, confusion matrix (rows: true, columns: predicted), count ``n``.

    Runs like ``encode`` (eval mode, no autograd, the model's mode and device restored afterwards, also on
    error) with the inference precision for ``precision``. Under torchrun every rank calls it on its own
    share of the rows; the counts are summed over ranks, so every rank gets the metrics of all the rows.
    """
    confusion = {task: np.zeros((len(labels), len(labels)), dtype=np.int64) for task, labels in model.tasks.items()}
    loss_sum = {task: torch.zeros(()) for task in model.tasks}
    with inference(model, device, precision) as forward:
        for batch in loader:
            logits = forward(batch["input_ids"], batch["attention_mask"])
            for task, (values, labels) in labelled(logits, batch["labels"]).items():
                loss_sum[task] += F.cross_entropy(values.float(), labels, reduction="sum").cpu()
                pairs = torch.stack([labels, values.argmax(dim=-1)]).cpu().numpy()
                np.add.at(confusion[task], (pairs[0], pairs[1]), 1)
    confusion = {task: distributed.sum_over_ranks(torch.from_numpy(m)).numpy() for task, m in confusion.items()}
    loss_sum = {task: distributed.sum_over_ranks(value) for task, value in loss_sum.items()}
    results = {}
    for task, matrix in confusion.items():
        n = int(matrix.sum())
        results[task] = {"loss": loss_sum[task].item() / n if n else math.nan,
                         "accuracy": float(np.trace(matrix) / n) if n else math.nan,
                         "macro_f1": macro_f1(matrix) if n else math.nan, "confusion": matrix, "n": n}
    return results


def scores(results: Mapping[str, dict]) -> dict[str, float]:
    """``evaluate``'s output as one flat row, ``{"<task> accuracy": .., "<task> macro-F1": ..}``, for tables."""
    row = {}
    for task, result in results.items():
        row[f"{task} accuracy"] = result["accuracy"]
        row[f"{task} macro-F1"] = result["macro_f1"]
    return row


def as_json(results: Mapping[str, dict], tasks: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """``evaluate``'s output as JSON: NaN (a task without labels) becomes null, the labels name the matrix."""
    def number(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {task: {"n": r["n"], "loss": number(r["loss"]), "accuracy": number(r["accuracy"]),
                   "macro_f1": number(r["macro_f1"]), "labels": list(tasks[task]), "confusion": r["confusion"].tolist()}
            for task, r in results.items()}


def scores_by_portion(model: nn.Module, corpus: pd.DataFrame, split: str = "test", batch_size: int = 64,
                      tasks: Mapping[str, Sequence[str]] = TASKS) -> pd.DataFrame:
    """Accuracy, macro-F1 and sentence count of each of the model's tasks on each portion of ``split`` that
    carries its label, one row per (task, portion).

    Portions are different kinds of text (news with both labels, reviews with sentiment only, ...), so one
    number over all of them would hide where a model is weak. They are named from the corpus's ``tasks``,
    not the model's, so a single-task model is scored on the same portions as a multi-task one.
    """
    rows = corpus[corpus["split"] == split]
    table = {}
    for portion, part in rows.groupby(label_portions(rows, tasks)):
        loader = make_loader(by_length(part), model.tokenize, model.tasks, batch_size)
        for task, result in evaluate(model, loader).items():
            if result["n"]:
                table[(task, portion)] = {"accuracy": result["accuracy"], "macro-F1": result["macro_f1"],
                                          "sentences": result["n"]}
    return pd.DataFrame(table).T.rename_axis(["task", "portion"]).astype({"sentences": int})


def verdicts(model: nn.Module, frame: pd.DataFrame, task: str) -> np.ndarray:
    """One bool per row of ``frame`` that carries ``task``'s label: whether ``model`` predicts it right.

    The input of a paired comparison (``helpers.paired``): two models' verdicts on the same sentences.
    """
    rows = frame[frame[task].notna()]
    return (model.predict(rows["text"].tolist())[task].to_numpy() == rows[task].to_numpy()).astype(bool)


def confident_mistakes(model: nn.Module, frame: pd.DataFrame, n: int = 8, min_probability: float = 0.0,
                       tasks: Mapping[str, Sequence[str]] = TASKS) -> pd.DataFrame:
    """Per task, up to ``n`` sentences of ``frame`` the model gets wrong with the highest probability, and at
    least ``min_probability``.

    Low-probability errors are the expected ones; confident errors show what the model learned wrongly
    (a cue it trusts too much, a label it cannot read, or a label in the data that is itself debatable).
    """
    predictions = model.predict(frame["text"].tolist())
    portions = label_portions(frame, tasks).to_numpy()
    tables = []
    for task in model.tasks:
        truth = frame[task].to_numpy()
        wrong = frame[task].notna().to_numpy() & (predictions[task].to_numpy() != truth)
        wrong &= predictions[f"{task}_prob"].to_numpy() >= min_probability
        table = pd.DataFrame({"task": task, "portion": portions[wrong], "text": frame["text"].to_numpy()[wrong],
                              "label": truth[wrong], "predicted": predictions[task].to_numpy()[wrong],
                              "probability": predictions[f"{task}_prob"].to_numpy()[wrong]})
        tables.append(table.nlargest(n, "probability"))
    return pd.concat(tables, ignore_index=True)
