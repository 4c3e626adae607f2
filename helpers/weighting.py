"""How per-task losses become the one number the optimizer minimises. Explained in notebook 04.

Each method is a small module behind one interface: ``forward(losses) -> total`` and
``weights() -> {task: weight}``. Training and validation totals both come from ``forward``, so the
two curves of the "total" loss measure the same quantity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .checks import check_choice


class LossWeighting(nn.Module):
    """Base class: a weighted sum of the task losses present in a batch."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)

    def weights(self) -> dict[str, float]:
        raise NotImplementedError

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the tasks present in ``losses`` (at least one: there is nothing to weigh else)."""
        _check_not_empty(losses)
        weights = self.weights()
        return sum(weights[task] * loss for task, loss in losses.items())


class Sum(LossWeighting):
    """Every task counts once: the plain multi-task objective."""

    def weights(self) -> dict[str, float]:
        return dict.fromkeys(self.tasks, 1.0)


class Static(LossWeighting):
    """Fixed weights chosen by hand, e.g. ``1 / ln(C)`` to put C-way losses on one scale."""

    def __init__(self, tasks: Sequence[str], task_weights: Mapping[str, float]) -> None:
        super().__init__(tasks)
        if set(task_weights) != set(self.tasks):
            raise ValueError(f"static weighting needs a weight for each task {self.tasks} (task_weights; "
                             f"--task-weights in the command), got {dict(task_weights)}: e.g. "
                             f"{json.dumps(dict.fromkeys(self.tasks, 1.0))}")
        self.task_weights = {task: float(task_weights[task]) for task in self.tasks}

    def weights(self) -> dict[str, float]:
        return dict(self.task_weights)


class Uncertainty(LossWeighting):
    """Learned weights from homoscedastic uncertainty (Kendall, Gal & Cipolla, 2018).

    total = sum_t exp(-s_t) * L_t + s_t / 2, with s_t = log(sigma_t^2) learned: a task whose loss stays
    high gets a larger sigma and so a smaller weight, and the s_t / 2 term stops sigma from growing forever.
    """

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.ParameterDict({task: nn.Parameter(torch.zeros(())) for task in self.tasks})

    def weights(self) -> dict[str, float]:
        return {task: math.exp(-s.item()) for task, s in self.log_vars.items()}

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _check_not_empty(losses)
        return sum(torch.exp(-self.log_vars[t]) * loss + self.log_vars[t] / 2 for t, loss in losses.items())


def _check_not_empty(losses: Mapping[str, torch.Tensor]) -> None:
    if not losses:
        raise ValueError("no task loss to weigh: a batch without any label has no loss (train_step skips it)")


WEIGHTINGS = {"sum": Sum, "static": Static, "uncertainty": Uncertainty}


def check_weighting(name: object) -> str:
    """``name`` if it names a weighting (a key of ``WEIGHTINGS``), else a ValueError listing them."""
    return check_choice("loss_weighting", name, WEIGHTINGS)


def make_weighting(name: str, tasks: Sequence[str], task_weights: Mapping[str, float] | None = None
                   ) -> LossWeighting:
    """The weighting called ``name`` (a key of ``WEIGHTINGS``) for ``tasks``."""
    if check_weighting(name) == "static":
        return Static(tasks, task_weights or {})
    return WEIGHTINGS[name](tasks)
