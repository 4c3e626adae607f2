"""The masked multi-task loss: each task's cross-entropy over the rows that carry its label.

Explained in notebook 04. A row may lack a task's label (``IGNORE_INDEX``); it then teaches the other
tasks and is left out of this one's loss, metrics and counts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from .data import IGNORE_INDEX


def labelled(logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per task, (logits, targets) of the rows that carry that task's label; tasks with
    none are left out.

    The one place where ``IGNORE_INDEX`` is honoured. The rows are picked where the labels
    are (the CPU, straight from the collator), so a GPU never waits for the mask.
    """
    kept = {}
    for task, values in logits.items():
        rows = (labels[task] != IGNORE_INDEX).nonzero().squeeze(1)
        if len(rows):
            target = labels[task][rows].to(values.device)
            kept[task] = (values.index_select(0, rows.to(values.device)), target)
    return kept


def label_counts(labels: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Labelled rows per task in a batch (read from the CPU labels: no device waits)."""
    return {task: int((values != IGNORE_INDEX).sum()) for task, values in labels.items()}


def task_losses(logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor],
                counts: Mapping[str, int] | None = None, scale: float = 1.0
                ) -> dict[str, torch.Tensor]:
    """Per task, the summed cross-entropy of its labelled rows divided by ``counts[task]``
    (default: this batch's labelled rows, i.e. the mean), times ``scale``.

    A task with no label anywhere (count 0) is left out: cross-entropy over no rows is NaN.
    A task with a count but no label in this batch gets a zero loss. Data-parallel training
    passes the count over all processes and ``scale`` = the number of processes: DDP then
    averages gradients into exactly the gradient of the mean over every labelled row,
    whichever process holds it.
    """
    counts = label_counts(labels) if counts is None else counts
    kept = labelled(logits, labels)
    losses = {}
    for task, count in counts.items():
        if count:
            if task in kept:
                values, target = kept[task]
                total = F.cross_entropy(values.float(), target, reduction="sum")
            else:  # on the graph, so that every head joins DDP's all-reduce
                total = logits[task].float().sum() * 0.0
            losses[task] = total * (scale / count)
    return losses
